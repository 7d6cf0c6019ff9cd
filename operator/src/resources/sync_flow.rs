//! The SyncFlow custom resource.

use std::ops::Deref;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the flow moves and how: its source, mappings, targets, delivery policy and
/// runner workload.
//
// The runner's `entrepot_api::resource::SyncFlowSpec`, unchanged, so a flow means the same in
// a cluster as in local mode. This doc comment is the `spec` field's `kubectl explain`
// text.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
// Every `printcolumn(...)` names the same keys; clippy reads them as one repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "entrepot.io",
    version = "v1alpha1",
    kind = "SyncFlow",
    namespaced,
    status = "SyncFlowStatus",
    derive = "PartialEq",
    shortname = "sflow",
    category = "entrepot",
    doc = "A flow of one entity from a source system, through mappings, to one or more targets, \
           with its delivery policy. The operator runs each SyncFlow in its own runner workload \
           and reports the runner's health and backlog in status.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the flow's runner is available"
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".spec.source.connectorRef",
        description = "The Connector records come from"
    ),
    printcolumn(
        name = "Targets",
        type_ = "string",
        json_path = ".spec.targets[*].connectorRef",
        description = "The Connectors records go to"
    ),
    printcolumn(
        name = "Backlog",
        type_ = "integer",
        json_path = ".status.backlog.pending",
        description = "Records accepted but not yet delivered"
    ),
    printcolumn(
        name = "Oldest",
        type_ = "integer",
        json_path = ".status.backlog.oldestPendingSeconds",
        description = "Age in seconds of the oldest undelivered record"
    ),
    printcolumn(
        name = "DLQ",
        type_ = "integer",
        json_path = ".status.backlog.deadLettered",
        description = "Records in the dead-letter queue"
    ),
    printcolumn(
        name = "Delivered",
        type_ = "integer",
        json_path = ".status.delivered",
        description = "Deliveries to targets by the running runners since they started"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct SyncFlowSpec(pub entrepot_api::resource::SyncFlowSpec);

impl Deref for SyncFlowSpec {
    type Target = entrepot_api::resource::SyncFlowSpec;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// What the operator observed of a SyncFlow and its runner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncFlowStatus {
    /// The `metadata.generation` this status describes. -1 until the operator has
    /// looked at the SyncFlow: until it equals `metadata.generation`, the conditions
    /// describe an older spec.
    #[serde(default = "super::not_observed")]
    pub observed_generation: i64,

    /// `Ready`: the runner is available and delivering. `Reconciling`: the operator is
    /// rolling out the spec. `Stalled`: the spec cannot be run as written (a missing
    /// Connector or Mapping, a Mapping that fails its tests, an invalid field); the
    /// message says what to change, and the last good runner keeps running meanwhile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The runner workload rendered for this flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerStatus>,

    /// The flow's queue, as last reported by its runner; for a queue in NATS JetStream,
    /// as JetStream counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<BacklogStatus>,

    /// Records per minute between the operator's last two reads of the runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<ThroughputStatus>,

    /// Deliveries to targets (one per record and target) counted by the flow's running
    /// runner pods since they started: a restarted pod counts again from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<i64>,

    /// When a record was last delivered to any target (to the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_time: Option<Time>,

    /// Each target, as the runners last reported it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["connector"]))]
    pub targets: Vec<TargetReport>,

    /// A batch flow: when its CronJob last started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,

    /// What the flow's runners last reported about each Connector the flow calls
    /// (targets and polled sources). The Connector's `Reachable` condition is read from
    /// here: the operator never calls a system nor reads a Secret itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub connectors: Vec<ConnectorReport>,
}

/// What a flow's runners last reported about one Connector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorReport {
    /// The Connector's name (same namespace as the flow).
    pub name: String,
    /// The kind of the last failure: `auth`, `unreachable`, `throttled`, `rejected`,
    /// `server` or `invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_category: Option<String>,
    /// When the last failure happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<Time>,
    /// The system's answer, or why there was none (bounded; never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_message: Option<String>,
    /// When the Connector last answered with a success; a last error older than this
    /// is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
}

impl Default for SyncFlowStatus {
    fn default() -> Self {
        Self {
            observed_generation: super::not_observed(),
            conditions: Vec::new(),
            runner: None,
            backlog: None,
            throughput: None,
            delivered: None,
            last_delivered_time: None,
            targets: Vec::new(),
            last_schedule_time: None,
            connectors: Vec::new(),
        }
    }
}

/// Records per minute, as the runners' counters moved between two reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputStatus {
    /// Items delivered to targets per minute.
    pub delivered_per_minute: i64,
    /// Failed attempts (retried) and dead-lettered records per minute.
    pub failed_per_minute: i64,
    /// Answers 429 from targets per minute.
    pub throttled_per_minute: i64,
}

/// One target of a flow, as its runners last reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetReport {
    /// The target Connector.
    pub connector: String,
    /// The last failure, if the last attempt failed: its category and the target's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When an item was last delivered to it (to the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_time: Option<Time>,
}

/// The runner workload of a SyncFlow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerStatus {
    /// The runner's workload, `StatefulSet/<flow>-runner` (continuous),
    /// `Deployment/<flow>-runner` (continuous, the queue in NATS JetStream) or
    /// `CronJob/<flow>-runner` (batch); its ConfigMap has the same name.
    pub workload: String,
    /// SHA-256 of the runner's rendered configuration and of the Secret keys it
    /// references. The runner pods carry it as the `entrepot.io/config-checksum`
    /// annotation; a change rolls them.
    pub config_checksum: String,
    /// Runner pods asked for.
    pub replicas: i32,
    /// Runner pods available, as the StatefulSet or Deployment reports them.
    pub available_replicas: i32,
}

/// A flow's queue, as its runner reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BacklogStatus {
    /// Records accepted from the source and not yet delivered to every target.
    #[serde(default)]
    pub pending: i64,
    /// Age in seconds of the oldest pending record; 0 when nothing is pending.
    #[serde(default)]
    pub oldest_pending_seconds: i64,
    /// Records in the dead-letter queue, waiting to be replayed or discarded.
    #[serde(default)]
    pub dead_lettered: i64,
}
