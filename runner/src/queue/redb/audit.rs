//! The audit trail in redb: (flow, seq) → entry JSON, numbered from the queue's one
//! counter, written in the transaction of the action it records and purged with the
//! flow's dead letters.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use tracing::debug;

use super::{RedbQueue, decode, encode};
use crate::queue::{AuditEntry, AuditFilter, QueueError};

/// Audit entries: (flow, seq) → entry JSON.
pub(super) const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");

/// Writes `entry` under the next sequence number, in `tx`.
pub(super) fn write(
    tx: &WriteTransaction,
    meta: &mut redb::Table<&str, u64>,
    mut entry: AuditEntry,
) -> Result<u64, QueueError> {
    let seq = RedbQueue::next_seq(meta)?;
    entry.id = seq;
    tx.open_table(AUDIT)?.insert((entry.flow.as_str(), seq), encode(&entry).as_slice())?;
    Ok(seq)
}

impl RedbQueue {
    /// The audit entries `filter` selects, oldest first.
    pub(super) fn audit_trail(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, QueueError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(AUDIT)?;
        let range = match &filter.flow {
            Some(flow) => table.range((flow.as_str(), 0)..=(flow.as_str(), u64::MAX))?,
            None => table.iter()?,
        };
        let mut all = Vec::new();
        for entry in range {
            let (k, v) = entry?;
            all.push(decode::<AuditEntry>(k.value(), v.value())?);
        }
        Ok(filter.select(all))
    }

    /// Deletes the audit entries written before `cutoff_ms(flow)`.
    pub(super) fn purge_audit(&self, cutoff_ms: &dyn Fn(&str) -> i64) -> Result<u64, QueueError> {
        let mut expired = Vec::new();
        {
            let tx = self.db.begin_read()?;
            for entry in tx.open_table(AUDIT)?.iter()? {
                let (k, v) = entry?;
                let (flow, id) = k.value();
                let audit: AuditEntry = decode((flow, id), v.value())?;
                if audit.at_ms < cutoff_ms(flow) {
                    expired.push((flow.to_string(), id));
                }
            }
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(AUDIT)?;
            for (flow, id) in &expired {
                table.remove((flow.as_str(), *id))?;
                debug!(flow = %flow, audit = id, "audit entry past retention purged");
            }
        }
        tx.commit()?;
        Ok(expired.len() as u64)
    }
}
