//! Batch intake in redb: a source's records, dead letters and progress (cursor,
//! watermark, files done) in one transaction, so after a crash a source resumes exactly
//! where its last commit left it.

use redb::{ReadableTable, TableDefinition};

use super::{DEAD, DELIVERIES, INBOX, META, OUTBOX, RedbQueue, encode, held::Delta};
use crate::queue::{AuditEntry, BatchOutcome, Intake, QueueError};

/// Source progress: (flow, key) → opaque bytes (a cursor, a watermark, a file's name).
pub(super) const SOURCE_STATE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("source_state");

impl RedbQueue {
    /// Durably takes a batch from a source and records its progress: `state` pairs of
    /// (key, value) are written in the same transaction as the records, and so is
    /// `audit` (records injected from outside the source), completed with what was queued.
    pub(super) fn accept_batch(
        &self,
        flow: &str,
        items: &[Intake],
        delivery_expires_ms: i64,
        state: &[(&str, &[u8])],
        mut audit: Option<AuditEntry>,
    ) -> Result<BatchOutcome, QueueError> {
        let _guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        let mut outcome = BatchOutcome::default();
        let mut delta = Delta::default();
        {
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let mut inbox = tx.open_table(INBOX)?;
            let mut dead = tx.open_table(DEAD)?;
            let mut meta = tx.open_table(META)?;
            for item in items {
                match item {
                    Intake::Record(envelope) => {
                        if let Some(id) = &envelope.delivery_id {
                            let seen = deliveries
                                .get((flow, id.as_str()))?
                                .is_some_and(|exp| exp.value() > envelope.received_at_ms);
                            if seen {
                                outcome.duplicates += 1;
                                continue;
                            }
                            deliveries.insert((flow, id.as_str()), delivery_expires_ms)?;
                        }
                        let seq = Self::next_seq(&mut meta)?;
                        let bytes = encode(envelope);
                        delta.add(bytes.len());
                        inbox.insert((flow, seq), bytes.as_slice())?;
                        outcome.queued += 1;
                        if let Some(audit) = &mut audit {
                            audit.add(None, Some(&envelope.correlation_id));
                        }
                    }
                    Intake::DeadLetter(letter) => {
                        let seq = Self::next_seq(&mut meta)?;
                        let bytes = encode(letter);
                        delta.add(bytes.len());
                        dead.insert((flow, seq), bytes.as_slice())?;
                        outcome.dead_lettered += 1;
                    }
                }
            }
            let mut table = tx.open_table(SOURCE_STATE)?;
            for (key, value) in state {
                table.insert((flow, *key), *value)?;
            }
            if let Some(mut audit) = audit {
                audit.duplicates = outcome.duplicates;
                super::audit::write(&tx, &mut meta, audit)?;
            }
        }
        tx.commit()?;
        self.held.apply(delta);
        Ok(outcome)
    }

    /// How many records (inbox) and delivery items (outbox) of `flow` are waiting: what
    /// a source compares with its backlog limit before reading more.
    pub(super) fn pending(&self, flow: &str) -> Result<u64, QueueError> {
        let tx = self.db.begin_read()?;
        let inbox = tx.open_table(INBOX)?.range((flow, 0)..=(flow, u64::MAX))?.count();
        let outbox = tx
            .open_table(OUTBOX)?
            .range((flow, "", 0)..)?
            .take_while(|e| e.as_ref().is_ok_and(|(k, _)| k.value().0 == flow))
            .count();
        Ok((inbox + outbox) as u64)
    }

    /// A source's progress under `key`, as last committed by [`RedbQueue::accept_batch`].
    pub(super) fn source_state(&self, flow: &str, key: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SOURCE_STATE)?;
        Ok(table.get((flow, key))?.map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use crate::queue::{BatchOutcome, DeadLetter, DeadLetterReason, Envelope, Intake, RedbQueue, now_ms};

    fn envelope(id: &str) -> Envelope {
        Envelope {
            id: id.into(),
            delivery_id: Some(format!("row-{id}")),
            source_delivery_id: None,
            event_id: None,
            topic: None,
            correlation_id: id.into(),
            trace_parent: None,
            received_at_ms: now_ms(),
            payload: b"{}".to_vec(),
            replay: None,
        }
    }

    #[test]
    fn a_batch_and_its_progress_commit_together_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        {
            let q = RedbQueue::open(&path).unwrap();
            assert_eq!(q.source_state("f", "cursor").unwrap(), None);
            let bad = DeadLetter {
                envelope: envelope("bad"),
                target: None,
                reason: DeadLetterReason::Mapping,
                message: "line 3: 2 fields, the header has 3".into(),
                status: None,
                response_body: None,
                attempts: Vec::new(),
                dead_lettered_at_ms: now_ms(),
            };
            let items = [Intake::Record(envelope("a")), Intake::DeadLetter(bad), Intake::Record(envelope("b"))];
            let outcome = q.accept_batch("f", &items, now_ms() + 60_000, &[("cursor", b"page-2")]).unwrap();
            assert_eq!(outcome, BatchOutcome { queued: 2, duplicates: 0, dead_lettered: 1 });
            // The same rows again (a source that re-read them) are duplicates.
            let again = q.accept_batch("f", &[Intake::Record(envelope("a"))], now_ms() + 60_000, &[]).unwrap();
            assert_eq!(again.duplicates, 1);
        }
        let q = RedbQueue::open(&path).unwrap();
        assert_eq!(q.source_state("f", "cursor").unwrap().as_deref(), Some(&b"page-2"[..]));
        assert_eq!(q.inbox("f", 10).unwrap().len(), 2);
        assert_eq!(q.dead_letters("f").unwrap().len(), 1);
        assert_eq!((q.pending("f").unwrap(), q.pending("other").unwrap()), (2, 0));
    }
}
