//! Running a Mapping's declared examples, with a readable diff when one fails.

use serde_json::Value;

use super::{Program, from_value, to_value};
use crate::{
    canonical::Validator,
    resource::{CanonicalRef, MappingSpec, MappingTest},
};

/// The outcome of a Mapping's examples.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestReport {
    /// Examples that gave the expected output.
    pub passed: usize,
    /// Examples that did not, in declaration order.
    pub failures: Vec<TestFailure>,
}

impl TestReport {
    /// Whether every example passed (and the program compiled).
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One failing example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    /// The example's name (or `compile` when the program does not compile).
    pub name: String,
    /// What differs, one line per path, or the error.
    pub diff: String,
}

/// Compiles the Mapping and runs each of its examples; when it `produces` a canonical
/// entity, each example's expected output must also be valid against that schema.
pub fn run_tests(spec: &MappingSpec) -> TestReport {
    match Program::compile(&spec.program, &spec.lookups) {
        Ok(program) => test_compiled(&program, spec),
        Err(e) => {
            let mut report =
                TestReport { passed: 0, failures: vec![TestFailure { name: "compile".into(), diff: e.to_string() }] };
            if let Some(produces) = &spec.produces {
                check_outputs(produces, &spec.tests, &mut report);
            }
            report
        }
    }
}

/// Runs the examples of `spec` against its already compiled `program`, and checks their
/// expected outputs against the canonical schema it `produces`: what `entrepot test` and
/// the operator both report.
pub fn test_compiled(program: &Program, spec: &MappingSpec) -> TestReport {
    let mut report = run_compiled(program, &spec.tests);
    if let Some(produces) = &spec.produces {
        check_outputs(produces, &spec.tests, &mut report);
    }
    report
}

/// Validates each example's expected output against the canonical schema the Mapping
/// declares: an example that matches the program but not the model still fails.
fn check_outputs(produces: &CanonicalRef, tests: &[MappingTest], report: &mut TestReport) {
    let validator = match Validator::new(&produces.entity, &produces.version) {
        Ok(v) => v,
        Err(e) => {
            report.failures.push(TestFailure { name: "spec.produces".into(), diff: e.to_string() });
            return;
        }
    };
    for case in tests {
        if let Err(v) = validator.check(&case.output) {
            let failed_already = report.failures.iter().any(|f| f.name == case.name);
            if !failed_already {
                report.passed = report.passed.saturating_sub(1);
            }
            let heading = format!("the expected output is not a valid {} {}:", produces.entity, produces.version);
            let diff = std::iter::once(heading).chain(v.failures).collect::<Vec<_>>().join("\n");
            report.failures.push(TestFailure { name: case.name.clone(), diff });
        }
    }
}

/// Runs `tests` against an already compiled program, for callers that report a
/// compile error apart from failing examples.
pub fn run_compiled(program: &Program, tests: &[MappingTest]) -> TestReport {
    let mut report = TestReport::default();
    for case in tests {
        let outcome = program.run(from_value(&case.input)).and_then(|v| to_value(&v));
        match outcome.map(|actual| (without_nulls(&actual), without_nulls(&case.output))) {
            Ok((actual, expected)) if actual == expected => report.passed += 1,
            Ok((actual, expected)) => {
                report.failures.push(TestFailure { name: case.name.clone(), diff: diff_json(&expected, &actual) })
            }
            Err(e) => report.failures.push(TestFailure { name: case.name.clone(), diff: e.to_string() }),
        }
    }
    report
}

/// `value` without the object members whose value is null, at any depth (array items
/// stay). A Mapping stored in Kubernetes has lost them from its examples: the API server
/// drops null members of the objects it stores, so an expected `orderReference: null`
/// arrives as no `orderReference` at all. A test therefore treats a null member and a
/// missing one as the same, in `entrepot test` and in the operator alike.
pub fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Lists the differences between an expected and an actual JSON value, one line per
/// jq path: `.lines[0].quantity: expected 2, got 3`. At most 20 lines.
pub fn diff_json(expected: &Value, actual: &Value) -> String {
    const MAX: usize = 20;
    let mut lines = Vec::new();
    walk(".", expected, actual, &mut lines);
    let total = lines.len();
    lines.truncate(MAX);
    if total > MAX {
        lines.push(format!("… and {} more differences", total - MAX));
    }
    lines.join("\n")
}

