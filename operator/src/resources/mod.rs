//! Entrepot's custom resources (group `entrepot.io`, version `v1alpha1`).
//!
//! Each kind wraps the runner's spec type unchanged (`#[serde(transparent)]`), so the
//! spec's doc comments are the `kubectl explain` text and a manifest means the same to
//! the operator and to local mode. Only the status types live here.

pub mod conditions;
mod connector;
mod crd;
mod mapping;
mod reconcile_schedule;
mod sync_flow;

pub use connector::{Connector, ConnectorSpec, ConnectorStatus};
pub use crd::{crds, render_crds};
pub use mapping::{Mapping, MappingSpec, MappingStatus};
pub use reconcile_schedule::{LastRun, ReconcileSchedule, ReconcileScheduleSpec, ReconcileScheduleStatus};
pub use sync_flow::{BacklogStatus, ConnectorReport, RunnerStatus, SyncFlow, SyncFlowSpec, SyncFlowStatus};

/// `observedGeneration` before the operator has looked at a resource: lower than any
/// `metadata.generation`, so nothing reads the resource as up to date.
pub(crate) fn not_observed() -> i64 {
    -1
}
