//! The Connector status the operator reports, computed from the Connector's spec and
//! from what the runners of the SyncFlows using it reported. Pure.

use entrepot_api::ErrorCategory;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};

use crate::{
    events::Notice,
    resources::{
        ConnectorReport, ConnectorStatus,
        conditions::{self, Desired, READY, STALLED, Status},
        cut,
    },
};

/// Whether the system answered the runners that call it.
pub const REACHABLE: &str = "Reachable";

/// The most of a runner-reported error message that goes into a condition message.
const MAX_REPORTED_MESSAGE: usize = 512;

/// A SyncFlow that references the Connector, with what its runners last reported about
/// the Connectors it calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsingFlow {
    /// The flow's name.
    pub name: String,
    /// `status.connectors` of the flow.
    pub reports: Vec<ConnectorReport>,
}

/// The status to report for Connector `connector`: `previous` with this reconcile's
/// observations merged in. `invalid` is why the spec cannot be used, if it cannot.
pub fn desired_status(
    previous: &ConnectorStatus,
    generation: i64,
    connector: &str,
    invalid: Option<&str>,
    using: &[UsingFlow],
    now: Timestamp,
) -> ConnectorStatus {
    let validity = match invalid {
        None => {
            let message = "the spec is valid; whether the system answers is the Reachable condition";
            [Desired::yes(READY, "Valid", message), Desired::no(STALLED, "Valid", message)]
        }
        Some(why) => [Desired::no(READY, "InvalidSpec", why), Desired::yes(STALLED, "InvalidSpec", why)],
    };
    let [ready, stalled] = validity;
    let desired = [ready, stalled, reachable(connector, using)];
    let mut used_by: Vec<String> = using.iter().map(|f| f.name.clone()).collect();
    used_by.sort();
    used_by.dedup();
    ConnectorStatus {
        observed_generation: generation,
        conditions: conditions::merge(&previous.conditions, &desired, generation, now),
        used_by,
    }
}

/// `Reachable` from the most recent report of any flow: `False` when the latest failure
/// is more recent than the latest success, `True` when a success is the latest, and
/// `Unknown` when no runner has reported either.
pub fn reachable(connector: &str, using: &[UsingFlow]) -> Desired {
    let reports = || {
        using.iter().flat_map(move |flow| {
            flow.reports.iter().filter(move |r| r.name == connector).map(move |r| (flow.name.as_str(), r))
        })
    };
    let last_error =
        reports().filter_map(|(flow, r)| Some((r.last_error_time.as_ref()?.0, flow, r))).max_by_key(|(at, _, _)| *at);
    let last_success = reports().filter_map(|(flow, r)| Some((r.last_success_time.as_ref()?.0, flow))).max();

    match (last_error, last_success) {
        (Some((at, flow, report)), success) if success.is_none_or(|(ok, _)| at > ok) => {
            let label = report.last_error_category.as_deref().unwrap_or("unknown");
            let message = format!(
                "{label} failure at {at}, reported by SyncFlow {flow}: {}",
                cut(report.last_error_message.as_deref().unwrap_or("(no message)"), MAX_REPORTED_MESSAGE)
            );
            match category_of(report) {
                Some(ErrorCategory::Auth) => Desired::no(REACHABLE, "AuthFailing", message),
                Some(ErrorCategory::Unreachable) => Desired::no(REACHABLE, "Unreachable", message),
                Some(ErrorCategory::Throttled) => Desired::no(REACHABLE, "Throttled", message),
                Some(ErrorCategory::Server) => Desired::no(REACHABLE, "ServerFailing", message),
                // A rejected record or an unreadable page is an answer: the system is there.
                Some(ErrorCategory::Rejected | ErrorCategory::Invalid) => {
                    Desired::yes(REACHABLE, "Answering", format!("answered; its last answer was a {message}"))
                }
                None => Desired::no(REACHABLE, "Failing", message),
            }
        }
        (_, Some((at, flow))) => Desired::yes(
            REACHABLE,
            "Answering",
            format!("answered with a success at {at}, reported by SyncFlow {flow}"),
        ),
        _ => Desired::unknown(REACHABLE, "NotReported", "no runner using this Connector has called it yet"),
    }
}

/// The runner's category of a reported failure; `None` when there is none or it is one
/// this operator does not know (a newer runner's), which counts as a plain failure.
fn category_of(report: &ConnectorReport) -> Option<ErrorCategory> {
    let label = report.last_error_category.as_deref()?;
    serde_json::from_value(serde_json::Value::String(label.into())).ok()
}