fn walk(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    let child = |key: &str| if path == "." { format!(".{key}") } else { format!("{path}.{key}") };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => walk(&child(k), ev, av, out),
                    None => out.push(format!("{}: missing, expected {}", child(k), short(ev))),
                }
            }
            for (k, av) in a.iter().filter(|(k, _)| !e.contains_key(*k)) {
                out.push(format!("{}: unexpected {}", child(k), short(av)));
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            let base = if path == "." { String::new() } else { path.to_string() };
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                walk(&format!("{base}[{i}]"), ev, av, out);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            out.push(format!("{path}: expected {} items, got {}: {}", e.len(), a.len(), short(actual)));
        }
        _ if expected != actual => out.push(format!("{path}: expected {}, got {}", short(expected), short(actual))),
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 { format!("{}…", text.chars().take(60).collect::<String>()) } else { text }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mapping(program: &str, input: Value, output: Value) -> MappingSpec {
        MappingSpec {
            program: program.into(),
            tests: vec![MappingTest { name: "example".into(), input, output }],
            ..Default::default()
        }
    }

    #[test]
    fn a_passing_example_passes() {
        let report = run_tests(&mapping("{id: .id}", json!({"id": 1, "x": 2}), json!({"id": 1})));
        assert!(report.ok());
        assert_eq!(report.passed, 1);
    }

    #[test]
    fn a_failing_example_shows_each_differing_path() {
        let report = run_tests(&mapping(
            "{id: .id, lines: [.l[] | {q: .}]}",
            json!({"id": 1, "l": [1, 5]}),
            json!({"id": 1, "lines": [{"q": 1}, {"q": 2}], "currency": "USD"}),
        ));
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].diff, ".currency: missing, expected \"USD\"\n.lines[1].q: expected 2, got 5");
    }

    #[test]
    fn an_example_whose_output_breaks_the_declared_schema_fails_with_each_pointer() {
        let price = json!({"sku": "A", "externalId": "1", "sourceSystem": "erp", "sourceVersion": "7",
                           "priceList": "RETAIL", "currency": "usd", "amount": 100, "unit": "EA",
                           "validFrom": "2026-12-01T00:00:00+01:00"});
        let mut spec = mapping(".", price.clone(), price);
        spec.produces = Some(CanonicalRef { entity: "Price".into(), version: "v1".into() });
        let report = run_tests(&spec);
        assert_eq!(report.passed, 0, "the program matched, but the output is not a valid Price");
        let diff = &report.failures[0].diff;
        assert!(
            diff.starts_with("the expected output is not a valid Price v1:\n/currency: \"usd\" does not match"),
            "{diff}"
        );
        assert!(diff.contains("\n/validFrom: "), "{diff}");
        spec.produces = Some(CanonicalRef { entity: "Price".into(), version: "v2".into() });
        assert_eq!(run_tests(&spec).failures.last().unwrap().name, "spec.produces");
    }

    #[test]
    fn a_null_member_and_a_missing_one_are_the_same_as_kubernetes_stores_them() {
        // The expected output as written, and as the API server stores it (nulls dropped).
        let program = "{id: .id, reference: (if .r == \"\" then null else .r end), lines: [{q: 1, note: null}]}";
        for expected in [
            json!({"id": 1, "reference": null, "lines": [{"q": 1, "note": null}]}),
            json!({"id": 1, "lines": [{"q": 1}]}),
        ] {
            let report = run_tests(&mapping(program, json!({"id": 1, "r": ""}), expected.clone()));
            assert!(report.ok(), "{expected}: {report:?}");
        }
        let report =
            run_tests(&mapping(program, json!({"id": 1, "r": "#1042"}), json!({"id": 1, "lines": [{"q": 1}]})));
        assert_eq!(
            report.failures[0].diff, ".reference: unexpected \"#1042\"",
            "a value where none is expected still fails"
        );
    }

    #[test]
    fn a_program_that_does_not_compile_fails_as_a_whole() {
        let report = run_tests(&mapping("{id: ", json!({}), json!({})));
        assert_eq!(report.failures[0].name, "compile");
    }

    #[test]
    fn diffs_are_bounded() {
        let expected: serde_json::Map<String, Value> = (0..50).map(|i| (format!("k{i}"), json!(i))).collect();
        let diff = diff_json(&Value::Object(expected), &json!({}));
        assert_eq!(diff.lines().count(), 21);
        assert!(diff.ends_with("… and 30 more differences"));
    }
}
