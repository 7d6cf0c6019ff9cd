//! The Mapping status the operator reports: whether the program compiles, how its
//! tests went, what it produces. Pure.

use entrepot_api::{
    mapping::{Program, TestReport, test_compiled},
    resource::MappingSpec,
};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};

use crate::{
    events::Notice,
    resources::{
        MappingStatus, MappingTestFailure, MappingTestsStatus, ProducedEntity,
        conditions::{self, Desired, READY, STALLED, Status},
        cut,
    },
};

/// The most of a failing test's diff kept in the status.
pub const MAX_DIFF: usize = 2048;
/// The most of a diff or compile error quoted in a condition message.
const MAX_IN_MESSAGE: usize = 256;

/// What the operator found when it looked at a Mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The spec cannot be read as a Mapping (the parser's message).
    Unreadable(String),
    /// The program does not compile (the compiler's message).
    CompileFailed(String),
    /// It compiles; this is how its tests went.
    Tested(TestReport),
}

/// Compiles the Mapping's program with its lookup tables and runs its tests.
pub fn evaluate(spec: &MappingSpec) -> Verdict {
    match Program::compile(&spec.program, &spec.lookups) {
        Err(error) => Verdict::CompileFailed(error.to_string()),
        Ok(program) => Verdict::Tested(test_compiled(&program, spec)),
    }
}

/// The status to report: `previous` with this reconcile's verdict merged in.
/// `produces` comes from the spec, `used_by` from the flows referencing the Mapping.
pub fn desired_status(
    previous: &MappingStatus,
    generation: i64,
    name: &str,
    verdict: &Verdict,
    produces: Option<ProducedEntity>,
    mut used_by: Vec<String>,
    now: Timestamp,
) -> MappingStatus {
    let (tests, ready) = match verdict {
        Verdict::Unreadable(error) => (
            None,
            Err((
                Reason::InvalidSpec,
                format!("Mapping {name}: the spec cannot be read: {error}; fix the field it names"),
            )),
        ),
        Verdict::CompileFailed(error) => (
            None,
            Err((Reason::CompileFailed, format!("Mapping {name}: spec.program: {}", cut(error, MAX_IN_MESSAGE)))),
        ),
        Verdict::Tested(report) => {
            let tests = tests_status(report);
            let ready = match report.failures.first() {
                None => Ok(format!("the program compiles and {}", tests.summary)),
                Some(first) => Err((
                    Reason::TestsFailing,
                    format!(
                        "Mapping {name}: {}; first failing test `{}`: {}",
                        tests.summary,
                        first.name,
                        cut(first.diff.lines().next().unwrap_or_default(), MAX_IN_MESSAGE)
                    ),
                )),
            };
            (Some(tests), ready)
        }
    };
    let desired = match ready {
        Ok(message) => {
            let passed = Reason::TestsPassed.as_str();
            [Desired::yes(READY, passed, message.clone()), Desired::no(STALLED, passed, message)]
        }
        Err((reason, message)) => {
            [Desired::no(READY, reason.as_str(), message.clone()), Desired::yes(STALLED, reason.as_str(), message)]
        }
    };
    used_by.sort();
    used_by.dedup();
    MappingStatus {
        observed_generation: generation,
        conditions: conditions::merge(&previous.conditions, &desired, generation, now),
        tests,
        produces,
        used_by,
    }
}

fn tests_status(report: &TestReport) -> MappingTestsStatus {
    let (passed, failed) = (report.passed, report.failures.len());
    MappingTestsStatus {
        passed: i64::try_from(passed).unwrap_or(i64::MAX),
        failed: i64::try_from(failed).unwrap_or(i64::MAX),
        summary: format!("{passed} passed, {failed} failed"),
        first_failure: report
            .failures
            .first()
            .map(|f| MappingTestFailure { name: f.name.clone(), diff: cut(&f.diff, MAX_DIFF) }),
    }
}

/// Why a Mapping is, or is not, `Ready` (the condition's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The program compiles and its tests pass.
    TestsPassed,
    /// The program does not compile.
    CompileFailed,
    /// A declared test fails.
    TestsFailing,
    /// The spec cannot be read as a Mapping.
    InvalidSpec,
}

impl Reason {
    /// The reasons of a Ready=False that the SyncFlows using the Mapping are stopped by.
    pub const FAILING: [Self; 2] = [Self::CompileFailed, Self::TestsFailing];

