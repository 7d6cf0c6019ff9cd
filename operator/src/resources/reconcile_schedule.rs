//! The ReconcileSchedule custom resource.

use std::ops::Deref;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What is compared, when and over which window, and what is done about drift.
//
// The runner's `entrepot::spec::ReconcileScheduleSpec`, unchanged. This doc comment is
// the `spec` field's `kubectl explain` text.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
// Every `printcolumn(...)` names the same keys; clippy reads them as one repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "entrepot.io",
    version = "v1alpha1",
    kind = "ReconcileSchedule",
    namespaced,
    status = "ReconcileScheduleStatus",
    derive = "PartialEq",
    shortname = "rsched",
    category = "entrepot",
    doc = "A scheduled comparison of a SyncFlow's source and target for one entity over a time \
           window, reporting drift and, when asked, repairing it.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the schedule is valid and its last run succeeded"
    ),
    printcolumn(
        name = "Flow",
        type_ = "string",
        json_path = ".spec.syncFlowRef",
        description = "The SyncFlow whose systems are compared"
    ),
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.schedule",
        description = "When runs start, in cron syntax"
    ),
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action", description = "report or repair"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct ReconcileScheduleSpec(pub entrepot::spec::ReconcileScheduleSpec);

impl Deref for ReconcileScheduleSpec {
    type Target = entrepot::spec::ReconcileScheduleSpec;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// What the operator observed of a ReconcileSchedule and its runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileScheduleStatus {
    /// The `metadata.generation` this status describes; -1 until the operator has looked.
    #[serde(default = "super::not_observed")]
    pub observed_generation: i64,

    /// `Ready`: the schedule is valid and its last run succeeded. `Stalled`: it cannot
    /// run as written; the message says what to change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl Default for ReconcileScheduleStatus {
    fn default() -> Self {
        Self { observed_generation: super::not_observed(), conditions: Vec::new() }
    }
}
