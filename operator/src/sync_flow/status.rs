//! The SyncFlow status the operator reports, computed from what it observed. Pure.
//!
//! Values read from the runners are rounded so that a flow whose state did not change
//! keeps the same status between reads, and the operator sends no patch: rates to whole
//! records per minute, ages to 10 s (to the minute past 10 minutes), times to the minute.

use std::time::Duration;

use entrepot_api::{ErrorCategory, status::ConnectorStatus};
use k8s_openapi::{
    api::apps::v1::StatefulSet,
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{Timestamp, TimestampRound, Unit},
};

use super::{reason::Reason, runner_status::RunnerReport, validate::Invalid};
use crate::resources::{
    BacklogStatus, ConnectorReport, RunnerStatus, SyncFlowStatus, TargetReport, ThroughputStatus,
    conditions::{self, Desired, READY, RECONCILING, STALLED, settled},
};

/// How far the runner StatefulSet has got, as it reports itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// Pods asked for.
    pub desired: i32,
    /// Pods running the current template.
    pub updated: i32,
    /// Pods available (ready for `minReadySeconds`).
    pub available: i32,
    /// Whether the StatefulSet controller has seen the current spec; until it has, its
    /// counts describe an older one.
    pub observed: bool,
}

impl Rollout {
    /// Reads a StatefulSet's spec and status.
    pub fn of(stateful_set: &StatefulSet) -> Self {
        let desired = stateful_set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = stateful_set.status.clone().unwrap_or_default();
        let observed = match (stateful_set.metadata.generation, status.observed_generation) {
            (Some(generation), Some(seen)) => seen >= generation,
            (None, _) => true,
            (Some(_), None) => false,
        };
        Self {
            desired,
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            observed,
        }
    }

    /// Whether every pod asked for runs the current template and is available.
    pub fn is_complete(&self) -> bool {
        self.observed && self.updated >= self.desired && self.available >= self.desired
    }
}

/// What happened to the flow in this reconcile.
#[derive(Clone, Debug)]
pub enum Outcome<'a> {
    /// The flow cannot be run as written; its children were left as they were.
    Stalled(&'a Invalid),
    /// A continuous flow's children were applied.
    Applied {
        /// `StatefulSet/<name>`.
        workload: String,
        /// The configuration checksum rendered into its pods.
        checksum: String,
        /// Its rollout.
        rollout: Rollout,
        /// `spec.suspend`.
        suspended: bool,
        /// What the runner pods said, when there are pods to ask.
        report: Option<Box<RunnerReport>>,
    },
    /// A batch flow's CronJob was applied.
    Scheduled {
        /// `CronJob/<name>`.
        workload: String,
        /// The configuration checksum rendered into its pods.
        checksum: String,
        /// `spec.suspend`.
        suspended: bool,
        /// When the CronJob last started a run.
        last_schedule: Option<Timestamp>,
    },
}

/// The flow's budget for its oldest pending record, and what else the status needs
/// from the spec.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// `spec.delivery.freshnessBudget`.
    pub freshness: Duration,
}