    /// The condition reason as written in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TestsPassed => "TestsPassed",
            Self::CompileFailed => "CompileFailed",
            Self::TestsFailing => "TestsFailing",
            Self::InvalidSpec => "InvalidSpec",
        }
    }
}

/// The Events to publish on the Mapping when its status goes from `previous` to
/// `next`: when it starts failing (or fails another way) and when it passes again.
pub fn notices(previous: &[Condition], next: &[Condition]) -> Vec<Notice> {
    let failing = Reason::FAILING
        .iter()
        .find_map(|reason| conditions::entered(previous, next, READY, Status::False, reason.as_str()));
    if let Some(c) = failing {
        return vec![Notice {
            warning: true,
            reason: "MappingTestsFailing",
            action: "RunTests",
            note: format!("mapping tests failed: {}", c.message),
        }];
    }
    let was_failing =
        conditions::find(previous, READY).is_some_and(|c| Reason::FAILING.iter().any(|r| r.as_str() == c.reason));
    let passed = Reason::TestsPassed.as_str();
    if was_failing && let Some(c) = conditions::entered(previous, next, READY, Status::True, passed) {
        return vec![Notice {
            warning: false,
            reason: "MappingTestsPassing",
            action: "RunTests",
            note: c.message.clone(),
        }];
    }
    Vec::new()
}

/// The Event to publish on each SyncFlow using a Mapping that started failing.
pub fn notice_for_flow(mapping: &str, mapping_notice: &Notice) -> Option<Notice> {
    mapping_notice.warning.then(|| Notice {
        warning: true,
        reason: "MappingTestsFailing",
        action: "RunTests",
        note: format!(
            "Mapping {mapping} fails its tests; this flow keeps running with its last good configuration until the \
             Mapping is fixed: {}",
            mapping_notice.note
        ),
    })
}

#[cfg(test)]
mod tests {
    use entrepot_api::resource::MappingTest;
    use serde_json::json;

    use super::*;
    use crate::resources::conditions::find;

    fn now() -> Timestamp {
        Timestamp::from_second(100).unwrap()
    }

    fn spec(program: &str, tests: Vec<(serde_json::Value, serde_json::Value)>) -> MappingSpec {
        MappingSpec {
            program: program.into(),
            lookups: [("uom".to_string(), [("ea".to_string(), "EACH".to_string())].into())].into(),
            tests: tests
                .into_iter()
                .enumerate()
                .map(|(i, (input, output))| MappingTest { name: format!("case {i}"), input, output })
                .collect(),
            ..MappingSpec::default()
        }
    }

    fn status_of(spec: &MappingSpec) -> MappingStatus {
        desired_status(&MappingStatus::default(), 1, "m", &evaluate(spec), None, Vec::new(), now())
    }

