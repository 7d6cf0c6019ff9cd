//! The durable on-disk queue (redb): every record a source acknowledged is here until a
//! target has it or it is dead-lettered.
//!
//! Two stages, each a table keyed by flow: the inbox holds envelopes as accepted (so a
//! webhook is acknowledged after one small write); the outbox holds one delivery item per
//! target, mapped and keyed. Moving a record from one to the other, recording its
//! idempotency key, acknowledging a delivery and dead-lettering are each one
//! transaction, committed with fsync before anything is acknowledged upstream.
//!
//! Dead letters can be listed, replayed into the inbox and discarded (`dead_letter`),
//! selected by the filters of `selection`.

mod dead_letter;
mod intake;
mod record;
mod selection;

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

pub use dead_letter::{ActionReport, Affected, DeadLetterAction, DeadLetterEntry, DeadLetterPage};
pub use intake::{BatchOutcome, Intake};
pub use record::{Attempt, DeadLetter, DeadLetterReason, DeliveryItem, Envelope, PastFailure, Replay, now_ms};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
pub use selection::{DeadLetterFilter, Selection, SelectionError, parse_instant};

/// Inbox: (flow, seq) → envelope JSON.
pub(super) const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
/// Outbox: (flow, target, seq) → delivery item JSON.
pub(super) const OUTBOX: TableDefinition<(&str, u32, u64), &[u8]> = TableDefinition::new("outbox");
/// Dead letters: (flow, seq) → dead letter JSON.
pub(super) const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");
/// Idempotency keys accepted: (flow, key) → expiry (Unix ms).
const KEYS: TableDefinition<(&str, &str), i64> = TableDefinition::new("idempotency_keys");
/// Source delivery ids accepted: (flow, delivery id) → expiry (Unix ms).
pub(super) const DELIVERIES: TableDefinition<(&str, &str), i64> = TableDefinition::new("delivery_ids");
/// Last version delivered: (flow, target, ordering key) → version.
const VERSIONS: TableDefinition<(&str, u32, &str), &str> = TableDefinition::new("versions");
/// Counters: name → value.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";

/// A queue operation that failed: the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The embedded store failed (disk full, I/O error, corruption).
    #[error("queue store: {0}")]
    Store(#[from] redb::Error),
    /// Another process (a runner) has the queue file open; redb allows one at a time.
    #[error("queue file {path} is in use by another process (a runner using this data directory?)")]
    InUse {
        /// The queue file.
        path: String,
    },
    /// A stored record could not be decoded.
    #[error("queue record {key} is unreadable: {source}")]
    Decode {
        /// Which record.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
}

macro_rules! store_err {
    ($($t:ty),*) => {$(
        impl From<$t> for QueueError {
            fn from(e: $t) -> Self { Self::Store(e.into()) }
        }
    )*};
}
store_err!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// A record offered to the inbox.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    /// Its flow.
    pub flow: &'a str,
    /// The record.
    pub envelope: &'a Envelope,
    /// Until when its delivery id counts as seen.
    pub delivery_expires_ms: i64,
    /// The queue size beyond which it is refused.
    pub max_pending: u64,
}

/// What happened to a record offered to the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Durably queued under this sequence number.
    Queued(u64),
    /// The source already delivered this delivery id within the dedup window: nothing
    /// was queued, the source may be told it succeeded.
    DuplicateDelivery,
    /// The queue holds its limit of records: nothing was queued, the source must retry.
    Full,
}

/// What the prepare stage decided for an inbox record.
#[derive(Clone, Debug)]
pub enum Prepared {
    /// Deliver these items (one per target) and remember the idempotency key until
    /// `key_expires_ms`.
    Deliver {
        /// The record's idempotency key.
        idempotency_key: String,
        /// Until when the key counts as seen.
        key_expires_ms: i64,
        /// One item per target.
        items: Vec<DeliveryItem>,
    },
    /// The record cannot be mapped: dead-letter it.
    DeadLetter(DeadLetter),
}

/// What the prepare stage did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrepareOutcome {
    /// Moved to the outbox.
    Queued,
    /// The idempotency key was already accepted: dropped as a duplicate.
    Duplicate,
    /// Dead-lettered.
    DeadLettered,
}

/// Pending work of one flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Records in the inbox plus delivery items in the outbox.
    pub pending: u64,
    /// When the oldest pending record was received, in Unix milliseconds.
    pub oldest_received_ms: Option<i64>,
    /// Dead letters kept.
    pub dead_lettered: u64,
}

/// The queue. Cheap to clone; every method does blocking I/O, so async callers run it
/// on a blocking thread.
#[derive(Clone)]
pub struct Queue {
    pub(super) db: Arc<Database>,
    /// Serializes sequence allocation with the write that uses it.
    pub(super) seq: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("queue records always serialize")
}

