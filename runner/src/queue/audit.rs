//! The audit trail: who replayed, discarded or injected records into a flow, when, what
//! it touched, and why. A backend writes one entry per flow an action touched, with the
//! action (in the embedded queue, in the same transaction), and keeps entries as long as
//! the flow's dead letters (`spec.delivery.deadLetter.retention`). Read with
//! `entrepot deadletters history` and `GET /v1/audit`.

use serde::{Deserialize, Serialize};

/// The most characters of a reason kept; the rest is cut.
pub const REASON_MAX_CHARS: usize = 500;
/// The most ids (dead letters, or records) one entry lists; past them it counts them in
/// `more_ids` only, so one `discard --all` cannot make an entry larger than a stream
/// message may be.
pub const MAX_IDS: usize = 5000;

/// Who acts on a flow's records from outside its pipeline, and why: what each audit
/// entry of the action records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    /// Who, as authenticated: the admin token that was presented (its fingerprint, never
    /// the token), an open admin API on loopback, or the operating-system user that
    /// opened the queue file.
    pub identity: String,
    /// The name the client gave for itself (`x-entrepot-requested-by`), not verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Why, as the person (or the schedule) gave it (`--why`; `why` in the admin API:
    /// `reason` there already selects dead letters by their failure).
    pub why: String,
}

impl Caller {
    /// A caller, with its reason (`why`) checked: see [`reason`].
    pub fn new(identity: impl Into<String>, client: Option<String>, reason: Option<&str>) -> Result<Self, ReasonError> {
        Ok(Self { identity: identity.into(), client, why: self::reason(reason)? })
    }

    /// Who asked, in one line: what a replayed record keeps as `requestedBy` and the logs
    /// show.
    pub fn requested_by(&self) -> String {
        match &self.client {
            Some(client) => format!("{} ({client})", self.identity),
            None => self.identity.clone(),
        }
    }
}

/// A replay, discard or injection without a usable reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`why` is required: say why you do this, for the audit trail (`entrepot deadletters history`), e.g. \
     --why \"ERP closed period reopened, INC-4711\""
)]
pub struct ReasonError;

/// `given`, trimmed, control characters turned into spaces and cut to
/// [`REASON_MAX_CHARS`]; an error when nothing is left.
pub fn reason(given: Option<&str>) -> Result<String, ReasonError> {
    let text: String = given
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(REASON_MAX_CHARS)
        .collect();
    let text = text.trim_end().to_string();
    if text.is_empty() { Err(ReasonError) } else { Ok(text) }
}

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Dead letters put back into the pipeline.
    Replay,
    /// Dead letters deleted.
    Discard,
    /// Records handed to the flow through the admin API (`POST /v1/flows/{flow}/records`).
    Inject,
    /// Records a ReconcileSchedule found missing or different at the target, sent again.
    Repair,
}

impl AuditAction {
    /// `replay`, `discard`, `inject` or `repair`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Discard => "discard",
            Self::Inject => "inject",
            Self::Repair => "repair",
        }
    }
}

/// One entry of the audit trail: one action on one flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Its number, given by the queue when written (increasing within a flow).
    #[serde(default)]
    pub id: u64,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
    /// The flow.
    pub flow: String,
    /// What.
    pub action: AuditAction,
    /// Who and why.
    #[serde(flatten)]
    pub caller: Caller,
    /// How many records the action moved or deleted (injected: queued).
    pub count: u64,
    /// The dead letters a replay or discard acted on (at most [`MAX_IDS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_letters: Vec<u64>,
    /// The correlation ids of the records a replay or injection queued (at most
    /// [`MAX_IDS`]), to follow them in logs and traces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
    /// Ids past [`MAX_IDS`], counted only.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_ids: u64,
    /// Injected records dropped because their delivery id was already taken.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicates: u64,
    /// The one target the records were sent to, when not every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The ReconcileSchedule of a repair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AuditEntry {
    /// An entry of `action` on `flow` by `caller`, now, with nothing counted yet.
    pub fn new(flow: &str, action: AuditAction, caller: &Caller, at_ms: i64) -> Self {
        Self {
            id: 0,
            at_ms,
            flow: flow.into(),
            action,
            caller: caller.clone(),
            count: 0,
            dead_letters: Vec::new(),
            records: Vec::new(),
            more_ids: 0,
            duplicates: 0,
            target: None,
            schedule: None,
        }
    }

    /// Counts one more record, keeping its dead-letter id and correlation id while there
    /// is room.
    pub fn add(&mut self, dead_letter: Option<u64>, correlation_id: Option<&str>) {
        self.count += 1;
        if self.dead_letters.len() + self.records.len() >= 2 * MAX_IDS {
            self.more_ids += 1;
            return;
        }
        if let Some(id) = dead_letter {
            self.dead_letters.push(id);
        }
        if let Some(c) = correlation_id {
            self.records.push(c.to_string());
        }
    }

    /// One entry per flow of `affected` (in flow order), for a replay or discard.
    pub fn of_action(
        action: AuditAction,
        affected: &[super::Affected],
        caller: &Caller,
        at_ms: i64,
    ) -> Vec<AuditEntry> {
        let mut per_flow: std::collections::BTreeMap<&str, AuditEntry> = std::collections::BTreeMap::new();
        for a in affected {
            let entry = per_flow.entry(&a.flow).or_insert_with(|| AuditEntry::new(&a.flow, action, caller, at_ms));
            // A discard deletes the record: there is nothing to follow.
            let correlation = (action == AuditAction::Replay).then_some(a.correlation_id.as_str());
            entry.add(Some(a.id), correlation);
        }
        per_flow.into_values().collect()
    }
}

