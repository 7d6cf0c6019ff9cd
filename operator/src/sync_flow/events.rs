//! Events on a SyncFlow (`kubectl describe syncflow`), raised on transitions only: the
//! runner rolled to a new configuration, a target refuses the credentials, the backlog
//! went over its freshness budget, the flow stalled (and why), the flow recovered.

use super::reason::Reason;
use crate::{
    events::Notice,
    resources::{
        SyncFlowStatus,
        conditions::{self, READY},
    },
};

/// The Events `previous` → `status` is worth.
pub fn transitions(previous: &SyncFlowStatus, status: &SyncFlowStatus) -> Vec<Notice> {
    let notice = |warning, reason, note| Notice { warning, reason, action: "Reconcile", note };
    let mut events = Vec::new();
    if let (Some(before), Some(now)) = (&previous.runner, &status.runner)
        && before.config_checksum != now.config_checksum
        && before.workload == now.workload
    {
        events.push(notice(
            false,
            "RunnerRolled",
            format!(
                "configuration changed (checksum {} → {}): rolling the pods of {}",
                short(&before.config_checksum),
                short(&now.config_checksum),
                now.workload
            ),
        ));
    }
    let ready = |s: &SyncFlowStatus| {
        conditions::find(&s.conditions, READY).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    if let Some((now_status, reason, message)) = ready(status)
        && ready(previous).map(|(s, r, _)| (s, r)) != Some((now_status.clone(), reason.clone()))
    {
        match (now_status.as_str(), Reason::parse(&reason)) {
            ("True", _) if previous.conditions.iter().any(|c| c.type_ == READY) => {
                events.push(notice(false, "Ready", message));
            }
            ("False", Some(known)) => {
                if let Some(warning) = known.warning() {
                    events.push(notice(true, warning, message));
                }
            }
            // A reason this operator does not write: the spec is what is left to blame.
            ("False", None) => events.push(notice(true, Reason::InvalidSpec.as_str(), message)),
            _ => {}
        }
    }
    events
}

fn short(checksum: &str) -> &str {
    &checksum[..checksum.len().min(12)]
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::resources::{
        RunnerStatus,
        conditions::{Desired, merge},
    };

    fn status(checksum: &str, ready: bool, reason: &'static str) -> SyncFlowStatus {
        let desired = [if ready { Desired::yes(READY, reason, "m") } else { Desired::no(READY, reason, "m") }];
        SyncFlowStatus {
            runner: Some(RunnerStatus {
                workload: "StatefulSet/o-runner".into(),
                config_checksum: checksum.into(),
                ..RunnerStatus::default()
            }),
            conditions: merge(&[], &desired, 1, Timestamp::UNIX_EPOCH),
            ..SyncFlowStatus::default()
        }
    }

    fn reasons(previous: &SyncFlowStatus, now: &SyncFlowStatus) -> Vec<&'static str> {
        transitions(previous, now).into_iter().map(|n| n.reason).collect()
    }

    #[test]
    fn a_new_checksum_is_a_roll() {
        let before = status("aaa", true, "RunnerAvailable");
        assert_eq!(reasons(&before, &status("bbb", true, "RunnerAvailable")), ["RunnerRolled"]);
        assert!(reasons(&before, &before).is_empty(), "no change, no Event");
    }

    #[test]
    fn going_wrong_is_a_warning_once_and_recovering_is_normal() {
        let ok = status("a", true, "RunnerAvailable");
        let auth = status("a", false, "TargetAuthFailing");
        let events = transitions(&ok, &auth);
        assert_eq!(events.len(), 1);
        assert!(events[0].warning);
        assert_eq!(events[0].reason, "TargetAuthFailing");
        assert!(reasons(&auth, &auth).is_empty(), "still failing: no second Event");
        assert_eq!(reasons(&auth, &status("a", false, "BacklogOverBudget")), ["BacklogOverBudget"]);
        assert_eq!(reasons(&auth, &ok), ["Ready"]);
        // Rolling out is not worth a warning.
        assert!(reasons(&ok, &status("a", false, "RunnerNotAvailable")).is_empty());
    }
}
