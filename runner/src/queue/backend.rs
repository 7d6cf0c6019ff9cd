//! What a queue backend does: the operations the flow, the sources, the runtime and the
//! CLI use. Every method is blocking and atomic (one transaction, durable when it
//! returns); async callers go through [`super::Queue::off_thread`].

use std::collections::{BTreeMap, HashMap};

use super::{
    Accepted, Affected, AuditEntry, AuditFilter, Backlog, BatchOutcome, Caller, DeadLetter, DeadLetterAction,
    DeadLetterEntry, DeadLetterFilter, DeadLetterPage, DeliveryItem, Envelope, Intake, Offer, PrepareOutcome, Prepared,
    QueueError, Take,
};

/// What [`QueueBackend::watch_arrivals`] calls: with `None` for a record in the inbox,
/// with a target's name for a delivery item.
pub type Arrivals = std::sync::Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// A durable queue. Implementations must keep, for each flow, the inbox in arrival
/// order and each target's outbox in inbox order (the model test in
/// `runner/tests/queue_model.rs` checks this and the dedup rules).
pub trait QueueBackend: std::fmt::Debug + Send + Sync + 'static {
    // ---- health

    /// Whether the store takes writes, after trying to recover it: `Err` while it
    /// cannot (a file that latched after a failed write, such as on a full disk, and
    /// is not writable again). `/healthz` fails with it.
    fn check(&self) -> Result<(), QueueError> {
        Ok(())
    }

    /// Why the store refuses writes, while it does (see [`QueueBackend::check`]).
    fn latched(&self) -> Option<String> {
        None
    }

    // ---- sharing: several runners on one queue

    /// Whether this runner may still work on the flow's delivery item `seq`: a queue
    /// shared by several runners gives each a share of the partitions, and an item whose
    /// partition went to another runner is left to it.
    fn holds(&self, _flow: &str, _seq: u64) -> bool {
        true
    }

    /// A number that changes whenever this runner's share of the flow changes: a reader
    /// that remembers how far it read starts again from the beginning.
    fn claims(&self, _flow: &str) -> u64 {
        0
    }

    /// How many of the flow's partitions this runner works now, for a queue several
    /// runners share; `None` for one this runner works whole.
    fn partitions_held(&self, _flow: &str) -> Option<u16> {
        None
    }

    /// Whether this runner is the one to read the flow's source `role` (a poller, a file
    /// import) now: exactly one runner of a shared queue does at a time.
    fn leads(&self, _flow: &str, _role: &str) -> Result<bool, QueueError> {
        Ok(true)
    }

    /// Calls `arrived` whenever another runner adds work to the flow: `None` for a record
    /// in the inbox, `Some(target)` for a delivery item, so this runner's workers take it
    /// at once rather than at their next look. Nothing for a queue only this runner writes.
    fn watch_arrivals(&self, _flow: &str, _arrived: Arrivals) {}

    /// This runner stops: lets go of its share of the work, so the others take it over at
    /// once rather than when its leases expire.
    fn leave(&self) {}

    // ---- intake: source → inbox

    /// Several records (of any flows) in one transaction: one commit acknowledges them
    /// all (group commit). Each is checked against the records before it in the group:
    /// a delivery id already accepted (and not expired) is a duplicate; past
    /// `max_pending` records or `max_bytes` bytes in the whole queue, the record is refused as full. An offer
    /// with [`Offer::prepared`] skips the inbox when its flow's inbox is empty (see there).
    fn accept_group(&self, offers: &[Offer<'_>]) -> Result<Vec<Accepted>, QueueError>;

    /// Durably queues an envelope from a source, unless its delivery id was already
    /// accepted (and has not expired).
    fn accept(&self, flow: &str, envelope: &Envelope, delivery_expires_ms: i64) -> Result<Accepted, QueueError> {
        self.accept_within(flow, envelope, delivery_expires_ms, u64::MAX)
    }

    /// [`QueueBackend::accept`], unless the whole queue already holds `max_pending` records.
    fn accept_within(
        &self,
        flow: &str,
        envelope: &Envelope,
        delivery_expires_ms: i64,
        max_pending: u64,
    ) -> Result<Accepted, QueueError> {
        let offer = Offer { flow, envelope, delivery_expires_ms, max_pending, max_bytes: u64::MAX, prepared: None };
        Ok(self.accept_group(std::slice::from_ref(&offer))?[0])
    }

    /// Durably takes a batch from a source (records, and dead letters of what could not
    /// be read) and records its progress: `state` pairs of (key, value) are written in
    /// the same transaction as the records.
    fn accept_batch(
        &self,
        flow: &str,
        items: &[Intake],
        delivery_expires_ms: i64,
        state: &[(&str, &[u8])],
    ) -> Result<BatchOutcome, QueueError>;

    /// A source's progress under `key`, as last committed by [`QueueBackend::accept_batch`].
    fn source_state(&self, flow: &str, key: &str) -> Result<Option<Vec<u8>>, QueueError>;

    // ---- prepare: inbox → outbox

    /// Up to `max` inbox records of a flow, oldest first.
    fn inbox(&self, flow: &str, max: usize) -> Result<Vec<(u64, Envelope)>, QueueError>;

    /// Moves several inbox records on, in one transaction and in order: into the outbox
    /// (one item per target, keyed by the inbox seq), away as a duplicate of an
    /// idempotency key already recorded, or to the dead letters. A record sees the keys
    /// of the ones before it in the batch. A replayed record is never a duplicate: its
    /// key was recorded when it first passed, and is recorded again.
    fn prepare_batch(&self, flow: &str, batch: Vec<(u64, Prepared)>) -> Result<Vec<PrepareOutcome>, QueueError>;

    /// [`QueueBackend::prepare_batch`] for one record.
    fn prepare(&self, flow: &str, seq: u64, prepared: Prepared) -> Result<PrepareOutcome, QueueError> {
        Ok(self.prepare_batch(flow, vec![(seq, prepared)])?[0])
    }

    // ---- delivery: outbox → target

    /// Up to `max` delivery items of a flow's target, oldest first.
    fn outbox(&self, flow: &str, target: &str, max: usize) -> Result<Vec<(u64, DeliveryItem)>, QueueError> {
        self.outbox_after(flow, target, 0, Take { items: max, bytes: usize::MAX })
    }

    /// The delivery items of a flow's target with a sequence number above `after`, oldest
    /// first, as many as `take` allows.
    fn outbox_after(
        &self,
        flow: &str,
        target: &str,
        after: u64,
        take: Take,
    ) -> Result<Vec<(u64, DeliveryItem)>, QueueError>;

    /// The target has these items: remove them, and for each `(ordering key, version)`
    /// given record it as the last version applied for that key when it is newer than
    /// the one recorded (see [`super::compare_versions`]). One transaction.
    fn delivered_batch(
        &self,
        flow: &str,
        target: &str,
        items: &[(u64, Option<(&str, &str)>)],
    ) -> Result<(), QueueError>;

    /// The target has the item: remove it.
    fn delivered(&self, flow: &str, target: &str, seq: u64) -> Result<(), QueueError> {
        self.delivered_batch(flow, target, &[(seq, None)])
    }

    /// [`QueueBackend::delivered`], also recording its version (see
    /// [`QueueBackend::delivered_batch`]).
    fn delivered_version(
        &self,
        flow: &str,
        target: &str,
        seq: u64,
        version: Option<(&str, &str)>,
    ) -> Result<(), QueueError> {
        self.delivered_batch(flow, target, &[(seq, version)])
    }

    /// The last version delivered to a target for an ordering key.
    fn last_version(&self, flow: &str, target: &str, key: &str) -> Result<Option<String>, QueueError>;

    /// Drops an item older than what its target already has.
    fn drop_stale(&self, flow: &str, target: &str, seq: u64) -> Result<(), QueueError>;

    /// The target will never take the item: move it to the dead letters; returns the
    /// dead letter's id.
    fn dead_letter(&self, flow: &str, target: &str, seq: u64, dead: &DeadLetter) -> Result<u64, QueueError>;

    // ---- backlog

    /// Bytes the whole queue holds (records, delivery items, dead letters), cheaply: what
    /// [`Offer::max_bytes`] is compared with.
    fn held_bytes(&self) -> u64;

    /// Records waiting in the whole queue (every flow), cheaply: what backpressure
    /// compares with the size limit.
    fn pending_total(&self) -> Result<u64, QueueError>;

    /// How many records (inbox) and delivery items (outbox) of `flow` are waiting: what
    /// a source compares with its backlog limit before reading more.
    fn pending(&self, flow: &str) -> Result<u64, QueueError>;

    /// Pending work and dead letters of every flow that has any.
    fn backlogs(&self) -> Result<HashMap<String, Backlog>, QueueError>;

    // ---- dead letters

    /// A flow's dead letters with their ids, oldest first.
    fn dead_letters(&self, flow: &str) -> Result<Vec<(u64, DeadLetter)>, QueueError>;

    /// The dead letters `filter` selects, one page of them.
    fn find_dead_letters(&self, filter: &DeadLetterFilter) -> Result<DeadLetterPage, QueueError>;

    /// Dead letter `id`, of whichever flow.
    fn dead_letter_by_id(&self, id: u64) -> Result<Option<DeadLetterEntry>, QueueError> {
        let filter = DeadLetterFilter { ids: [id].into(), ..DeadLetterFilter::default() };
        Ok(self.find_dead_letters(&filter)?.entries.pop())
    }

    /// Moves the dead letters `filter` selects back into their flows' inboxes, in one
    /// transaction. Each re-enters the pipeline as a new record marked as a replay (so
    /// the idempotency-key dedup lets it through), with its correlation id, and with
    /// this failure added to its history. Writes one audit entry per flow touched, by
    /// `caller` (see [`super::audit`]).
    fn replay_dead_letters(&self, filter: &DeadLetterFilter, caller: &Caller) -> Result<Vec<Affected>, QueueError>;

    /// Deletes the dead letters `filter` selects, in one transaction, with one audit
    /// entry per flow touched.
    fn discard_dead_letters(&self, filter: &DeadLetterFilter, caller: &Caller) -> Result<Vec<Affected>, QueueError>;

    /// Replays or discards the dead letters `filter` selects.
    fn act_on_dead_letters(
        &self,
        action: DeadLetterAction,
        filter: &DeadLetterFilter,
        caller: &Caller,
    ) -> Result<Vec<Affected>, QueueError> {
        match action {
            DeadLetterAction::Replay => self.replay_dead_letters(filter, caller),
            DeadLetterAction::Discard => self.discard_dead_letters(filter, caller),
        }
    }

    // ---- audit

    /// Records handed to `flow` from outside its source (an injection, a repair): as
    /// [`QueueBackend::accept_batch`], with `audit` completed (the count queued, the
    /// duplicates, the records' correlation ids) and written with them.
    fn inject(
        &self,
        flow: &str,
        items: &[Intake],
        delivery_expires_ms: i64,
        audit: AuditEntry,
    ) -> Result<BatchOutcome, QueueError>;

    /// The audit entries `filter` selects, oldest first.
    fn audit_trail(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, QueueError>;

    /// Deletes the audit entries written before `cutoff_ms(flow)` (the flow's dead-letter
    /// retention); returns how many. A backend whose store expires them by itself (a
    /// stream's age limit) returns 0.
    fn purge_audit(&self, cutoff_ms: &dyn Fn(&str) -> i64) -> Result<u64, QueueError>;

    // ---- expiry

    /// Deletes the dead letters written before `cutoff_ms(flow)`; returns how many, per flow.
    fn purge_dead_letters(&self, cutoff_ms: &dyn Fn(&str) -> i64) -> Result<BTreeMap<String, u64>, QueueError>;

    /// Forgets the last versions (the stale guard's, see
    /// [`QueueBackend::delivered_batch`]) last written before `cutoff_ms(flow)`; returns
    /// how many. A key seen again after that is delivered without the guard.
    fn purge_versions(&self, cutoff_ms: &dyn Fn(&str) -> i64, now_ms: i64) -> Result<u64, QueueError>;

    /// Forgets idempotency keys and delivery ids whose window has passed; returns how many.
    fn purge_expired(&self, now_ms: i64) -> Result<u64, QueueError>;
}