fn decode<T: serde::de::DeserializeOwned>(key: impl std::fmt::Debug, bytes: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(bytes).map_err(|source| QueueError::Decode { key: format!("{key:?}"), source })
}

impl Queue {
    /// Runs `work` on the queue on a blocking thread: every queue call does file I/O
    /// (and a commit, an fsync), which must not stall the async workers.
    pub async fn off_thread<T: Send + 'static>(&self, work: impl FnOnce(&Queue) -> T + Send + 'static) -> T {
        let queue = self.clone();
        tokio::task::spawn_blocking(move || work(&queue)).await.expect("a queue operation panicked")
    }

    /// Opens (or creates) the queue file `path`.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => QueueError::InUse { path: path.display().to_string() },
            other => other.into(),
        })?;
        let tx = db.begin_write()?;
        {
            tx.open_table(intake::SOURCE_STATE)?;
            tx.open_table(INBOX)?;
            tx.open_table(OUTBOX)?;
            tx.open_table(DEAD)?;
            tx.open_table(KEYS)?;
            tx.open_table(DELIVERIES)?;
            tx.open_table(META)?;
            tx.open_table(VERSIONS)?;
        }
        tx.commit()?;
        Ok(Self { db: Arc::new(db), seq: Arc::new(Mutex::new(())) })
    }

    pub(super) fn next_seq(table: &mut redb::Table<&str, u64>) -> Result<u64, QueueError> {
        let seq = table.get(NEXT_SEQ)?.map_or(1, |v| v.value());
        table.insert(NEXT_SEQ, seq + 1)?;
        Ok(seq)
    }

    /// Durably queues an envelope from a source, unless its delivery id was already
    /// accepted (and has not expired).
    pub fn accept(&self, flow: &str, envelope: &Envelope, delivery_expires_ms: i64) -> Result<Accepted, QueueError> {
        self.accept_within(flow, envelope, delivery_expires_ms, u64::MAX)
    }

    /// [`Queue::accept`], unless the whole queue already holds `max_pending` records.
    pub fn accept_within(
        &self,
        flow: &str,
        envelope: &Envelope,
        delivery_expires_ms: i64,
        max_pending: u64,
    ) -> Result<Accepted, QueueError> {
        let offer = Offer { flow, envelope, delivery_expires_ms, max_pending };
        Ok(self.accept_group(std::slice::from_ref(&offer))?[0])
    }

    /// [`Queue::accept_within`] for several records (of any flows) in one transaction:
    /// one fsync acknowledges them all (group commit). Each is checked against the
    /// records before it in the group.
    pub fn accept_group(&self, offers: &[Offer<'_>]) -> Result<Vec<Accepted>, QueueError> {
        let _guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        let mut outcomes = Vec::with_capacity(offers.len());
        {
            let mut inbox = tx.open_table(INBOX)?;
            let outbox_len = tx.open_table(OUTBOX)?.len()?;
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let mut meta = tx.open_table(META)?;
            for offer in offers {
                if inbox.len()? + outbox_len >= offer.max_pending {
                    outcomes.push(Accepted::Full);
                    continue;
                }
                let (flow, envelope) = (offer.flow, offer.envelope);
                let seen = match &envelope.delivery_id {
                    Some(id) => {
                        deliveries.get((flow, id.as_str()))?.is_some_and(|exp| exp.value() > envelope.received_at_ms)
                    }
                    None => false,
                };
                if seen {
                    outcomes.push(Accepted::DuplicateDelivery);
                    continue;
                }
                if let Some(id) = &envelope.delivery_id {
                    deliveries.insert((flow, id.as_str()), offer.delivery_expires_ms)?;
                }
                let seq = Self::next_seq(&mut meta)?;
                inbox.insert((flow, seq), encode(envelope).as_slice())?;
                outcomes.push(Accepted::Queued(seq));
            }
        }
        if outcomes.iter().any(|o| matches!(o, Accepted::Queued(_))) {
            tx.commit()?;
        } else {
            tx.abort()?;
        }
        Ok(outcomes)
    }

    /// Up to `max` inbox records of a flow, oldest first.
    pub fn inbox(&self, flow: &str, max: usize) -> Result<Vec<(u64, Envelope)>, QueueError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(INBOX)?;
        let mut out = Vec::new();
        for entry in table.range((flow, 0)..=(flow, u64::MAX))?.take(max) {
            let (k, v) = entry?;
            let (_, seq) = k.value();
            out.push((seq, decode((flow, seq), v.value())?));
        }
        Ok(out)
    }

    /// Moves inbox record `seq` on: into the outbox, away as a duplicate, or to the
    /// dead letters, in one transaction. A replayed record is never a duplicate: its
    /// key was recorded when it first passed, and is recorded again.
    pub fn prepare(&self, flow: &str, seq: u64, prepared: Prepared) -> Result<PrepareOutcome, QueueError> {
        let outcomes = self.prepare_batch(flow, vec![(seq, prepared)])?;
        Ok(outcomes[0])
    }

    /// [`Queue::prepare`] for several inbox records in one transaction (one fsync), in
    /// order: a record sees the idempotency keys of the ones before it in the batch.
    pub fn prepare_batch(&self, flow: &str, batch: Vec<(u64, Prepared)>) -> Result<Vec<PrepareOutcome>, QueueError> {
        let _guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut inbox = tx.open_table(INBOX)?;
            let mut keys = tx.open_table(KEYS)?;
            let mut outbox = tx.open_table(OUTBOX)?;
            let mut dead_letters = tx.open_table(DEAD)?;
            let mut meta = tx.open_table(META)?;
            let now = now_ms();
            for (seq, prepared) in batch {
                let replayed = match inbox.remove((flow, seq))? {
                    Some(bytes) => decode::<Envelope>((flow, seq), bytes.value())?.replay.is_some(),
                    None => false,
                };
                outcomes.push(match prepared {
                    Prepared::Deliver { idempotency_key, key_expires_ms, items } => {
                        let seen = !replayed
                            && keys.get((flow, idempotency_key.as_str()))?.is_some_and(|exp| exp.value() > now);
                        if seen {
                            PrepareOutcome::Duplicate
                        } else {
                            keys.insert((flow, idempotency_key.as_str()), key_expires_ms)?;
                            for item in &items {
                                // The inbox seq keeps arrival order within each target.
                                outbox.insert((flow, item.target, seq), encode(item).as_slice())?;
                            }
                            PrepareOutcome::Queued
                        }
                    }
                    Prepared::DeadLetter(dead) => {
                        let dl_seq = Self::next_seq(&mut meta)?;
                        dead_letters.insert((flow, dl_seq), encode(&dead).as_slice())?;
                        PrepareOutcome::DeadLettered
                    }
                });
            }
        }
        tx.commit()?;
        Ok(outcomes)
    }

    /// Up to `max` delivery items of a flow's target, oldest first.
    pub fn outbox(&self, flow: &str, target: u32, max: usize) -> Result<Vec<(u64, DeliveryItem)>, QueueError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in table.range((flow, target, 0)..=(flow, target, u64::MAX))?.take(max) {
            let (k, v) = entry?;
            let (_, _, seq) = k.value();
            out.push((seq, decode((flow, target, seq), v.value())?));
        }
        Ok(out)
    }

    /// Up to `max` delivery items of a flow's target with a sequence number above `after`.
    pub fn outbox_after(
        &self,
        flow: &str,
        target: u32,
        after: u64,
        max: usize,
    ) -> Result<Vec<(u64, DeliveryItem)>, QueueError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in table.range((flow, target, after.saturating_add(1))..=(flow, target, u64::MAX))?.take(max) {
            let (k, v) = entry?;
            let (_, _, seq) = k.value();
            out.push((seq, decode((flow, target, seq), v.value())?));
        }
        Ok(out)
    }

    /// The target has the item: remove it, and remember its version for its ordering key.
    pub fn delivered(&self, flow: &str, target: u32, seq: u64) -> Result<(), QueueError> {
        self.delivered_version(flow, target, seq, None)
    }

    /// [`Queue::delivered`], also recording `(ordering key, version)` as the last
    /// version applied for that key when it is newer than the one recorded.
    pub fn delivered_version(
        &self,
        flow: &str,
        target: u32,
        seq: u64,
        version: Option<(&str, &str)>,
    ) -> Result<(), QueueError> {
        self.delivered_batch(flow, target, &[(seq, version)])
    }

    /// [`Queue::delivered_version`] for several items in one transaction (one fsync).
    pub fn delivered_batch(
        &self,
        flow: &str,
        target: u32,
        items: &[(u64, Option<(&str, &str)>)],
    ) -> Result<(), QueueError> {
        let tx = self.db.begin_write()?;
        {
            let mut outbox = tx.open_table(OUTBOX)?;
            let mut versions = tx.open_table(VERSIONS)?;
            for (seq, version) in items {
                outbox.remove((flow, target, *seq))?;
                if let Some((key, version)) = version {
                    let newer = versions
                        .get((flow, target, *key))?
                        .is_none_or(|last| compare_versions(version, last.value()) == std::cmp::Ordering::Greater);
                    if newer {
                        versions.insert((flow, target, *key), *version)?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The last version delivered to a target for an ordering key.
    pub fn last_version(&self, flow: &str, target: u32, key: &str) -> Result<Option<String>, QueueError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(VERSIONS)?.get((flow, target, key))?.map(|v| v.value().to_string()))
    }

    /// Drops an item older than what its target already has.
    pub fn drop_stale(&self, flow: &str, target: u32, seq: u64) -> Result<(), QueueError> {
        let tx = self.db.begin_write()?;
        tx.open_table(OUTBOX)?.remove((flow, target, seq))?;
        tx.commit()?;
        Ok(())
    }

    /// Records waiting in the whole queue (every flow), in constant time: what
    /// backpressure compares with the size limit.
    pub fn pending_total(&self) -> Result<u64, QueueError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(INBOX)?.len()? + tx.open_table(OUTBOX)?.len()?)
    }

    /// The target will never take the item: move it to the dead letters.
    pub fn dead_letter(&self, flow: &str, target: u32, seq: u64, dead: &DeadLetter) -> Result<u64, QueueError> {
        let _guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        let dl_seq = Self::next_seq(&mut tx.open_table(META)?)?;
        tx.open_table(OUTBOX)?.remove((flow, target, seq))?;
        tx.open_table(DEAD)?.insert((flow, dl_seq), encode(dead).as_slice())?;
        tx.commit()?;
        Ok(dl_seq)
    }

    /// A flow's dead letters with their ids, oldest first (see also
    /// [`Queue::find_dead_letters`]).
    pub fn dead_letters(&self, flow: &str) -> Result<Vec<(u64, DeadLetter)>, QueueError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(DEAD)?;
        let mut out = Vec::new();
        for entry in table.range((flow, 0)..=(flow, u64::MAX))? {
            let (k, v) = entry?;
            let (_, seq) = k.value();
            out.push((seq, decode((flow, seq), v.value())?));
        }
        Ok(out)
    }

    /// Pending work and dead letters of every flow that has any. Counts keys and decodes
    /// only the first record of each inbox and outbox range (the oldest: sequence numbers
    /// grow with arrival).
    pub fn backlogs(&self) -> Result<HashMap<String, Backlog>, QueueError> {
        let tx = self.db.begin_read()?;
        let mut out: HashMap<String, Backlog> = HashMap::new();
        let mut last_group: Option<(String, u32)> = None;
        for entry in tx.open_table(INBOX)?.iter()? {
            let (k, v) = entry?;
            let (flow, seq) = k.value();
            let backlog = out.entry(flow.to_string()).or_default();
            backlog.pending += 1;
            if last_group.as_ref().is_none_or(|(f, _)| f != flow) {
                let envelope: Envelope = decode((flow, seq), v.value())?;
                note_oldest(backlog, envelope.received_at_ms);
                last_group = Some((flow.to_string(), 0));
            }
        }
        last_group = None;
        for entry in tx.open_table(OUTBOX)?.iter()? {
            let (k, v) = entry?;
            let (flow, target, seq) = k.value();
            let backlog = out.entry(flow.to_string()).or_default();
            backlog.pending += 1;
            if last_group.as_ref().is_none_or(|(f, t)| f != flow || *t != target) {
                let item: DeliveryItem = decode((flow, target, seq), v.value())?;
                note_oldest(backlog, item.envelope.received_at_ms);
                last_group = Some((flow.to_string(), target));
            }
        }
        for entry in tx.open_table(DEAD)?.iter()? {
            let (k, _) = entry?;
            out.entry(k.value().0.to_string()).or_default().dead_lettered += 1;
        }
        Ok(out)
    }

    /// Forgets idempotency keys and delivery ids whose window has passed; returns how many.
    pub fn purge_expired(&self, now_ms: i64) -> Result<u64, QueueError> {
        let tx = self.db.begin_write()?;
        let before = tx.open_table(KEYS)?.len()? + tx.open_table(DELIVERIES)?.len()?;
        tx.open_table(KEYS)?.retain(|_, exp| exp > now_ms)?;
        tx.open_table(DELIVERIES)?.retain(|_, exp| exp > now_ms)?;
        let after = tx.open_table(KEYS)?.len()? + tx.open_table(DELIVERIES)?.len()?;
        tx.commit()?;
        Ok(before - after)
    }
}

/// Orders two source versions: RFC 3339 timestamps as instants, numbers as numbers,
/// anything else as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        return x.cmp(&y);
    }
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x.total_cmp(&y);
    }
    a.cmp(b)
}

fn note_oldest(backlog: &mut Backlog, received_ms: i64) {
    backlog.oldest_received_ms = Some(backlog.oldest_received_ms.map_or(received_ms, |o| o.min(received_ms)));
}

#[cfg(test)]
mod tests;
