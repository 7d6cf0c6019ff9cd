//! The queue in one embedded redb file: one table per stage, keyed by flow, each change
//! one transaction committed with fsync.

mod audit;
mod dead_letter;
mod held;
mod intake;
mod migrate;
mod store;
mod versions;

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{Arc, Mutex},
};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{
    Accepted, Affected, AuditEntry, AuditFilter, Backlog, BatchOutcome, Caller, DeadLetter, DeadLetterFilter,
    DeadLetterPage, DeliveryItem, Envelope, Intake, Offer, PrepareOutcome, Prepared, Queue, QueueBackend, QueueError,
    Take, TargetNames, now_ms,
};
use versions::{VERSION_STAMPS, VERSIONS};

/// Inbox: (flow, seq) → envelope JSON.
pub(super) const INBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
/// Outbox: (flow, target name, seq) → delivery item JSON. (Format 1's `outbox` was keyed
/// by the target's index: see `migrate`.)
pub(super) const OUTBOX: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("target_outbox");
/// Dead letters: (flow, seq) → dead letter JSON.
pub(super) const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");
/// Idempotency keys accepted: (flow, key) → expiry (Unix ms).
const KEYS: TableDefinition<(&str, &str), i64> = TableDefinition::new("idempotency_keys");
/// Source delivery ids accepted: (flow, delivery id) → expiry (Unix ms).
pub(super) const DELIVERIES: TableDefinition<(&str, &str), i64> = TableDefinition::new("delivery_ids");
/// Counters: name → value.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";
/// redb's page cache. Its default (1 GiB) let a backlog of a few thousand 4 KB records
/// grow the runner past 200 MiB; the working set (the outbox's head, the dedup tables'
/// recent keys) fits in far less, and the OS page cache holds the rest of the file.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

macro_rules! store_err {
    ($($t:ty),*) => {$(
        impl From<$t> for QueueError {
            fn from(e: $t) -> Self { Self::Store(Box::new(redb::Error::from(e))) }
        }
    )*};
}
store_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The queue in a redb file. Opened through [`RedbQueue::open`], used as a [`Queue`].
pub struct RedbQueue {
    db: store::Store,
    /// Bytes held (inbox, outbox, dead letters): what the byte budget is compared with.
    held: held::Held,
    /// Serializes sequence allocation with the write that uses it.
    pub(super) seq: Arc<Mutex<()>>,
}

impl std::fmt::Debug for RedbQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbQueue").finish_non_exhaustive()
    }
}

/// Opens (or creates) the database at `path` and brings it to the current format.
fn open_database(path: &Path, targets: &TargetNames) -> Result<Database, QueueError> {
    let db = Database::builder().set_cache_size(CACHE_BYTES).create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => QueueError::InUse { path: path_text(path) },
        other => other.into(),
    })?;
    let tx = db.begin_write()?;
    migrate::to_current(&tx, targets).map_err(|e| match e {
        QueueError::Format { message, .. } => QueueError::Format { path: path_text(path), message },
        other => other,
    })?;
    {
        tx.open_table(intake::SOURCE_STATE)?;
        tx.open_table(INBOX)?;
        tx.open_table(OUTBOX)?;
        tx.open_table(DEAD)?;
        tx.open_table(audit::AUDIT)?;
        tx.open_table(KEYS)?;
        tx.open_table(DELIVERIES)?;
        tx.open_table(META)?;
        tx.open_table(VERSIONS)?;
        tx.open_table(VERSION_STAMPS)?;
    }
    tx.commit()?;
    Ok(db)
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("queue records always serialize")
}

fn decode<T: serde::de::DeserializeOwned>(key: impl std::fmt::Debug, bytes: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(bytes).map_err(|source| QueueError::Decode { key: format!("{key:?}"), source })
}

impl RedbQueue {
    /// Opens (or creates) the queue file `path`. A queue written by an earlier version
    /// (format 1) is refused unless it holds nothing that names a target: see
    /// [`RedbQueue::open_migrating`].
    pub fn open(path: &Path) -> Result<Queue, QueueError> {
        Self::open_migrating(path, &TargetNames::new())
    }

    /// Opens (or creates) the queue file `path`; a queue written by an earlier version,
    /// which named targets by position, is migrated with `targets` (each flow's target
    /// names in `spec.targets` order), or refused, unchanged, when it names a target
    /// `targets` lacks.
    pub fn open_migrating(path: &Path, targets: &TargetNames) -> Result<Queue, QueueError> {
        let db = open_database(path, targets)?;
        let text = path_text(path);
        let (path, targets) = (path.to_path_buf(), targets.clone());
        let reopen = Box::new(move || open_database(&path, &targets));
        let held = held::Held::count(&redb::ReadableDatabase::begin_read(&db)?)?;
        let store = store::Store::new(text, db, reopen);
        Ok(Queue::new(Self { db: store, held, seq: Arc::new(Mutex::new(())) }))
    }

