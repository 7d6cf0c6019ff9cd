//! The SyncFlow status the operator reports, computed from what it observed. Pure.
//!
//! Values read from the runners are rounded so that a flow whose state did not change
//! keeps the same status between reads, and the operator sends no patch: rates to whole
//! records per minute, ages to 10 s (to the minute past 10 minutes), times to the minute.

use std::time::Duration;

use entrepot_api::{ErrorCategory, status::ConnectorStatus};
use k8s_openapi::{
    api::apps::v1::{Deployment, StatefulSet},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{Timestamp, TimestampRound, Unit},
};

use super::{reason::Reason, runner_status::RunnerReport, validate::Invalid};
use crate::nats_io::Backlog;
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
        let status = stateful_set.status.as_ref();
        Self::from_counts(
            stateful_set.spec.as_ref().and_then(|s| s.replicas),
            stateful_set.metadata.generation,
            status.and_then(|s| s.observed_generation),
            status.and_then(|s| s.updated_replicas),
            status.and_then(|s| s.available_replicas),
        )
    }

    /// Reads a Deployment's spec and status (a JetStream flow's runners).
    pub fn of_deployment(deployment: &Deployment) -> Self {
        let status = deployment.status.as_ref();
        Self::from_counts(
            deployment.spec.as_ref().and_then(|s| s.replicas),
            deployment.metadata.generation,
            status.and_then(|s| s.observed_generation),
            status.and_then(|s| s.updated_replicas),
            status.and_then(|s| s.available_replicas),
        )
    }

    /// The rollout of a workload asking for `replicas` at `generation`, whose controller
    /// has seen `seen` and reports `updated` and `available` pods.
    fn from_counts(
        replicas: Option<i32>,
        generation: Option<i64>,
        seen: Option<i64>,
        updated: Option<i32>,
        available: Option<i32>,
    ) -> Self {
        let observed = match (generation, seen) {
            (Some(generation), Some(seen)) => seen >= generation,
            (None, _) => true,
            (Some(_), None) => false,
        };
        Self {
            desired: replicas.unwrap_or(1),
            updated: updated.unwrap_or(0),
            available: available.unwrap_or(0),
            observed,
        }
    }

    /// Whether every pod asked for runs the current template and is available.
    pub fn is_complete(&self) -> bool {
        self.observed && self.updated >= self.desired && self.available >= self.desired
    }
}

/// What the operator found of a JetStream flow's queue in NATS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueState {
    /// Its streams and buckets are as planned; its backlog, as JetStream counts it.
    Reachable(Backlog),
    /// NATS could not be reached, or refused: why (the URL without credentials).
    Unreachable(String),
}

/// What happened to the flow in this reconcile.
#[derive(Clone, Debug)]
pub enum Outcome<'a> {
    /// The flow cannot be run as written; its children were left as they were.
    Stalled(&'a Invalid),
    /// The flow is being deleted, and its JetStream streams cannot be: why, and how to
    /// let the deletion go on without them.
    CleanupBlocked(String),
    /// A continuous flow's children were applied.
    Applied {
        /// `StatefulSet/<name>` or `Deployment/<name>`.
        workload: String,
        /// The configuration checksum rendered into its pods.
        checksum: String,
        /// Its rollout.
        rollout: Rollout,
        /// `spec.suspend`.
        suspended: bool,
        /// What the runner pods said, when there are pods to ask.
        report: Option<Box<RunnerReport>>,
        /// The queue in JetStream, for a flow that has it there.
        queue: Option<QueueState>,
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
        /// The queue in JetStream, for a flow that has it there.
        queue: Option<QueueState>,
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
        Outcome::CleanupBlocked(message) => queue_unreachable(message),
        Outcome::Scheduled { workload, checksum, suspended, last_schedule, queue } => {
            status.runner = Some(RunnerStatus {
                workload: workload.clone(),
                config_checksum: checksum.clone(),
                replicas: 0,
                available_replicas: 0,
            });
            status.last_schedule_time = last_schedule.map(Time);
            jetstream_backlog(&mut status, queue.as_ref(), now);
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
        Outcome::Applied { workload, checksum, rollout, suspended, report, queue } => {
            status.runner = Some(RunnerStatus {
                workload: workload.clone(),
                config_checksum: checksum.clone(),
                replicas: rollout.desired,
                available_replicas: rollout.available,
            });
            if let Some(report) = report {
                merge_report(&mut status, report);
            }
            jetstream_backlog(&mut status, queue.as_ref(), now);
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
                    format!("runner {workload}: its controller has not yet seen the new spec")
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
    // A queue that cannot be reached is what to fix first, whatever the runners say.
    let desired = match outcome {
        Outcome::Applied { queue: Some(QueueState::Unreachable(message)), .. }
        | Outcome::Scheduled { queue: Some(QueueState::Unreachable(message)), .. } => queue_unreachable(message),
        _ => desired,
    };
    status.conditions = conditions::merge(&previous.conditions, &desired, generation, now);
    status
}

/// Not Ready, and Reconciling: the operator retries with a backoff and gets there by
/// itself once NATS answers.
fn queue_unreachable(message: &str) -> Vec<Desired> {
    let reason = Reason::QueueUnreachable.as_str();
    vec![Desired::no(READY, reason, message), Desired::yes(RECONCILING, reason, message), resolved()]
}

/// The backlog as JetStream counts it, over whatever the runners said: the runners of
/// a shared queue each see all of it (their sum would count it once per runner), and
/// JetStream answers even when no runner is up.
fn jetstream_backlog(status: &mut SyncFlowStatus, queue: Option<&QueueState>, now: Timestamp) {
    let Some(QueueState::Reachable(backlog)) = queue else { return };
    let age = backlog.oldest.map_or(0, |oldest| {
        let since = oldest.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        now.as_second().saturating_sub(since).max(0) as u64
    });
    status.backlog = Some(BacklogStatus {
        pending: backlog.pending as i64,
        oldest_pending_seconds: round_age(age) as i64,
        dead_lettered: backlog.dead_lettered as i64,
    });
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
         replay the dead letters with reason auth (`entrepot deadletters replay --reason auth --why \"credentials fixed\"`)",
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
#[path = "status_tests.rs"]
mod tests;
