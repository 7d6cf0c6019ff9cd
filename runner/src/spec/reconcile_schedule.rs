use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// A scheduled comparison of a SyncFlow's source and target for one entity over a time
/// window (e.g. storefront orders vs ERP sales orders in the last 24 h) that reports
/// drift, and repairs it when asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconcileScheduleSpec {
    /// The SyncFlow (same namespace) whose source and target are compared.
    pub sync_flow_ref: String,
    /// When to run, in cron syntax (`0 * * * *`: hourly).
    pub schedule: String,
    /// IANA time zone the schedule is read in (e.g. `Europe/Paris`). Defaults to UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// How far back each run looks, e.g. `24h`.
    pub window: Duration,
    /// What is compared.
    pub compare: CompareSpec,
    /// `report` only counts drift; `repair` also re-sends what is missing or different
    /// through the SyncFlow.
    #[serde(default)]
    pub action: ReconcileAction,
    /// Stop scheduling new runs.
    #[serde(default)]
    pub suspend: bool,
}

/// Which records and fields a reconciliation compares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompareSpec {
    /// jq path into the canonical record that identifies it in both systems, e.g. `.orderId`.
    pub key: String,
    /// jq paths of the fields that must match, e.g. `[".totals.grand", ".lines"]`.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// What a reconciliation does about drift.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReconcileAction {
    /// Count and report drift.
    #[default]
    Report,
    /// Report, then re-send missing and mismatched records through the flow.
    Repair,
}