    pub(super) fn next_seq(table: &mut redb::Table<&str, u64>) -> Result<u64, QueueError> {
        let seq = table.get(NEXT_SEQ)?.map_or(1, |v| v.value());
        table.insert(NEXT_SEQ, seq + 1)?;
        Ok(seq)
    }
}

impl QueueBackend for RedbQueue {
    fn check(&self) -> Result<(), QueueError> {
        self.db.check()
    }

    fn latched(&self) -> Option<String> {
        self.db.latch_reason()
    }

    fn held_bytes(&self) -> u64 {
        self.held.get()
    }

    fn accept_batch(
        &self,
        flow: &str,
        items: &[Intake],
        delivery_expires_ms: i64,
        state: &[(&str, &[u8])],
    ) -> Result<BatchOutcome, QueueError> {
        RedbQueue::accept_batch(self, flow, items, delivery_expires_ms, state, None)
    }

    fn inject(
        &self,
        flow: &str,
        items: &[Intake],
        delivery_expires_ms: i64,
        audit: AuditEntry,
    ) -> Result<BatchOutcome, QueueError> {
        RedbQueue::accept_batch(self, flow, items, delivery_expires_ms, &[], Some(audit))
    }

    fn audit_trail(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, QueueError> {
        RedbQueue::audit_trail(self, filter)
    }

    fn purge_audit(&self, cutoff_ms: &dyn Fn(&str) -> i64) -> Result<u64, QueueError> {
        RedbQueue::purge_audit(self, cutoff_ms)
    }

    fn source_state(&self, flow: &str, key: &str) -> Result<Option<Vec<u8>>, QueueError> {
        RedbQueue::source_state(self, flow, key)
    }

    fn pending(&self, flow: &str) -> Result<u64, QueueError> {
        RedbQueue::pending(self, flow)
    }

    fn find_dead_letters(&self, filter: &DeadLetterFilter) -> Result<DeadLetterPage, QueueError> {
        RedbQueue::find_dead_letters(self, filter)
    }

    fn replay_dead_letters(&self, filter: &DeadLetterFilter, caller: &Caller) -> Result<Vec<Affected>, QueueError> {
        RedbQueue::replay_dead_letters(self, filter, caller)
    }

    fn discard_dead_letters(&self, filter: &DeadLetterFilter, caller: &Caller) -> Result<Vec<Affected>, QueueError> {
        RedbQueue::discard_dead_letters(self, filter, caller)
    }

    fn purge_dead_letters(&self, cutoff_ms: &dyn Fn(&str) -> i64) -> Result<BTreeMap<String, u64>, QueueError> {
        RedbQueue::purge_dead_letters(self, cutoff_ms)
    }

    /// [`QueueBackend::accept_within`] for several records (of any flows) in one transaction:
    /// one fsync acknowledges them all (group commit). Each is checked against the
    /// records before it in the group.
    fn accept_group(&self, offers: &[Offer<'_>]) -> Result<Vec<Accepted>, QueueError> {
        let _guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        let mut outcomes = Vec::with_capacity(offers.len());
        let mut delta = held::Delta::default();
        {
            let mut inbox = tx.open_table(INBOX)?;
            let mut outbox_len = tx.open_table(OUTBOX)?.len()?;
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let mut stages = Stages::open(&tx)?;
            let now = now_ms();
            for offer in offers {
                let held = self.held.get() as i64 + delta.net() + stages.delta.net();
                let over_bytes = held.max(0) as u64 + offer.envelope.payload.len() as u64 > offer.max_bytes;
                if over_bytes || inbox.len()? + outbox_len >= offer.max_pending {
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
                let seq = RedbQueue::next_seq(&mut stages.meta)?;
                // Straight to the outbox only behind nothing: a record still in the inbox
                // has a lower seq, and the delivery worker reads the outbox in seq order.
                let inbox_empty = inbox.range((flow, 0)..=(flow, u64::MAX))?.next().is_none();
                match offer.prepared {
                    Some(prepared) if inbox_empty => {
                        let outcome = stages.place(flow, seq, prepared, false, now)?;
                        if let (PrepareOutcome::Queued, Prepared::Deliver { items, .. }) = (outcome, prepared) {
                            outbox_len += items.len() as u64;
                        }
                        outcomes.push(Accepted::Prepared { seq, outcome });
                    }
                    _ => {
                        let bytes = encode(envelope);
                        delta.add(bytes.len());
                        inbox.insert((flow, seq), bytes.as_slice())?;
                        outcomes.push(Accepted::Queued(seq));
                    }
                }
            }
            delta.merge(stages.delta);
        }
        if outcomes.iter().any(|o| matches!(o, Accepted::Queued(_) | Accepted::Prepared { .. })) {
            tx.commit()?;
            self.held.apply(delta);
        } else {
            tx.abort()?;
        }
        Ok(outcomes)
    }

    /// Up to `max` inbox records of a flow, oldest first.
    fn inbox(&self, flow: &str, max: usize) -> Result<Vec<(u64, Envelope)>, QueueError> {
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

    /// [`QueueBackend::prepare`] for several inbox records in one transaction (one fsync), in
    /// order: a record sees the idempotency keys of the ones before it in the batch.
    fn prepare_batch(&self, flow: &str, batch: Vec<(u64, Prepared)>) -> Result<Vec<PrepareOutcome>, QueueError> {
        let _guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut delta = held::Delta::default();
        {
            let mut inbox = tx.open_table(INBOX)?;
            let mut stages = Stages::open(&tx)?;
            let now = now_ms();
            for (seq, prepared) in batch {
                let removed = inbox.remove((flow, seq))?;
                delta.remove(removed.as_ref());
                // A delivery item carries the record's envelope: no need to decode the
                // 4 KB inbox copy to learn whether it is a replay.
                let replayed = match (&prepared, removed) {
                    (Prepared::Deliver { items, .. }, _) if !items.is_empty() => items[0].envelope.replay.is_some(),
                    (_, Some(bytes)) => decode::<Envelope>((flow, seq), bytes.value())?.replay.is_some(),
                    (_, None) => false,
                };
                outcomes.push(stages.place(flow, seq, &prepared, replayed, now)?);
            }
            delta.merge(stages.delta);
        }
        tx.commit()?;
        self.held.apply(delta);
        Ok(outcomes)
    }

    /// Up to `max` delivery items of a flow's target with a sequence number above `after`.
    fn outbox_after(
        &self,
        flow: &str,
        target: &str,
        after: u64,
        take: Take,
    ) -> Result<Vec<(u64, DeliveryItem)>, QueueError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for entry in table.range((flow, target, after.saturating_add(1))..=(flow, target, u64::MAX))?.take(take.items) {
            let (k, v) = entry?;
            let (_, _, seq) = k.value();
            let item: DeliveryItem = decode((flow, target, seq), v.value())?;
            bytes += item.size();
            out.push((seq, item));
            if bytes >= take.bytes {
                break;
            }
        }
        Ok(out)
    }

    /// [`QueueBackend::delivered_version`] for several items in one transaction (one fsync).
    fn delivered_batch(
        &self,
        flow: &str,
        target: &str,
        items: &[(u64, Option<(&str, &str)>)],
    ) -> Result<(), QueueError> {
        let tx = self.db.begin_write()?;
        let now = now_ms();
        let mut delta = held::Delta::default();
        {
            let mut outbox = tx.open_table(OUTBOX)?;
            for (seq, _) in items {
                delta.remove(outbox.remove((flow, target, *seq))?.as_ref());
            }
        }
        for (key, version) in items.iter().filter_map(|(_, v)| *v) {
            versions::record(&tx, (flow, target), key, version, now)?;
        }
        tx.commit()?;
        self.held.apply(delta);
        Ok(())
    }

    /// The last version delivered to a target for an ordering key.
    fn last_version(&self, flow: &str, target: &str, key: &str) -> Result<Option<String>, QueueError> {
        RedbQueue::last_version(self, flow, target, key)
    }

    fn purge_versions(&self, cutoff_ms: &dyn Fn(&str) -> i64, now_ms: i64) -> Result<u64, QueueError> {
        RedbQueue::purge_versions(self, cutoff_ms, now_ms)
    }

    /// Drops an item older than what its target already has.
    fn drop_stale(&self, flow: &str, target: &str, seq: u64) -> Result<(), QueueError> {
        let tx = self.db.begin_write()?;
        let mut delta = held::Delta::default();
        delta.remove(tx.open_table(OUTBOX)?.remove((flow, target, seq))?.as_ref());
        tx.commit()?;
        self.held.apply(delta);
        Ok(())
    }

    /// Records waiting in the whole queue (every flow), in constant time: what
    /// backpressure compares with the size limit.
    fn pending_total(&self) -> Result<u64, QueueError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(INBOX)?.len()? + tx.open_table(OUTBOX)?.len()?)
    }

    /// The target will never take the item: move it to the dead letters.
    fn dead_letter(&self, flow: &str, target: &str, seq: u64, dead: &DeadLetter) -> Result<u64, QueueError> {
        let _guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write()?;
        let dl_seq = RedbQueue::next_seq(&mut tx.open_table(META)?)?;
        let mut delta = held::Delta::default();
        delta.remove(tx.open_table(OUTBOX)?.remove((flow, target, seq))?.as_ref());
        let bytes = encode(dead);
        delta.add(bytes.len());
        tx.open_table(DEAD)?.insert((flow, dl_seq), bytes.as_slice())?;
        tx.commit()?;
        self.held.apply(delta);
        Ok(dl_seq)
    }

    /// A flow's dead letters with their ids, oldest first (see also
    /// [`QueueBackend::find_dead_letters`]).
    fn dead_letters(&self, flow: &str) -> Result<Vec<(u64, DeadLetter)>, QueueError> {
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
    fn backlogs(&self) -> Result<HashMap<String, Backlog>, QueueError> {
        let tx = self.db.begin_read()?;
        let mut out: HashMap<String, Backlog> = HashMap::new();
        let mut last_group: Option<(String, String)> = None;
        for entry in tx.open_table(INBOX)?.iter()? {
            let (k, v) = entry?;
            let (flow, seq) = k.value();
            let backlog = out.entry(flow.to_string()).or_default();
            backlog.pending += 1;
            if last_group.as_ref().is_none_or(|(f, _)| f != flow) {
                let envelope: Envelope = decode((flow, seq), v.value())?;
                note_oldest(backlog, envelope.received_at_ms);
                last_group = Some((flow.to_string(), String::new()));
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
                last_group = Some((flow.to_string(), target.to_string()));
            }
        }
        for entry in tx.open_table(DEAD)?.iter()? {
            let (k, _) = entry?;
            out.entry(k.value().0.to_string()).or_default().dead_lettered += 1;
        }
        Ok(out)
    }

    /// Forgets idempotency keys and delivery ids whose window has passed; returns how many.
    fn purge_expired(&self, now_ms: i64) -> Result<u64, QueueError> {
        let tx = self.db.begin_write()?;
        let before = tx.open_table(KEYS)?.len()? + tx.open_table(DELIVERIES)?.len()?;
        tx.open_table(KEYS)?.retain(|_, exp| exp > now_ms)?;
        tx.open_table(DELIVERIES)?.retain(|_, exp| exp > now_ms)?;
        let after = tx.open_table(KEYS)?.len()? + tx.open_table(DELIVERIES)?.len()?;
        tx.commit()?;
        Ok(before - after)
    }
}

/// The tables a prepared record is placed in, open in one write transaction.
struct Stages<'tx> {
    keys: redb::Table<'tx, (&'static str, &'static str), i64>,
    outbox: redb::Table<'tx, (&'static str, &'static str, u64), &'static [u8]>,
    dead_letters: redb::Table<'tx, (&'static str, u64), &'static [u8]>,
    meta: redb::Table<'tx, &'static str, u64>,
    /// Bytes placed.
    delta: held::Delta,
}

