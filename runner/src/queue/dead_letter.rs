//! What acting on dead letters takes and answers: a listed entry, a page, a replay or
//! discard and its report. Each backend does it in one transaction, so a replay can
//! neither lose a record nor queue it twice.
//!
//! In the embedded queue, dead letter ids are sequence numbers from the queue's one
//! counter, so an id alone names a dead letter across flows; in JetStream they are the
//! flow's dead-letter stream sequence numbers, unique within the flow.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{DeadLetter, DeadLetterFilter, Envelope, Replay};

/// A dead letter with its id and flow, as listed and shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterEntry {
    /// The dead letter's id.
    pub id: u64,
    /// Its flow.
    pub flow: String,
    /// The name of the Connector it failed at, when a running runner answers (a queue
    /// file alone knows only the target's index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_connector: Option<String>,
    /// The record.
    #[serde(flatten)]
    pub dead_letter: DeadLetter,
}

impl DeadLetterEntry {
    /// The record as it re-enters its flow when replayed: marked as a replay (so the
    /// idempotency-key dedup lets it through), with its correlation id, and with this
    /// failure added to its history.
    pub fn replayed(&self, requested_by: &str, now_ms: i64) -> Envelope {
        let mut envelope = self.dead_letter.envelope.clone();
        let earlier = envelope.replay.take();
        let (count, target, mut history) = earlier.map_or((0, None, Vec::new()), |r| (r.count, r.target, r.history));
        history.push(self.dead_letter.as_past_failure(self.id));
        envelope.replay = Some(Box::new(Replay {
            dead_letter_id: Some(self.id),
            count: count + 1,
            // A record that failed at one target goes back to that one only; a replay
            // that then failed at mapping keeps the earlier restriction.
            target: self.dead_letter.target.clone().or(target),
            requested_by: requested_by.into(),
            replayed_at_ms: now_ms,
            history,
        }));
        envelope
    }
}

/// One page of the dead letters a filter selects, lowest ids first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterPage {
    /// The dead letters on this page.
    pub entries: Vec<DeadLetterEntry>,
    /// How many match the filter, on every page.
    pub total: usize,
    /// When more follow: the `after` that gives the next page.
    pub next_after: Option<u64>,
}

impl DeadLetterPage {
    /// The page of `matched` (every dead letter the filter selects, in any order) that
    /// `filter`'s `after` and `limit` ask for.
    pub fn of(mut matched: Vec<DeadLetterEntry>, filter: &DeadLetterFilter) -> Self {
        matched.sort_by_key(|e| e.id);
        let total = matched.len();
        let mut entries: Vec<DeadLetterEntry> =
            matched.into_iter().filter(|e| filter.after.is_none_or(|a| e.id > a)).collect();
        let mut next_after = None;
        if let Some(limit) = filter.limit
            && entries.len() > limit
        {
            entries.truncate(limit);
            next_after = entries.last().map(|e| e.id);
        }
        Self { entries, total, next_after }
    }
}

/// What can be done to dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// Back into the flow's pipeline.
    Replay,
    /// Deleted for good.
    Discard,
}

impl DeadLetterAction {
    /// `replay` or `discard` (the admin API's path, the CLI's command).
    pub fn verb(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Discard => "discard",
        }
    }

    /// `replayed` or `discarded`.
    pub fn done(self) -> &'static str {
        match self {
            Self::Replay => "replayed",
            Self::Discard => "discarded",
        }
    }
}

/// A dead letter a replay or discard acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affected {
    /// The dead letter's id.
    pub id: u64,
    /// Its flow.
    pub flow: String,
    /// The record's correlation id, kept by a replay.
    pub correlation_id: String,
}

/// What a replay or discard did: the answer of the admin API and of the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionReport {
    /// `replay` or `discard`.
    pub action: String,
    /// How many dead letters it acted on.
    pub count: usize,
    /// Their ids.
    pub ids: Vec<u64>,
    /// Ids asked for by number that are not dead letters (any more), or belong to a flow
    /// the runner does not carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<u64>,
}

impl ActionReport {
    /// The report of `action` on `affected`, for a filter that asked for `wanted` ids.
    pub fn new(action: DeadLetterAction, wanted: &BTreeSet<u64>, affected: &[Affected]) -> Self {
        let ids: Vec<u64> = affected.iter().map(|a| a.id).collect();
        let missing = wanted.iter().copied().filter(|w| !ids.contains(w)).collect();
        Self { action: action.verb().into(), count: ids.len(), ids, missing }
    }

    /// How many of the affected dead letters belong to each flow.
    pub fn per_flow(affected: &[Affected]) -> BTreeMap<&str, u64> {
        let mut counts = BTreeMap::new();
        for a in affected {
            *counts.entry(a.flow.as_str()).or_default() += 1;
        }
        counts
    }
}
