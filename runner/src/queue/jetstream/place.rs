//! Where a record goes: its partition, who claims its idempotency key, and its placing
//! past the inbox (delivery items, or a dead letter), each publish with a message id
//! derived from where it came from, so a repeat after a crash stores nothing twice.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use bytes::Bytes;
use entrepot_api::jetstream::{Layout, partition};

use super::{client, keys::claim, lease::Ownership};
use crate::queue::{Envelope, PrepareOutcome, Prepared, QueueError};

/// One flow's streams, buckets and share of the work.
pub(super) struct FlowStore {
    pub(super) layout: Layout,
    pub(super) partitions: u16,
    pub(super) work: String,
    pub(super) dead: String,
    pub(super) keys: async_nats::jetstream::kv::Store,
    pub(super) versions: async_nats::jetstream::kv::Store,
    pub(super) state: async_nats::jetstream::kv::Store,
    pub(super) ownership: Ownership,
    /// The partition of each delivery item handed out and not yet settled.
    pub(super) loaned: Mutex<HashMap<u64, u16>>,
    /// The work stream's messages and bytes, and when they were read.
    pub(super) size: Mutex<Option<(Instant, u64, u64)>>,
}

/// How long intake's backpressure reuses the work stream's size: not a round trip per
/// webhook, and the stream's own byte limit refuses the rest.
const SIZE_FRESH: Duration = Duration::from_millis(250);

impl FlowStore {
    /// The work stream's messages and bytes, read at most every [`SIZE_FRESH`].
    pub(super) async fn size(&self, js: &async_nats::jetstream::Context) -> Result<(u64, u64), QueueError> {
        let cached = *self.size.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, messages, bytes)) = cached.filter(|(at, ..)| at.elapsed() < SIZE_FRESH) {
            return Ok((messages, bytes));
        }
        let (messages, bytes, _) = client::state(js, &self.work).await?;
        *self.size.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), messages, bytes));
        Ok((messages, bytes))
    }
}

/// Places one record: claims its idempotency key, then publishes its delivery items
/// (or dead letter) with message ids derived from `origin`. `Duplicate` when another
/// record holds the key. Returns the outcome and the first item's sequence number.
pub(super) async fn place(
    js: &async_nats::jetstream::Context,
    flow: &FlowStore,
    origin: &str,
    claimant: &str,
    replay: bool,
    prepared: &Prepared,
) -> Result<Option<(PrepareOutcome, u64)>, QueueError> {
    match prepared {
        Prepared::DeadLetter(dead) => {
            let body = Bytes::from(serde_json::to_vec(dead).expect("a dead letter is JSON"));
            let Some((seq, _)) =
                client::publish(js, flow.layout.dead_subject(), &format!("{origin}.dead"), body).await?
            else {
                return Ok(None);
            };
            Ok(Some((PrepareOutcome::DeadLettered, seq)))
        }
        Prepared::Deliver { idempotency_key, items, .. } => {
            if !claim(&flow.keys, idempotency_key, claimant, replay).await? {
                return Ok(Some((PrepareOutcome::Duplicate, 0)));
            }
            let mut first = 0;
            for item in items {
                let key = item.ordering_key.as_deref().unwrap_or(&item.idempotency_key);
                let subject = flow.layout.outbox_subject(&item.target, partition(key, flow.partitions));
                let body = Bytes::from(serde_json::to_vec(item).expect("an item is JSON"));
                let Some((seq, _)) = client::publish(js, subject, &format!("{origin}.{}", item.target), body).await?
                else {
                    return Ok(None);
                };
                if first == 0 {
                    first = seq;
                }
            }
            Ok(Some((PrepareOutcome::Queued, first)))
        }
    }
}

/// The partition a record's delivery items go to: its ordering key's (else its
/// idempotency key's, as [`place`] does); a dead letter's does not matter.
pub(super) fn partition_of(flow: &FlowStore, prepared: &Prepared) -> u16 {
    match prepared {
        Prepared::Deliver { items, idempotency_key, .. } => {
            let key = items.iter().find_map(|i| i.ordering_key.as_deref()).unwrap_or(idempotency_key);
            partition(key, flow.partitions)
        }
        Prepared::DeadLetter(_) => 0,
    }
}

/// Who a record is, for its idempotency key's claim: its delivery id (a repeat of the
/// delivery is the same record), else its own id.
pub(super) fn claimant(envelope: &Envelope) -> &str {
    envelope.delivery_id.as_deref().unwrap_or(&envelope.id)
}

/// The partition of a record entering the inbox: its ordering key's when it was mapped at
/// intake, else its id's.
pub(super) fn inbox_partition(flow: &FlowStore, envelope: &Envelope, prepared: Option<&Prepared>) -> u16 {
    let key = match prepared {
        Some(Prepared::Deliver { items, .. }) => items.iter().find_map(|i| i.ordering_key.as_deref()),
        _ => None,
    };
    partition(key.unwrap_or(claimant(envelope)), flow.partitions)
}
