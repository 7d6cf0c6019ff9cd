//! Dead letters in redb: find them, replay them into the inbox, discard them, and purge
//! those past their flow's retention, each in one transaction.
//!
//! Dead letter ids are sequence numbers from the queue's one counter, so an id alone
//! names a dead letter across flows.

use std::collections::BTreeMap;

use redb::ReadableTable;
use serde::Deserialize;
use tracing::{debug, info};

use super::{DEAD, INBOX, META, RedbQueue, audit, decode, encode, held::Delta};
use crate::queue::{
    Affected, AuditAction, AuditEntry, Caller, DeadLetter, DeadLetterEntry, DeadLetterFilter, DeadLetterPage,
    QueueError, now_ms,
};

/// Every dead letter `filter` selects, lowest ids first, with how many there are in all
/// (before `after` and `limit`).
fn select(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    filter: &DeadLetterFilter,
) -> Result<DeadLetterPage, QueueError> {
    let mut matched = Vec::new();
    let range = match &filter.flow {
        Some(flow) => table.range((flow.as_str(), 0)..=(flow.as_str(), u64::MAX))?,
        None => table.iter()?,
    };
    for entry in range {
        let (k, v) = entry?;
        let (flow, id) = k.value();
        if !filter.ids.is_empty() && !filter.ids.contains(&id) {
            continue;
        }
        let letter: DeadLetter = decode((flow, id), v.value())?;
        if filter.matches(flow, id, &letter) {
            let target_connector =
                letter.target.as_deref().and_then(|t| filter.connector(flow, t)).map(|(_, c)| c.to_string());
            matched.push(DeadLetterEntry { id, flow: flow.to_string(), target_connector, dead_letter: letter });
        }
    }
    Ok(DeadLetterPage::of(matched, filter))
}

/// Just the time a dead letter was written: the retention purge reads nothing else.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stamp {
    dead_lettered_at_ms: i64,
}

impl RedbQueue {
    /// The dead letters `filter` selects, one page of them.
    pub(super) fn find_dead_letters(&self, filter: &DeadLetterFilter) -> Result<DeadLetterPage, QueueError> {
        let tx = self.db.begin_read()?;
        select(&tx.open_table(DEAD)?, filter)
    }

    /// Moves the dead letters `filter` selects back into their flows' inboxes, in one
    /// transaction. Each re-enters the pipeline as a new record marked as a replay (so
    /// the idempotency-key dedup lets it through), with its correlation id, and with
    /// this failure added to its history. Who asked and why is kept in the audit trail,
    /// in the same transaction.
    pub(super) fn replay_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        caller: &Caller,
    ) -> Result<Vec<Affected>, QueueError> {
        let requested_by = caller.requested_by();
        let _guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        let now = now_ms();
        let mut affected = Vec::new();
        let mut delta = Delta::default();
        {
            let mut dead = tx.open_table(DEAD)?;
            let selected = select(&dead, filter)?.entries;
            let mut inbox = tx.open_table(INBOX)?;
            let mut meta = tx.open_table(META)?;
            for entry in selected {
                let envelope = entry.replayed(&requested_by, now);
                let seq = Self::next_seq(&mut meta)?;
                let bytes = encode(&envelope);
                delta.add(bytes.len());
                inbox.insert((entry.flow.as_str(), seq), bytes.as_slice())?;
                delta.remove(dead.remove((entry.flow.as_str(), entry.id))?.as_ref());
                affected.push(Affected { id: entry.id, flow: entry.flow, correlation_id: envelope.correlation_id });
            }
            for entry in AuditEntry::of_action(AuditAction::Replay, &affected, caller, now) {
                audit::write(&tx, &mut meta, entry)?;
            }
        }
        tx.commit()?;
        self.held.apply(delta);
        for a in &affected {
            info!(flow = %a.flow, dead_letter = a.id, correlation_id = %a.correlation_id, requested_by = %requested_by, why = %caller.why, "dead letter replayed");
        }
        Ok(affected)
    }

    /// Deletes the dead letters `filter` selects, in one transaction with their audit
    /// entries.
    pub(super) fn discard_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        caller: &Caller,
    ) -> Result<Vec<Affected>, QueueError> {
        let requested_by = caller.requested_by();
        let _guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        let mut affected = Vec::new();
        let mut delta = Delta::default();
        {
            let mut dead = tx.open_table(DEAD)?;
            for entry in select(&dead, filter)?.entries {
                delta.remove(dead.remove((entry.flow.as_str(), entry.id))?.as_ref());
                let correlation_id = entry.dead_letter.envelope.correlation_id;
                affected.push(Affected { id: entry.id, flow: entry.flow, correlation_id });
            }
            let mut meta = tx.open_table(META)?;
            for entry in AuditEntry::of_action(AuditAction::Discard, &affected, caller, now_ms()) {
                audit::write(&tx, &mut meta, entry)?;
            }
        }
        tx.commit()?;
        self.held.apply(delta);
        for a in &affected {
            info!(flow = %a.flow, dead_letter = a.id, correlation_id = %a.correlation_id, requested_by = %requested_by, why = %caller.why, "dead letter discarded");
        }
        Ok(affected)
    }

    /// Deletes the dead letters written before `cutoff_ms(flow)`; returns how many, per
    /// flow. Finds them in a read transaction so the write lock is held only to delete.
    pub(super) fn purge_dead_letters(
        &self,
        cutoff_ms: &dyn Fn(&str) -> i64,
    ) -> Result<BTreeMap<String, u64>, QueueError> {
        let mut expired = Vec::new();
        {
            let tx = self.db.begin_read()?;
            for entry in tx.open_table(DEAD)?.iter()? {
                let (k, v) = entry?;
                let (flow, id) = k.value();
                let stamp: Stamp = decode((flow, id), v.value())?;
                if stamp.dead_lettered_at_ms < cutoff_ms(flow) {
                    expired.push((flow.to_string(), id));
                }
            }
        }
        let mut purged: BTreeMap<String, u64> = BTreeMap::new();
        if expired.is_empty() {
            return Ok(purged);
        }
        let tx = self.db.begin_write()?;
        let mut delta = Delta::default();
        {
            let mut dead = tx.open_table(DEAD)?;
            for (flow, id) in &expired {
                // A replay or discard since the read may have taken it already.
                let removed = dead.remove((flow.as_str(), *id))?;
                delta.remove(removed.as_ref());
                if removed.is_some() {
                    *purged.entry(flow.clone()).or_default() += 1;
                    debug!(flow = %flow, dead_letter = id, "dead letter past retention purged");
                }
            }
        }
        tx.commit()?;
        self.held.apply(delta);
        Ok(purged)
    }
}

#[cfg(test)]
#[path = "dead_letter_tests.rs"]
mod tests;
