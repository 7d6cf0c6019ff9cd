//! `GET /v1/status`: what the runner reports about each flow. The operator reads this
//! (typed, from this crate) into each SyncFlow's status.

use serde::{Deserialize, Serialize};

use crate::ErrorCategory;

/// The runner's report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerStatus {
    /// One entry per flow the runner carries.
    pub flows: Vec<FlowStatus>,
    /// One entry per Connector the runner calls (targets and polled sources).
    #[serde(default)]
    pub connectors: Vec<ConnectorStatus>,
    /// The runner's queue, when something is wrong with it.
    #[serde(default, skip_serializing_if = "QueueStatus::is_fine")]
    pub queue: QueueStatus,
}

/// What is wrong with a runner's queue, if anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// Why the queue refuses writes (a failed write, such as on a full disk, latches it
    /// until it is reopened); `/healthz` fails meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latched: Option<String>,
    /// A corrupt queue file this runner set aside at start (renamed, then started with
    /// an empty queue): read what it held with `entrepot deadletters --data-dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
}

impl QueueStatus {
    /// Nothing to report.
    pub fn is_fine(&self) -> bool {
        self.latched.is_none() && self.set_aside.is_none()
    }
}

/// What the runner last saw go wrong with a Connector. The last error stays after the
/// Connector recovers; its time says how recent it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStatus {
    /// The Connector's name.
    pub name: String,
    /// The Connector's namespace.
    pub namespace: String,
    /// The kind of the last failure: `auth`, `unreachable`, `throttled`, `rejected`,
    /// `server` or `invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_category: Option<ErrorCategory>,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<jiff::Timestamp>,
    /// The system's answer, or why there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_message: Option<String>,
    /// When the Connector last answered with a success. A last error older than this
    /// is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<jiff::Timestamp>,
    /// The quota in force towards it as a target, after adaptation to its answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaStatus>,
}

/// A target Connector's quota as the runner holds to it now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    /// Requests in flight the Connector declares (`spec.limits.concurrency`, default 4).
    pub declared_concurrency: u32,
    /// Requests in flight allowed now: below the declared figure after the target
    /// refused one too many (it grants fewer).
    pub concurrency: u32,
    /// Requests a second allowed now, when the Connector declares a rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
}

/// One flow's counters and backlog.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowStatus {
    /// The SyncFlow's name.
    pub name: String,
    /// The SyncFlow's namespace.
    pub namespace: String,
    /// Records accepted from the source since the runner started.
    pub received: u64,
    /// Records dropped as duplicates since the runner started.
    pub deduplicated: u64,
    /// Items delivered to targets since the runner started.
    pub delivered: u64,
    /// Items not delivered because the target already had a newer version.
    #[serde(default)]
    pub stale: u64,
    /// Dead letters kept (all time, until discarded or expired).
    pub dead_lettered: u64,
    /// Records dead-lettered since the runner started (replays and discards do not
    /// lower it).
    #[serde(default)]
    pub dead_lettered_total: u64,
    /// Records and items waiting for delivery.
    pub pending: u64,
    /// Age in seconds of the oldest waiting record; absent when nothing waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_seconds: Option<u64>,
    /// Per target.
    pub targets: Vec<TargetStatus>,
}

/// One target of a flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// The target Connector's name.
    pub connector: String,
    /// Items delivered since the runner started.
    pub delivered: u64,
    /// Transient failures retried since the runner started.
    pub retried: u64,
    /// Answers 429 from the target since the runner started.
    #[serde(default)]
    pub throttled: u64,
    /// The last failure, if the last attempt failed: a category and a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When an item was last delivered to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_at: Option<jiff::Timestamp>,
}
