//! The status computation over observed states: no API server involved.

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
        queue: None,
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
    let status =
        desired_status(&SyncFlowStatus::default(), 4, &applied(UP, Some(report(7, Some(42), vec![]))), BUDGET, at(130));
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
    let first =
        desired_status(&SyncFlowStatus::default(), 1, &applied(UP, Some(report(5, Some(20), vec![]))), BUDGET, at(10));
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
        queue: None,
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
        queue: None,
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
    let once =
        desired_status(&SyncFlowStatus::default(), 1, &applied(UP, Some(report(3, Some(12), vec![]))), BUDGET, at(10));
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

fn shared(report: Option<RunnerReport>, queue: QueueState) -> Outcome<'static> {
    Outcome::Applied {
        workload: "Deployment/orders-runner".into(),
        checksum: "abc".into(),
        rollout: UP,
        suspended: false,
        report: report.map(Box::new),
        queue: Some(queue),
    }
}

#[test]
fn a_jetstream_flow_takes_its_backlog_from_jetstream_even_with_no_runner_up() {
    let queue = QueueState::Reachable(Backlog {
        pending: 7,
        oldest: Some(std::time::UNIX_EPOCH + Duration::from_secs(1000)),
        dead_lettered: 2,
    });
    // Two runners each reporting the whole shared queue: JetStream's count wins.
    let status = desired_status(
        &SyncFlowStatus::default(),
        1,
        &shared(Some(report(7, Some(1), vec![])), queue.clone()),
        BUDGET,
        at(1125),
    );
    let backlog = status.backlog.clone().unwrap();
    assert_eq!((backlog.pending, backlog.oldest_pending_seconds, backlog.dead_lettered), (7, 120, 2));
    assert_eq!(status.targets.len(), 1, "what only the runners know still comes from them");
    let quiet = desired_status(&status, 1, &shared(None, queue), BUDGET, at(1125));
    assert_eq!(quiet.backlog, status.backlog);
    // Empty: nothing pending, no age.
    let empty = QueueState::Reachable(Backlog::default());
    let status = desired_status(&status, 1, &shared(None, empty), BUDGET, at(1200));
    assert_eq!(status.backlog.unwrap(), BacklogStatus::default());
}

#[test]
fn an_old_jetstream_backlog_is_over_budget() {
    let queue = QueueState::Reachable(Backlog { pending: 1, oldest: Some(std::time::UNIX_EPOCH), dead_lettered: 0 });
    let status = desired_status(&SyncFlowStatus::default(), 1, &shared(None, queue), BUDGET, at(3600));
    assert_eq!(ready(&status).1, "BacklogOverBudget");
}

#[test]
fn an_unreachable_queue_is_not_ready_and_names_the_server() {
    let message = "NATS at nats://nats.nats:4222: connecting: connection refused".to_string();
    let status = desired_status(
        &SyncFlowStatus::default(),
        1,
        &shared(None, QueueState::Unreachable(message.clone())),
        BUDGET,
        at(10),
    );
    assert_eq!(ready(&status), ("False".into(), "QueueUnreachable".into(), message.clone()));
    assert!(is_true(&status.conditions, RECONCILING), "retried with a backoff");
    assert!(!is_true(&status.conditions, STALLED));
    assert_eq!(status.runner.unwrap().workload, "Deployment/orders-runner");
    let blocked = desired_status(&SyncFlowStatus::default(), 1, &Outcome::CleanupBlocked(message), BUDGET, at(10));
    assert_eq!(ready(&blocked).1, "QueueUnreachable");
}

#[test]
fn a_deployment_rolls_out_like_a_stateful_set() {
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    let mut d = Deployment {
        spec: Some(DeploymentSpec { replicas: Some(3), ..DeploymentSpec::default() }),
        status: Some(DeploymentStatus {
            observed_generation: Some(2),
            updated_replicas: Some(3),
            available_replicas: Some(3),
            ..DeploymentStatus::default()
        }),
        ..Deployment::default()
    };
    d.metadata.generation = Some(2);
    assert!(Rollout::of_deployment(&d).is_complete());
    d.metadata.generation = Some(3);
    assert!(!Rollout::of_deployment(&d).is_complete(), "counts of an older spec");
}
