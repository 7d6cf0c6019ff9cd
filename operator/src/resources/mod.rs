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
pub use mapping::{Mapping, MappingSpec, MappingStatus, MappingTestFailure, MappingTestsStatus, ProducedEntity};
pub use reconcile_schedule::{LastRun, ReconcileSchedule, ReconcileScheduleSpec, ReconcileScheduleStatus};
pub use sync_flow::{
    BacklogStatus, ConnectorReport, RunnerStatus, SyncFlow, SyncFlowSpec, SyncFlowStatus, TargetReport,
    ThroughputStatus,
};

/// `observedGeneration` before the operator has looked at a resource: lower than any
/// `metadata.generation`, so nothing reads the resource as up to date.
pub(crate) fn not_observed() -> i64 {
    -1
}

/// `text` cut to at most `max` bytes on a character boundary, with a marker saying it
/// was cut; status fields and Event notes must stay small whatever a user wrote.
pub fn cut(text: &str, max: usize) -> String {
    const MARKER: &str = "… (cut)";
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(MARKER.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARKER}", &text[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn cut_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(super::cut("short", 10), "short");
        let long = "é".repeat(100); // 200 bytes
        let cut = super::cut(&long, 51);
        assert!(cut.len() <= 51, "{} bytes", cut.len());
        assert!(cut.ends_with("… (cut)"), "{cut}");
        assert!(cut.starts_with("éé"));
    }
}
