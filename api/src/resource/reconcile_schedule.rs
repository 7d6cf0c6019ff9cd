use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Duration, Pagination};

/// A scheduled comparison of a SyncFlow's source and target for one entity over a time
/// window (e.g. storefront orders vs ERP sales orders in the last 24 h) that reports
/// drift, and repairs it when asked.
///
/// Each run lists the records of both systems with the flow's Connectors (`source` and
/// `target`), maps the source's through the flow's Mappings into the target's shape,
/// matches them by `compare.key` and compares `compare.fields`. With `action: repair`,
/// the source records missing from the target or different there are sent through the
/// flow again (its ordering, stale guard and idempotency key apply).
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
    /// How the source Connector's records are listed.
    pub source: ListingSpec,
    /// How the target Connector's records are listed.
    pub target: ListingSpec,
    /// Which of the flow's targets is compared, by its `connectorRef`. Default: the
    /// flow's first target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_connector_ref: Option<String>,
    /// `report` only counts drift; `repair` also re-sends what is missing or different
    /// through the SyncFlow.
    #[serde(default)]
    pub action: ReconcileAction,
    /// Stop scheduling new runs; a run in progress goes on.
    #[serde(default)]
    pub suspend: bool,
    /// What happens when a run is due while the previous one is still going: `Forbid`
    /// (the default) skips the new run, `Allow` runs both, `Replace` stops the old one.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Finished successful runs (Jobs) kept for inspection. Default 3.
    #[serde(default = "default_successful_history")]
    #[schemars(range(min = 0, max = 100))]
    pub successful_jobs_history_limit: u32,
    /// Failed runs (Jobs) kept for inspection. Default 1.
    #[serde(default = "default_failed_history")]
    #[schemars(range(min = 0, max = 100))]
    pub failed_jobs_history_limit: u32,
}

fn default_successful_history() -> u32 {
    3
}

fn default_failed_history() -> u32 {
    1
}

/// Which records and fields a reconciliation compares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompareSpec {
    /// jq path that identifies a record in both systems, read from the source record
    /// mapped into the target's shape and from the listed target record, e.g.
    /// `.externalId`.
    pub key: String,
    /// jq paths of the fields that must match, e.g. `[".total", ".items"]`. Numbers
    /// compare by value (`2` equals `2.0`). Empty: only presence is compared.
    #[serde(default)]
    pub fields: Vec<String>,
    /// How many keys of each kind of drift the summary lists. Default 10.
    #[serde(default = "default_samples")]
    #[schemars(range(min = 0, max = 50))]
    pub samples: u32,
}

fn default_samples() -> u32 {
    10
}

/// How one system's records are listed: a GET of a list endpoint under the Connector's
/// endpoint, page by page, with the Connector's credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListingSpec {
    /// Path under the Connector's endpoint, e.g. `/admin/api/2026-10/orders.json`.
    pub path: String,
    /// Query parameters sent with the first page, e.g. `{status: any, limit: "250"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// jq path to the array of records in a page, e.g. `.orders`. Default: the page
    /// itself is the array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// How the next page is found (`link`, `cursor` or `offset`). Without it, one page
    /// is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    /// Query parameter that receives the window's start (RFC 3339, UTC), so the system
    /// lists only what changed in the window, e.g. `updated_at_min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_param: Option<String>,
    /// jq path to a listed record's time (RFC 3339), e.g. `.updated_at`. A record older
    /// than the window's start is still matched against, but not counted as drift.
    /// Without it, every listed record is in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// jq program applied to each listed target record before it is compared, to bring
    /// it into the shape the flow sends (e.g. `{externalId, total: .amount}`). Ignored
    /// on the source, whose records go through the flow's Mappings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
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

/// What a due run does while the previous one is still going (the CronJob's
/// `concurrencyPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    Allow,
    /// A due run is skipped while the previous one goes on.
    #[default]
    Forbid,
    /// The previous run is stopped and the new one started.
    Replace,
}

impl ConcurrencyPolicy {
    /// The name Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Forbid => "Forbid",
            Self::Replace => "Replace",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_is_left_out_and_unknown_fields_are_refused() {
        let yaml = "
syncFlowRef: orders
schedule: '0 * * * *'
window: 24h
compare: {key: .externalId}
source: {path: /orders.json, records: .orders}
target: {path: /salesOrders}
";
        let spec: ReconcileScheduleSpec = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(spec.concurrency_policy, ConcurrencyPolicy::Forbid);
        assert_eq!((spec.successful_jobs_history_limit, spec.failed_jobs_history_limit), (3, 1));
        assert_eq!((spec.action, spec.compare.samples), (ReconcileAction::Report, 10));
        let typo = format!("{yaml}concurency: Allow\n");
        let err = serde_saphyr::from_str::<ReconcileScheduleSpec>(&typo).unwrap_err().to_string();
        assert!(err.contains("concurency"), "{err}");
    }
}