/// The status to report: `previous` with this reconcile's observations merged in.
pub fn desired_status(
    previous: &SyncFlowStatus,
    generation: i64,
    outcome: &Outcome<'_>,
    budget: Budget,
    now: Timestamp,
) -> SyncFlowStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    let desired = match outcome {
        Outcome::Stalled(invalid) => conditions::stalled(invalid.reason().as_str(), invalid.to_string()),
        Outcome::Scheduled { workload, checksum, suspended, last_schedule } => {
            status.runner = Some(RunnerStatus {
                workload: workload.clone(),
                config_checksum: checksum.clone(),
                replicas: 0,
                available_replicas: 0,
            });
            status.last_schedule_time = last_schedule.map(Time);
            let resolved = resolved();
            if *suspended {
                let message = format!("spec.suspend is true: {workload} starts no run; its queue is kept");
                with(settled(false, Reason::Suspended.as_str(), message), resolved)
            } else {
                let last = last_schedule.map_or("no run yet".to_string(), |t| format!("last run started {t}"));
                let message = format!("{workload} runs the flow on its schedule; {last}");
                with(settled(true, Reason::Scheduled.as_str(), message), resolved)
            }
        }
        Outcome::Applied { workload, checksum, rollout, suspended, report } => {
            status.runner = Some(RunnerStatus {
                workload: workload.clone(),
                config_checksum: checksum.clone(),
                replicas: rollout.desired,
                available_replicas: rollout.available,
            });
            if let Some(report) = report {
                merge_report(&mut status, report);
            }
            let resolved = resolved();
            let counts = format!(
                "runner {workload}: {}/{} replicas available, {}/{} updated",
                rollout.available, rollout.desired, rollout.updated, rollout.desired
            );
            if *suspended {
                let message = format!("spec.suspend is true: {workload} is scaled to zero; its queue is kept");
                with(settled(false, Reason::Suspended.as_str(), message), resolved)
            } else if !rollout.is_complete() {
                let waiting = if rollout.observed {
                    counts
                } else {
                    format!("runner {workload}: the StatefulSet controller has not yet seen the new spec")
                };
                vec![
                    Desired::no(READY, Reason::RunnerNotAvailable.as_str(), waiting.clone()),
                    Desired::yes(RECONCILING, Reason::RunnerNotAvailable.as_str(), waiting),
                    resolved,
                ]
            } else if let Some(message) = auth_failing(&status.connectors, report.as_deref()) {
                with(settled(false, Reason::TargetAuthFailing.as_str(), message), resolved)
            } else if let Some(message) = over_budget(status.backlog.as_ref(), budget, &status.targets) {
                with(settled(false, Reason::BacklogOverBudget.as_str(), message), resolved)
            } else {
                with(settled(true, Reason::RunnerAvailable.as_str(), counts), resolved)
            }
        }
    };
    status.conditions = conditions::merge(&previous.conditions, &desired, generation, now);
    status
}

/// Stalled=False: nothing the flow references is missing or invalid.
fn resolved() -> Desired {
    Desired::no(STALLED, "Resolved", "every referenced Connector and Mapping is valid")
}

/// The Ready and Reconciling conditions, then `resolved` (Stalled=False).
fn with(settled: [Desired; 2], resolved: Desired) -> Vec<Desired> {
    let [ready, reconciling] = settled;
    vec![ready, reconciling, resolved]
}

/// Folds what the runners said into the status. Fields the runners did not answer for
/// keep their last value: a pod that is slow to answer once does not blank the status.
fn merge_report(status: &mut SyncFlowStatus, report: &RunnerReport) {
    if let Some(flow) = &report.flow {
        status.backlog = Some(BacklogStatus {
            pending: flow.pending as i64,
            oldest_pending_seconds: flow.oldest_pending_seconds.map_or(0, |s| round_age(s) as i64),
            dead_lettered: flow.dead_lettered as i64,
        });
        status.targets = flow
            .targets
            .iter()
            .map(|t| TargetReport {
                connector: t.connector.clone(),
                last_error: t.last_error.as_deref().map(bounded),
                last_delivered_time: t.last_delivered_at.map(to_minute),
            })
            .collect();
        status.last_delivered_time = flow.targets.iter().filter_map(|t| t.last_delivered_at).max().map(to_minute);
        status.delivered = Some(flow.delivered as i64);
    }
    if let Some(t) = report.throughput {
        status.throughput = Some(ThroughputStatus {
            delivered_per_minute: t.delivered.round() as i64,
            failed_per_minute: t.failed.round() as i64,
            throttled_per_minute: t.throttled.round() as i64,
        });
    }
    if !report.connectors.is_empty() {
        status.connectors = report.connectors.iter().map(connector_report).collect();
    }
}

fn connector_report(c: &ConnectorStatus) -> ConnectorReport {
    ConnectorReport {
        name: c.name.clone(),
        last_error_category: c.last_error_category.map(|c| c.as_str().to_string()),
        last_error_time: c.last_error_at.map(to_minute),
        last_error_message: c.last_error_message.as_deref().map(bounded),
        last_success_time: c.last_success_at.map(to_minute),
    }
}