impl<'tx> Stages<'tx> {
    fn open(tx: &'tx redb::WriteTransaction) -> Result<Self, QueueError> {
        Ok(Self {
            keys: tx.open_table(KEYS)?,
            outbox: tx.open_table(OUTBOX)?,
            dead_letters: tx.open_table(DEAD)?,
            meta: tx.open_table(META)?,
            delta: held::Delta::default(),
        })
    }

    /// Places record `seq` as prepared: its items in the outbox (keyed by `seq`, which
    /// keeps arrival order within each target) and its idempotency key recorded; or
    /// dropped when the key was already recorded (unless `replayed`); or dead-lettered.
    fn place(
        &mut self,
        flow: &str,
        seq: u64,
        prepared: &Prepared,
        replayed: bool,
        now: i64,
    ) -> Result<PrepareOutcome, QueueError> {
        Ok(match prepared {
            Prepared::Deliver { idempotency_key, key_expires_ms, items } => {
                let key = (flow, idempotency_key.as_str());
                if !replayed && self.keys.get(key)?.is_some_and(|exp| exp.value() > now) {
                    PrepareOutcome::Duplicate
                } else {
                    self.keys.insert(key, *key_expires_ms)?;
                    for item in items {
                        let bytes = encode(item);
                        self.delta.add(bytes.len());
                        self.outbox.insert((flow, item.target.as_str(), seq), bytes.as_slice())?;
                    }
                    PrepareOutcome::Queued
                }
            }
            Prepared::DeadLetter(dead) => {
                let dl_seq = RedbQueue::next_seq(&mut self.meta)?;
                let bytes = encode(dead);
                self.delta.add(bytes.len());
                self.dead_letters.insert((flow, dl_seq), bytes.as_slice())?;
                PrepareOutcome::DeadLettered
            }
        })
    }
}

fn note_oldest(backlog: &mut Backlog, received_ms: i64) {
    backlog.oldest_received_ms = Some(backlog.oldest_received_ms.map_or(received_ms, |o| o.min(received_ms)));
}

#[cfg(test)]
pub(super) mod tests;
