//! What a reconciliation run found: the JSON line printed on stdout and written to the
//! pod's termination message, which the operator copies into the ReconcileSchedule's
//! status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::resource::ReconcileAction;

/// The most a termination message may hold (Kubernetes keeps 4096 bytes); the summary
/// drops its samples rather than be cut.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// The longest sample key kept, in characters.
const SAMPLE_KEY_CHARS: usize = 100;

/// The counts of one reconciliation run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileSummary {
    /// The ReconcileSchedule that ran.
    pub schedule: String,
    /// The SyncFlow whose systems were compared.
    pub flow: String,
    /// `report` or `repair`.
    pub action: ReconcileAction,
    /// Start of the window compared (RFC 3339, UTC).
    pub window_start: String,
    /// End of the window compared: when the run started (RFC 3339, UTC).
    pub window_end: String,
    /// Distinct keys compared: every source record in the window, and every target
    /// record in the window that the source lacks.
    pub compared: u64,
    /// Records present in both systems with equal fields.
    pub matched: u64,
    /// Source records in the window that the target lacks.
    pub missing_in_target: u64,
    /// Target records in the window that the source lacks.
    pub missing_in_source: u64,
    /// Records present in both systems whose compared fields differ.
    pub mismatched: u64,
    /// Source records sent through the flow again (`action: repair`); records the
    /// runner already held (a repeated repair) are not counted.
    pub repaired: u64,
    /// Source records the flow's Mappings or the compare key could not read; the flow
    /// dead-letters those too.
    pub unreadable: u64,
    /// Some keys of each kind of drift.
    #[serde(default)]
    pub samples: DriftSamples,
}

/// Some keys of each kind of drift, to start looking from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftSamples {
    /// Keys the target lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_in_target: Vec<String>,
    /// Keys the source lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_in_source: Vec<String>,
    /// Keys whose fields differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatched: Vec<String>,
    /// Why some source records could not be read (record key or position, and reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

impl ReconcileSummary {
    /// Records that differ between the two systems.
    pub fn drift(&self) -> u64 {
        self.missing_in_target + self.missing_in_source + self.mismatched
    }

    /// One line of JSON that fits a termination message: the samples are shortened,
    /// then dropped, until it does.
    pub fn to_line(&self) -> String {
        let mut summary = self.clone();
        for keys in summary.samples.lists_mut() {
            for key in keys.iter_mut() {
                if let Some((cut, _)) = key.char_indices().nth(SAMPLE_KEY_CHARS) {
                    key.truncate(cut);
                    key.push('…');
                }
            }
        }
        loop {
            let line = serde_json::to_string(&summary).expect("a summary always serializes");
            if line.len() <= TERMINATION_MESSAGE_LIMIT {
                return line;
            }
            // Drop the last sample of the longest list.
            let longest = summary.samples.lists_mut().into_iter().max_by_key(|l| l.len()).expect("four lists");
            if longest.pop().is_none() {
                return line;
            }
        }
    }
}

impl DriftSamples {
    fn lists_mut(&mut self) -> [&mut Vec<String>; 4] {
        [&mut self.missing_in_target, &mut self.missing_in_source, &mut self.mismatched, &mut self.unreadable]
    }
}

/// What a run that could not finish writes to the termination message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileFailure {
    /// Why the run could not finish, naming the system or field at fault.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_always_fits_a_termination_message() {
        let mut summary = ReconcileSummary { schedule: "s".into(), flow: "f".into(), ..Default::default() };
        summary.samples.missing_in_target = (0..50).map(|i| format!("{i}-{}", "k".repeat(300))).collect();
        summary.samples.mismatched = vec!["short".into()];
        let line = summary.to_line();
        assert!(line.len() <= TERMINATION_MESSAGE_LIMIT, "{}", line.len());
        let back: ReconcileSummary = serde_json::from_str(&line).unwrap();
        assert_eq!(back.samples.mismatched, ["short"]);
        assert!(!back.samples.missing_in_target.is_empty());
        assert!(back.samples.missing_in_target.iter().all(|k| k.chars().count() <= SAMPLE_KEY_CHARS + 1));
    }
}
