//! Dead letters in their own stream: the stream's sequence numbers are their ids.
//! Listing reads the whole stream (dead letters are few, and expire with the flow's
//! retention); a replay publishes the record back to its flow's inbox with a message id
//! made from the dead letter's, then deletes the dead letter, so a replay repeated after
//! a crash queues it once. Each replay or discard is then recorded in the audit stream.

use tracing::info;

use super::{
    JetStreamQueue, audit,
    client::{self, decode, encode, failed},
    place::inbox_partition,
};
use crate::queue::{
    Affected, AuditAction, AuditEntry, Caller, DeadLetter, DeadLetterEntry, DeadLetterFilter, DeadLetterPage,
    QueueError, now_ms,
};

impl JetStreamQueue {
    pub(super) fn find(&self, filter: &DeadLetterFilter) -> Result<DeadLetterPage, QueueError> {
        let (flows, js, filter) = (self.flows.clone(), self.nats.js.clone(), filter.clone());
        self.nats.wait(async move {
            let mut matched = Vec::new();
            for (name, flow) in flows.iter() {
                if filter.flow.as_ref().is_some_and(|f| f != name) {
                    continue;
                }
                let read =
                    client::read(&js, &flow.dead, vec![flow.layout.dead_subject()], 1, usize::MAX, usize::MAX).await?;
                for stored in &read {
                    if !filter.ids.is_empty() && !filter.ids.contains(&stored.seq) {
                        continue;
                    }
                    let letter: DeadLetter = decode(stored)?;
                    if filter.matches(name, stored.seq, &letter) {
                        let target_connector = letter
                            .target
                            .as_deref()
                            .and_then(|t| filter.connector(name, t))
                            .map(|(_, c)| c.to_string());
                        matched.push(DeadLetterEntry {
                            id: stored.seq,
                            flow: name.clone(),
                            target_connector,
                            dead_letter: letter,
                        });
                    }
                }
            }
            Ok(DeadLetterPage::of(matched, &filter))
        })
    }

    pub(super) fn replay(&self, filter: &DeadLetterFilter, caller: &Caller) -> Result<Vec<Affected>, QueueError> {
        let selected = self.find(&DeadLetterFilter { limit: None, after: None, ..filter.clone() })?;
        let requested_by = caller.requested_by();
        let (flows, js, by, who) = (self.flows.clone(), self.nats.js.clone(), requested_by.clone(), caller.clone());
        let affected = self.nats.wait(async move {
            let now = now_ms();
            let mut affected = Vec::new();
            for entry in selected.entries {
                let flow = &flows[&entry.flow];
                let envelope = entry.replayed(&by, now);
                let subject = flow.layout.inbox_subject(inbox_partition(flow, &envelope, None));
                let id = format!("replay{}", entry.id);
                if client::publish(&js, subject, &id, encode(&envelope)).await?.is_none() {
                    return Err(failed("replay a dead letter", "the flow's stream is full"));
                }
                client::delete(&js, &flow.dead, &[entry.id]).await?;
                affected.push(Affected { id: entry.id, flow: entry.flow, correlation_id: envelope.correlation_id });
            }
            for entry in AuditEntry::of_action(AuditAction::Replay, &affected, &who, now) {
                audit::publish(&js, &flows[&entry.flow], &entry).await?;
            }
            Ok(affected)
        })?;
        for a in &affected {
            info!(flow = %a.flow, dead_letter = a.id, correlation_id = %a.correlation_id, requested_by = %requested_by, why = %caller.why, "dead letter replayed");
        }
        Ok(affected)
    }

    pub(super) fn discard(&self, filter: &DeadLetterFilter, caller: &Caller) -> Result<Vec<Affected>, QueueError> {
        let selected = self.find(&DeadLetterFilter { limit: None, after: None, ..filter.clone() })?;
        let requested_by = caller.requested_by();
        let (flows, js, by) = (self.flows.clone(), self.nats.js.clone(), caller.clone());
        let affected = self.nats.wait(async move {
            let mut affected = Vec::new();
            for entry in selected.entries {
                client::delete(&js, &flows[&entry.flow].dead, &[entry.id]).await?;
                let correlation_id = entry.dead_letter.envelope.correlation_id;
                affected.push(Affected { id: entry.id, flow: entry.flow, correlation_id });
            }
            for entry in AuditEntry::of_action(AuditAction::Discard, &affected, &by, now_ms()) {
                audit::publish(&js, &flows[&entry.flow], &entry).await?;
            }
            Ok(affected)
        })?;
        for a in &affected {
            info!(flow = %a.flow, dead_letter = a.id, correlation_id = %a.correlation_id, requested_by = %requested_by, why = %caller.why, "dead letter discarded");
        }
        Ok(affected)
    }
}
