//! The ReconcileSchedule custom resource.

use std::ops::Deref;

use entrepot_api::reconcile_summary::ReconcileSummary;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What is compared, when and over which window, and what is done about drift.
//
// The runner's `entrepot_api::resource::ReconcileScheduleSpec`, unchanged. This doc comment is
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
    printcolumn(
        name = "Last Run",
        type_ = "date",
        json_path = ".status.lastRun.completionTime",
        description = "When the last run finished"
    ),
    printcolumn(
        name = "Missing",
        type_ = "integer",
        json_path = ".status.lastRun.summary.missingInTarget",
        description = "Source records the target lacked at the last run"
    ),
    printcolumn(
        name = "Mismatched",
        type_ = "integer",
        json_path = ".status.lastRun.summary.mismatched",
        description = "Records that differed at the last run"
    ),
    printcolumn(
        name = "Next Run",
        type_ = "date",
        json_path = ".status.nextRunTime",
        description = "When the next run is due"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct ReconcileScheduleSpec(pub entrepot_api::resource::ReconcileScheduleSpec);

impl Deref for ReconcileScheduleSpec {
    type Target = entrepot_api::resource::ReconcileScheduleSpec;

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

    /// The CronJob that starts the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_job: Option<String>,

    /// When the CronJob last started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,

    /// When the next run is due, from `schedule` and `timeZone`; absent while suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<Time>,

    /// The last run that finished, with what it found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
}

impl Default for ReconcileScheduleStatus {
    fn default() -> Self {
        Self {
            observed_generation: super::not_observed(),
            conditions: Vec::new(),
            cron_job: None,
            last_schedule_time: None,
            next_run_time: None,
            last_run: None,
        }
    }
}

/// A finished run: its Job and what its pod reported in its termination message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// The run's Job.
    pub job: String,
    /// Whether the run finished (drift or not); false when it could not run.
    pub succeeded: bool,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What the run found: counts of compared, matched, missing, mismatched and
    /// repaired records, and sample keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ReconcileSummary>,
    /// Why the run could not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