/// A target whose credentials are refused now: its last error is `auth` and came after
/// its last success. Read from this reconcile's report (exact times), not the rounded status.
fn auth_failing(connectors: &[ConnectorReport], report: Option<&RunnerReport>) -> Option<String> {
    let failing = report?.connectors.iter().find(|c| {
        c.last_error_category == Some(ErrorCategory::Auth)
            && c.last_error_at.is_some()
            && c.last_error_at > c.last_success_at
    })?;
    let message = connectors
        .iter()
        .find(|r| r.name == failing.name)
        .and_then(|r| r.last_error_message.clone())
        .unwrap_or_default();
    Some(format!(
        "Connector {} refuses the runner's credentials ({message}); check the Secret its spec.auth names, then \
         replay the dead letters with reason auth (`entrepot deadletters replay --reason auth`)",
        failing.name
    ))
}

/// The oldest pending record is older than the flow's budget.
fn over_budget(backlog: Option<&BacklogStatus>, budget: Budget, targets: &[TargetReport]) -> Option<String> {
    let oldest = backlog?.oldest_pending_seconds;
    if oldest <= budget.freshness.as_secs() as i64 {
        return None;
    }
    let why = targets
        .iter()
        .find_map(|t| Some(format!("; target {} last failed: {}", t.connector, t.last_error.as_ref()?)))
        .unwrap_or_default();
    Some(format!(
        "the oldest undelivered record is {oldest}s old, over the {}s freshness budget (spec.delivery.freshnessBudget){why}",
        budget.freshness.as_secs()
    ))
}

/// Ages to 10 s, and to the minute past 10 minutes.
fn round_age(seconds: u64) -> u64 {
    if seconds >= 600 { seconds / 60 * 60 } else { seconds / 10 * 10 }
}

fn to_minute(t: Timestamp) -> Time {
    Time(t.round(TimestampRound::new().smallest(Unit::Minute).mode(k8s_openapi::jiff::RoundMode::Trunc)).unwrap_or(t))
}