/// Which audit entries to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditFilter {
    /// Of this flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Of this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<AuditAction>,
    /// Written at or after, in Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// The most recent this many (oldest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl AuditFilter {
    /// Whether `entry` is selected (before `limit`).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.flow.as_ref().is_none_or(|f| *f == entry.flow)
            && self.action.is_none_or(|a| a == entry.action)
            && self.since_ms.is_none_or(|s| entry.at_ms >= s)
    }

    /// The selected entries of `all`, oldest first, the last `limit` of them.
    pub fn select(&self, all: impl IntoIterator<Item = AuditEntry>) -> Vec<AuditEntry> {
        let mut selected: Vec<AuditEntry> = all.into_iter().filter(|e| self.matches(e)).collect();
        selected.sort_by(|a, b| (a.at_ms, &a.flow, a.id).cmp(&(b.at_ms, &b.flow, b.id)));
        if let Some(limit) = self.limit {
            let skip = selected.len().saturating_sub(limit);
            selected.drain(..skip);
        }
        selected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Affected;

    fn caller() -> Caller {
        Caller::new("admin token sha256:0a1b2c3d", Some("cli (ana)".into()), Some("INC-1")).unwrap()
    }

    #[test]
    fn a_reason_is_required_trimmed_and_bounded() {
        assert_eq!(reason(None), Err(ReasonError));
        assert_eq!(reason(Some("  \n\t ")), Err(ReasonError));
        assert_eq!(reason(Some(" fixed\nthe SKU ")).unwrap(), "fixed the SKU");
        assert_eq!(reason(Some(&"x".repeat(10_000))).unwrap().len(), REASON_MAX_CHARS);
        assert!(ReasonError.to_string().contains("`why` is required"));
    }

    #[test]
    fn one_entry_per_flow_with_the_ids_it_touched() {
        let affected = [("a", 3), ("b", 4), ("a", 5)].map(|(flow, id)| Affected {
            id,
            flow: flow.into(),
            correlation_id: format!("c{id}"),
        });
        let entries = AuditEntry::of_action(AuditAction::Replay, &affected, &caller(), 7);
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].flow.as_str(), entries[0].count, &entries[0].dead_letters), ("a", 2, &vec![3, 5]));
        assert_eq!(entries[0].records, ["c3", "c5"]);
        assert_eq!(entries[0].caller.requested_by(), "admin token sha256:0a1b2c3d (cli (ana))");
        let discarded = AuditEntry::of_action(AuditAction::Discard, &affected, &caller(), 7);
        assert!(discarded[0].records.is_empty(), "a discarded record has nothing to follow");
    }

    #[test]
    fn ids_past_the_bound_are_only_counted() {
        let mut entry = AuditEntry::new("f", AuditAction::Discard, &caller(), 1);
        for id in 0..(2 * MAX_IDS as u64 + 10) {
            entry.add(Some(id), None);
        }
        assert_eq!((entry.count, entry.dead_letters.len(), entry.more_ids), (2 * MAX_IDS as u64 + 10, 2 * MAX_IDS, 10));
    }

    #[test]
    fn the_filter_keeps_the_latest_matching_entries_oldest_first() {
        let at = |flow: &str, action, at_ms| AuditEntry::new(flow, action, &caller(), at_ms);
        let all = vec![
            at("b", AuditAction::Replay, 3),
            at("a", AuditAction::Discard, 1),
            at("a", AuditAction::Replay, 2),
            at("a", AuditAction::Replay, 4),
        ];
        let filter = AuditFilter { flow: Some("a".into()), action: Some(AuditAction::Replay), ..Default::default() };
        let got: Vec<i64> = filter.select(all.clone()).iter().map(|e| e.at_ms).collect();
        assert_eq!(got, [2, 4]);
        let last = AuditFilter { limit: Some(2), ..Default::default() };
        assert_eq!(last.select(all).iter().map(|e| e.at_ms).collect::<Vec<_>>(), [3, 4]);
        let json = serde_json::to_value(at("a", AuditAction::Inject, 1)).unwrap();
        assert_eq!(json["action"], "inject");
        assert_eq!(json["why"], "INC-1");
        assert_eq!(json["identity"], "admin token sha256:0a1b2c3d");
    }
}