/// The Events to publish when the status goes from `previous` to `next`: when
/// `Reachable` turns False for authentication, and when the spec turns invalid.
pub fn notices(previous: &[Condition], next: &[Condition]) -> Vec<Notice> {
    let mut notices = Vec::new();
    if let Some(c) = conditions::entered(previous, next, REACHABLE, Status::False, "AuthFailing") {
        notices.push(Notice {
            warning: true,
            reason: "AuthFailing",
            action: "ReadRunnerReports",
            note: format!("target auth failing: {}", c.message),
        });
    }
    if let Some(c) = conditions::entered(previous, next, READY, Status::False, "InvalidSpec") {
        notices.push(Notice { warning: true, reason: "InvalidSpec", action: "Validate", note: c.message.clone() });
    }
    notices
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::resources::conditions::find;

    fn at(second: i64) -> Option<Time> {
        Some(Time(Timestamp::from_second(second).unwrap()))
    }

    fn failure(name: &str, category: &str, second: i64) -> ConnectorReport {
        ConnectorReport {
            name: name.into(),
            last_error_category: Some(category.into()),
            last_error_time: at(second),
            last_error_message: Some("401 {\"message\":\"token revoked\"}".into()),
            last_success_time: None,
        }
    }

    fn flow(name: &str, reports: Vec<ConnectorReport>) -> UsingFlow {
        UsingFlow { name: name.into(), reports }
    }

    fn reason(d: &Desired) -> (Status, &'static str) {
        (d.status, d.reason)
    }

    #[test]
    fn nothing_reported_is_unknown() {
        assert_eq!(reason(&reachable("erp", &[])), (Status::Unknown, "NotReported"));
        // A report about another Connector says nothing about this one.
        let other = flow("orders", vec![failure("shop", "auth", 10)]);
        assert_eq!(reason(&reachable("erp", &[other])), (Status::Unknown, "NotReported"));
    }

    #[test]
    fn the_latest_failure_after_the_latest_success_decides() {
        let mut report = failure("erp", "auth", 100);
        report.last_success_time = at(50);
        let d = reachable("erp", &[flow("orders", vec![report.clone()])]);
        assert_eq!(reason(&d), (Status::False, "AuthFailing"));
        assert!(d.message.contains("auth failure at 1970-01-01T00:01:40Z"), "{}", d.message);
        assert!(d.message.contains("SyncFlow orders") && d.message.contains("token revoked"), "{}", d.message);

        // Another flow has since succeeded: the system answers again.
        let ok = ConnectorReport { name: "erp".into(), last_success_time: at(150), ..Default::default() };
        let d = reachable("erp", &[flow("orders", vec![report]), flow("returns", vec![ok])]);
        assert_eq!(reason(&d), (Status::True, "Answering"));
        assert!(d.message.contains("SyncFlow returns"), "{}", d.message);
    }

    #[test]
    fn each_category_has_its_reason() {
        for (category, expected) in [
            ("auth", (Status::False, "AuthFailing")),
            ("unreachable", (Status::False, "Unreachable")),
            ("throttled", (Status::False, "Throttled")),
            ("server", (Status::False, "ServerFailing")),
            ("rejected", (Status::True, "Answering")),
            ("invalid", (Status::True, "Answering")),
            ("something-new", (Status::False, "Failing")),
        ] {
            assert_eq!(
                reason(&reachable("erp", &[flow("f", vec![failure("erp", category, 1)])])),
                expected,
                "{category}"
            );
        }
    }

    #[test]
    fn a_long_reported_message_is_cut() {
        let mut report = failure("erp", "server", 1);
        report.last_error_message = Some("x".repeat(10_000));
        let d = reachable("erp", &[flow("f", vec![report])]);
        assert!(d.message.len() < 700, "{}", d.message.len());
    }

    #[test]
    fn status_lists_users_sorted_and_keeps_ready_apart_from_reachable() {
        let using = [flow("returns", vec![failure("erp", "unreachable", 5)]), flow("orders", Vec::new())];
        let status =
            desired_status(&ConnectorStatus::default(), 2, "erp", None, &using, Timestamp::from_second(9).unwrap());
        assert_eq!(status.used_by, ["orders", "returns"]);
        assert_eq!(status.observed_generation, 2);
        assert_eq!(find(&status.conditions, READY).unwrap().status, "True");
        assert_eq!(find(&status.conditions, STALLED).unwrap().status, "False");
        assert_eq!(find(&status.conditions, REACHABLE).unwrap().reason, "Unreachable");

        let invalid = desired_status(
            &status,
            3,
            "erp",
            Some("Connector erp: spec.endpoint: bad"),
            &using,
            Timestamp::from_second(9).unwrap(),
        );
        let ready = find(&invalid.conditions, READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "InvalidSpec"));
        assert!(ready.message.contains("spec.endpoint"));
        assert_eq!(find(&invalid.conditions, STALLED).unwrap().status, "True");
    }

    #[test]
    fn auth_failing_is_announced_once() {
        let now = Timestamp::from_second(9).unwrap();
        let fine = desired_status(&ConnectorStatus::default(), 1, "erp", None, &[], now);
        assert!(notices(&[], &fine.conditions).is_empty());
        let using = [flow("orders", vec![failure("erp", "auth", 5)])];
        let failing = desired_status(&fine, 1, "erp", None, &using, now);
        let announced = notices(&fine.conditions, &failing.conditions);
        assert_eq!(announced.len(), 1);
        assert_eq!(announced[0].reason, "AuthFailing");
        assert!(announced[0].warning);
        assert!(announced[0].note.starts_with("target auth failing: auth failure at"), "{}", announced[0].note);
        let again = desired_status(&failing, 1, "erp", None, &using, now);
        assert!(notices(&failing.conditions, &again.conditions).is_empty());
    }
}