/// A message from a target, at most 512 bytes, cut on a character boundary.
fn bounded(text: &str) -> String {
    const MAX: usize = 512;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use entrepot_api::{
        config::ResolveError,
        status::{FlowStatus, TargetStatus},
    };
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};

    use super::*;
    use crate::resources::conditions::{find, is_true};
    use crate::sync_flow::runner_status::Throughput;

    const BUDGET: Budget = Budget { freshness: Duration::from_secs(300) };

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn stateful_set(generation: i64, replicas: i32, status: Option<StatefulSetStatus>) -> StatefulSet {
        let mut s = StatefulSet {
            spec: Some(StatefulSetSpec { replicas: Some(replicas), ..StatefulSetSpec::default() }),
            status,
            ..StatefulSet::default()
        };
        s.metadata.generation = Some(generation);
        s
    }

    fn applied(rollout: Rollout, report: Option<RunnerReport>) -> Outcome<'static> {
        let report = report.map(Box::new);
        Outcome::Applied {
            workload: "StatefulSet/orders-runner".into(),
            checksum: "abc".into(),
            rollout,
            suspended: false,
            report,
        }
    }

    const UP: Rollout = Rollout { desired: 2, updated: 2, available: 2, observed: true };

    fn ready(status: &SyncFlowStatus) -> (String, String, String) {
        let c = find(&status.conditions, READY).unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    fn report(pending: u64, oldest: Option<u64>, connectors: Vec<ConnectorStatus>) -> RunnerReport {
        RunnerReport {
            pods: 2,
            flow: Some(FlowStatus {
                name: "orders".into(),
                namespace: "retail".into(),
                pending,
                oldest_pending_seconds: oldest,
                dead_lettered: 3,
                targets: vec![TargetStatus {
                    connector: "erp".into(),
                    delivered: 10,
                    last_error: Some("target error: 503 Service Unavailable".into()),
                    last_delivered_at: Some(at(125)),
                    ..TargetStatus::default()
                }],
                ..FlowStatus::default()
            }),
            connectors,
            throughput: Some(Throughput { delivered: 119.6, failed: 0.4, throttled: 2.0 }),
            unanswered: Vec::new(),
        }
    }

    fn erp(error: Option<(i64, ErrorCategory)>, success: Option<i64>) -> ConnectorStatus {
        ConnectorStatus {
            name: "erp".into(),
            namespace: "retail".into(),
            last_error_category: error.map(|e| e.1),
            last_error_at: error.map(|e| at(e.0)),
            last_error_message: error.map(|_| "auth: 401 Unauthorized with fresh credentials: token expired".into()),
            last_success_at: success.map(at),
            quota: None,
        }
    }

    #[test]
    fn a_stateful_set_is_complete_only_when_it_says_so_for_the_current_spec() {
        let full = StatefulSetStatus {
            observed_generation: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            ..StatefulSetStatus::default()
        };
        assert!(Rollout::of(&stateful_set(2, 2, Some(full.clone()))).is_complete());
        // Counts from an older spec do not count.
        assert!(!Rollout::of(&stateful_set(3, 2, Some(full.clone()))).is_complete());
        let partial = StatefulSetStatus { available_replicas: Some(1), ..full.clone() };
        assert!(!Rollout::of(&stateful_set(2, 2, Some(partial))).is_complete());
        let old = StatefulSetStatus { updated_replicas: Some(1), ..full };
        assert!(!Rollout::of(&stateful_set(2, 2, Some(old))).is_complete());
        assert!(!Rollout::of(&stateful_set(1, 1, None)).is_complete());
    }

    #[test]
    fn an_available_runner_with_a_fresh_backlog_is_ready_and_its_report_is_in_status() {
        let status = desired_status(
            &SyncFlowStatus::default(),
            4,
            &applied(UP, Some(report(7, Some(42), vec![]))),
            BUDGET,
            at(130),
        );
        assert_eq!(status.observed_generation, 4);
        assert_eq!(ready(&status).1, "RunnerAvailable");
        assert!(is_true(&status.conditions, READY));
        assert!(!is_true(&status.conditions, RECONCILING));
        let backlog = status.backlog.unwrap();
        // Ages are rounded to 10 s, so a steady backlog does not patch the status each read.
        assert_eq!((backlog.pending, backlog.oldest_pending_seconds, backlog.dead_lettered), (7, 40, 3));
        let t = status.throughput.unwrap();
        assert_eq!((t.delivered_per_minute, t.failed_per_minute, t.throttled_per_minute), (120, 0, 2));
        assert_eq!(status.last_delivered_time, Some(Time(at(120))), "to the minute");
        assert_eq!(status.targets[0].last_error.as_deref(), Some("target error: 503 Service Unavailable"));
        let runner = status.runner.unwrap();
        assert_eq!(
            (runner.workload.as_str(), runner.replicas, runner.available_replicas),
            ("StatefulSet/orders-runner", 2, 2)
        );
    }

    #[test]
    fn a_backlog_older_than_its_budget_is_not_ready_and_says_why() {
        let status = desired_status(
            &SyncFlowStatus::default(),
            1,
            &applied(UP, Some(report(900, Some(431), vec![]))),
            BUDGET,
            at(10),
        );
        let (s, reason, message) = ready(&status);
        assert_eq!((s.as_str(), reason.as_str()), ("False", "BacklogOverBudget"));
        assert!(message.contains("430s old, over the 300s freshness budget"), "{message}");
        assert!(message.contains("target erp last failed: target error: 503"), "{message}");
        assert!(!is_true(&status.conditions, RECONCILING), "waiting will not fix it by itself: not Reconciling");
    }

    #[test]
    fn credentials_refused_since_the_last_success_are_target_auth_failing() {
        let failing = report(0, None, vec![erp(Some((100, ErrorCategory::Auth)), Some(50))]);
        let status = desired_status(&SyncFlowStatus::default(), 1, &applied(UP, Some(failing)), BUDGET, at(110));
        let (s, reason, message) = ready(&status);
        assert_eq!((s.as_str(), reason.as_str()), ("False", "TargetAuthFailing"));
        assert!(message.contains("Connector erp refuses") && message.contains("token expired"), "{message}");
        assert_eq!(status.connectors[0].last_error_category.as_deref(), Some("auth"));
        // A success after the failure: recovered.
        let recovered = report(0, None, vec![erp(Some((100, ErrorCategory::Auth)), Some(105))]);
        let status = desired_status(&status, 1, &applied(UP, Some(recovered)), BUDGET, at(120));
        assert_eq!(ready(&status).1, "RunnerAvailable");
        // A throttled target is not an auth failure.
        let throttled = report(0, None, vec![erp(Some((100, ErrorCategory::Throttled)), Some(50))]);
        let status = desired_status(&status, 1, &applied(UP, Some(throttled)), BUDGET, at(130));
        assert_eq!(ready(&status).1, "RunnerAvailable");
    }

    #[test]
    fn a_runner_still_rolling_out_is_not_ready_but_reconciling() {
        let rollout = Rollout { desired: 2, updated: 2, available: 1, observed: true };
        let status = desired_status(&SyncFlowStatus::default(), 1, &applied(rollout, None), BUDGET, at(10));
        let (s, reason, message) = ready(&status);
        assert_eq!((s.as_str(), reason.as_str()), ("False", "RunnerNotAvailable"));
        assert!(message.contains("1/2 replicas available"), "{message}");
        assert!(is_true(&status.conditions, RECONCILING));
        assert!(!is_true(&status.conditions, STALLED));
    }

    #[test]
    fn a_report_that_did_not_come_keeps_the_last_one() {
        let first = desired_status(
            &SyncFlowStatus::default(),
            1,
            &applied(UP, Some(report(5, Some(20), vec![]))),
            BUDGET,
            at(10),
        );
        let silent = RunnerReport { pods: 2, unanswered: vec!["pod a: no answer".into()], ..RunnerReport::default() };
        let second = desired_status(&first, 1, &applied(UP, Some(silent)), BUDGET, at(40));
        assert_eq!(second.backlog, first.backlog);
        assert_eq!(second.throughput, first.throughput);
    }

    #[test]
    fn a_suspended_flow_is_not_ready_and_says_its_queue_is_kept() {
        let outcome = Outcome::Applied {
            workload: "StatefulSet/orders-runner".into(),
            checksum: "abc".into(),
            rollout: Rollout { desired: 0, updated: 0, available: 0, observed: true },
            suspended: true,
            report: None,
        };
        let status = desired_status(&SyncFlowStatus::default(), 1, &outcome, BUDGET, at(10));
        let (s, reason, message) = ready(&status);
        assert_eq!((s.as_str(), reason.as_str()), ("False", "Suspended"));
        assert!(message.contains("queue is kept"), "{message}");
        assert!(!is_true(&status.conditions, RECONCILING) && !is_true(&status.conditions, STALLED));
    }

    #[test]
    fn a_batch_flow_is_ready_once_scheduled() {
        let outcome = Outcome::Scheduled {
            workload: "CronJob/settlements-runner".into(),
            checksum: "abc".into(),
            suspended: false,
            last_schedule: Some(at(7200)),
        };
        let status = desired_status(&SyncFlowStatus::default(), 1, &outcome, BUDGET, at(7300));
        assert_eq!(ready(&status).1, "Scheduled");
        assert!(is_true(&status.conditions, READY));
        assert_eq!(status.last_schedule_time, Some(Time(at(7200))));
    }

    #[test]
    fn a_stalled_flow_says_why_and_keeps_its_last_runner_status() {
        let invalid = Invalid::Resolve(ResolveError::ConnectorNotFound {
            flow: "orders".into(),
            namespace: "retail".into(),
            field: "spec.targets[0].connectorRef".into(),
            name: "erp".into(),
        });
        let running = desired_status(&SyncFlowStatus::default(), 1, &applied(UP, None), BUDGET, at(10));
        let stalled = desired_status(&running, 2, &Outcome::Stalled(&invalid), BUDGET, at(20));
        assert_eq!(stalled.observed_generation, 2);
        assert_eq!(stalled.runner, running.runner);
        for type_ in [READY, STALLED] {
            let c = find(&stalled.conditions, type_).unwrap();
            assert_eq!(c.reason, "ConnectorNotFound");
            assert_eq!(c.message, invalid.to_string());
        }
        assert!(is_true(&stalled.conditions, STALLED));
        assert!(!is_true(&stalled.conditions, READY));
        assert!(!is_true(&stalled.conditions, RECONCILING));
    }

    #[test]
    fn the_same_observation_gives_the_same_status() {
        let once = desired_status(
            &SyncFlowStatus::default(),
            1,
            &applied(UP, Some(report(3, Some(12), vec![]))),
            BUDGET,
            at(10),
        );
        // Read again 30 s later: the oldest record aged 30 s, but the same 10 s bucket it is not;
        // what did not change must not produce a new status.
        let twice = desired_status(&once, 1, &applied(UP, Some(report(3, Some(14), vec![]))), BUDGET, at(40));
        assert_eq!(once, twice);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = bounded(&long);
        assert!(cut.len() <= 512 + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