    fn ready(status: &MappingStatus) -> (String, String) {
        let c = find(&status.conditions, READY).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn passing_tests_with_lookups_make_it_ready() {
        let s = spec("{unit: $lookups.uom[.u]}", vec![(json!({"u": "ea"}), json!({"unit": "EACH"}))]);
        let status = status_of(&s);
        assert_eq!(ready(&status), ("True".into(), "TestsPassed".into()));
        let tests = status.tests.unwrap();
        assert_eq!((tests.passed, tests.failed, tests.summary.as_str()), (1, 0, "1 passed, 0 failed"));
        assert_eq!(tests.first_failure, None);
        assert_eq!(find(&status.conditions, STALLED).unwrap().status, "False");
    }

    #[test]
    fn endless_recursion_and_loops_in_a_test_run_fail_the_tests_with_the_budget_not_the_operator() {
        for (program, why) in [("def f: 1 + f; f", "recursed too deeply"), ("last(repeat(1))", "ran longer")] {
            let status = status_of(&spec(program, vec![(json!({}), json!({}))]));
            assert_eq!(ready(&status), ("False".into(), "TestsFailing".into()), "{program}");
            let failure = status.tests.unwrap().first_failure.unwrap();
            assert!(failure.diff.contains(why), "{program}: {}", failure.diff);
        }
    }

    #[test]
    fn a_program_that_reads_the_environment_does_not_compile() {
        let status = status_of(&spec("{key: env.ENTREPOT_SECRET_ERP}", Vec::new()));
        assert_eq!(ready(&status), ("False".into(), "CompileFailed".into()));
        let message = &find(&status.conditions, READY).unwrap().message;
        assert!(message.contains("`env` at 1:7 is not allowed in a Mapping"), "{message}");
    }

    #[test]
    fn a_program_that_does_not_compile_says_where() {
        let status = status_of(&spec("{id: .id,\n  total: (.price |}", Vec::new()));
        assert_eq!(ready(&status), ("False".into(), "CompileFailed".into()));
        assert!(
            find(&status.conditions, READY)
                .unwrap()
                .message
                .contains("spec.program: jq program does not compile: at 2:")
        );
        assert_eq!(status.tests, None);
        assert_eq!(find(&status.conditions, STALLED).unwrap().status, "True");
    }

    #[test]
    fn a_failing_test_shows_the_first_failure_with_a_bounded_diff() {
        let wide: serde_json::Map<String, serde_json::Value> =
            (0..19).map(|i| (format!("k{i}{}", "x".repeat(200)), json!(i))).collect();
        let s = spec(
            "{id: .id}",
            vec![(json!({"id": 1}), json!({"id": 1})), (json!({"id": 2}), json!(wide)), (json!({"id": 3}), json!({}))],
        );
        let status = status_of(&s);
        assert_eq!(ready(&status), ("False".into(), "TestsFailing".into()));
        let tests = status.tests.clone().unwrap();
        assert_eq!((tests.passed, tests.failed), (1, 2));
        let first = tests.first_failure.unwrap();
        assert_eq!(first.name, "case 1");
        assert!(first.diff.len() <= MAX_DIFF, "{} bytes", first.diff.len());
        assert!(first.diff.starts_with(".k0xxx"), "{}", first.diff);
        assert!(first.diff.ends_with("… (cut)"), "{}", first.diff);
        let message = &find(&status.conditions, READY).unwrap().message;
        assert!(message.contains("1 passed, 2 failed; first failing test `case 1`: .k0xxx"), "{message}");
        assert!(message.len() < 512, "{message}");
    }

    #[test]
    fn produces_and_users_are_reported() {
        let produced = ProducedEntity { entity: "SalesOrder".into(), version: "v1".into() };
        let verdict = evaluate(&spec(".", Vec::new()));
        let users = vec!["returns".to_string(), "orders".to_string(), "orders".to_string()];
        let status = desired_status(&MappingStatus::default(), 4, "m", &verdict, Some(produced.clone()), users, now());
        assert_eq!(status.produces, Some(produced));
        assert_eq!(status.used_by, ["orders", "returns"]);
        assert_eq!(status.observed_generation, 4);
        assert_eq!(status.tests.unwrap().summary, "0 passed, 0 failed");
    }

    #[test]
    fn failing_is_announced_once_and_recovery_once() {
        let good = status_of(&spec(".", vec![(json!(1), json!(1))]));
        assert!(notices(&[], &good.conditions).is_empty(), "a Mapping that was never failing has nothing to announce");
        let failing_verdict = evaluate(&spec(".", vec![(json!(1), json!(2))]));
        let failing = desired_status(&good, 2, "m", &failing_verdict, None, Vec::new(), now());
        let announced = notices(&good.conditions, &failing.conditions);
        assert_eq!(announced.len(), 1);
        assert_eq!((announced[0].reason, announced[0].warning), ("MappingTestsFailing", true));
        assert!(announced[0].note.starts_with("mapping tests failed: "), "{}", announced[0].note);
        let flow = notice_for_flow("m", &announced[0]).unwrap();
        assert!(flow.note.contains("last good configuration"), "{}", flow.note);

        let still = desired_status(&failing, 2, "m", &failing_verdict, None, Vec::new(), now());
        assert!(notices(&failing.conditions, &still.conditions).is_empty());

        let fixed =
            desired_status(&still, 3, "m", &evaluate(&spec(".", vec![(json!(1), json!(1))])), None, Vec::new(), now());
        let recovered = notices(&still.conditions, &fixed.conditions);
        assert_eq!(recovered.len(), 1);
        assert_eq!((recovered[0].reason, recovered[0].warning), ("MappingTestsPassing", false));
        assert_eq!(notice_for_flow("m", &recovered[0]), None);
    }
}
