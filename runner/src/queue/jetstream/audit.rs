//! The audit trail in each flow's audit stream (`Layout::audit_stream`), whose
//! sequence numbers are the entries' ids and whose `max_age` is the flow's dead-letter
//! retention. There is no transaction across streams: an entry is published right after
//! the action it records, and an action whose entry cannot be published answers an
//! error (the records did move: the error says so).

use async_nats::jetstream::Context;
use bytes::Bytes;

use super::{
    JetStreamQueue,
    client::{self, decode, encode, failed},
    place::{FlowStore, claimant, inbox_partition},
};
use entrepot_api::jetstream::kv_key;

use crate::queue::{AuditEntry, AuditFilter, BatchOutcome, Intake, QueueError};

/// Publishes `entry` to its flow's audit stream.
pub(super) async fn publish(js: &Context, flow: &FlowStore, entry: &AuditEntry) -> Result<(), QueueError> {
    let id = format!("audit.{}", uuid::Uuid::now_v7());
    match client::publish(js, flow.layout.audit_subject(), &id, encode(entry)).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(failed("record the audit entry", format!("{} is full", flow.layout.audit_stream()))),
        Err(e) => Err(failed(
            "record the audit entry",
            format!(
                "{} of {} (the {} itself was done): {e}; is the stream {} there (the operator creates it)?",
                entry.count,
                entry.flow,
                entry.action.as_str(),
                flow.layout.audit_stream()
            ),
        )),
    }
}

impl JetStreamQueue {
    /// A source's batch (`audit` `None`), or records injected from outside it with their
    /// audit entry, published after them.
    pub(super) fn accept_audited(
        &self,
        flow: &str,
        items: &[Intake],
        state: &[(&str, &[u8])],
        mut audit: Option<AuditEntry>,
    ) -> Result<BatchOutcome, QueueError> {
        let store = self.flow(flow)?;
        let js = self.nats.js.clone();
        let items = items.to_vec();
        let state: Vec<(String, Bytes)> =
            state.iter().map(|(k, v)| (format!("src.{}", kv_key(k)), Bytes::copy_from_slice(v))).collect();
        self.nats.wait(async move {
            let mut outcome = BatchOutcome::default();
            for item in items {
                match item {
                    Intake::Record(envelope) => {
                        let id = claimant(&envelope).to_string();
                        let subject = store.layout.inbox_subject(inbox_partition(&store, &envelope, None));
                        match client::publish(&js, subject, &id, encode(&envelope)).await? {
                            None => return Err(failed("queue a record", "the flow's stream is full")),
                            Some((_, true)) => outcome.duplicates += 1,
                            Some((_, false)) => {
                                outcome.queued += 1;
                                if let Some(audit) = &mut audit {
                                    audit.add(None, Some(&envelope.correlation_id));
                                }
                            }
                        }
                    }
                    Intake::DeadLetter(dead) => {
                        let id = format!("{}.dead", claimant(&dead.envelope));
                        if client::publish(&js, store.layout.dead_subject(), &id, encode(&dead)).await?.is_none() {
                            return Err(failed("dead-letter a record", "the dead-letter stream is full"));
                        }
                        outcome.dead_lettered += 1;
                    }
                }
            }
            // After the records: a crash in between reads them again, and their ids
            // (or idempotency keys) drop the repeats.
            for (key, value) in state {
                store.state.put(&key, value).await.map_err(|e| failed("record a source's progress", e))?;
            }
            if let Some(mut audit) = audit {
                audit.duplicates = outcome.duplicates;
                publish(&js, &store, &audit).await?;
            }
            Ok(outcome)
        })
    }

    /// The audit entries `filter` selects, oldest first.
    pub(super) fn audit_trail(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, QueueError> {
        let (flows, js, filter) = (self.flows.clone(), self.nats.js.clone(), filter.clone());
        self.nats.wait(async move {
            let mut all = Vec::new();
            for (name, flow) in flows.iter() {
                if filter.flow.as_ref().is_some_and(|f| f != name) {
                    continue;
                }
                let stream = flow.layout.audit_stream();
                let read =
                    client::read(&js, &stream, vec![flow.layout.audit_subject()], 1, usize::MAX, usize::MAX).await?;
                for stored in &read {
                    let mut entry: AuditEntry = decode(stored)?;
                    entry.id = stored.seq;
                    all.push(entry);
                }
            }
            Ok(filter.select(all))
        })
    }
}
