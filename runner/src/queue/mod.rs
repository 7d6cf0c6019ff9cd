//! The durable queue: every record a source acknowledged is here until a target has it
//! or it is dead-lettered.
//!
//! Two stages, each keyed by flow: the inbox holds envelopes as accepted (so a webhook
//! is acknowledged after one small write); the outbox holds one delivery item per
//! target, mapped and keyed. Moving a record from one to the other, recording its
//! idempotency key, acknowledging a delivery and dead-lettering are each atomic and
//! durable before anything is acknowledged upstream.
//!
//! What a queue does is the [`QueueBackend`] trait; the flow, the runtime and the CLI
//! hold a [`Queue`], a shared handle on one backend. [`RedbQueue`] (an embedded file)
//! is the one backend today; a new one implements the trait and joins the model test
//! in `runner/tests/queue_model.rs`.
//!
//! Dead letters can be listed, replayed into the inbox and discarded (`dead_letter`),
//! selected by the filters of `selection`; each replay, discard and injection is kept in
//! the audit trail (`audit`).

mod audit;
mod backend;
mod dead_letter;
mod intake;
mod jetstream;
mod record;
mod redb;
mod selection;

use std::{collections::BTreeMap, ops::Deref, sync::Arc};

pub use audit::{AuditAction, AuditEntry, AuditFilter, Caller, MAX_IDS, REASON_MAX_CHARS, ReasonError, reason};
pub use backend::{Arrivals, QueueBackend};
pub use dead_letter::{ActionReport, Affected, DeadLetterAction, DeadLetterEntry, DeadLetterPage};
pub use intake::{BatchOutcome, Intake};
pub use jetstream::{JetStreamFlow, JetStreamOptions, JetStreamQueue, LeaseTiming, NatsAuth, SharedConnector};
pub use record::{Attempt, DeadLetter, DeadLetterReason, DeliveryItem, Envelope, PastFailure, Replay, Take, now_ms};
pub use redb::RedbQueue;
pub use selection::{DeadLetterFilter, Selection, SelectionError, parse_instant};

/// A queue operation that failed: the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The store failed (disk full, I/O error, corruption).
    #[error("queue store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Another process (a runner) has the queue file open; it allows one at a time.
    #[error("queue file {path} is in use by another process (a runner using this data directory?)")]
    InUse {
        /// The queue file.
        path: String,
    },
    /// The queue file was written in a format this version cannot use as is (see
    /// `RedbQueue::open_migrating`).
    #[error("queue file {path} cannot be used as is: {message}")]
    Format {
        /// The queue file.
        path: String,
        /// Why, and what to do.
        message: String,
    },
    /// The store failed a write (a full disk, an I/O error) and refuses every other until
    /// it is reopened; reopening is tried on each use and by `/healthz`.
    #[error(
        "queue file {path} refuses writes since one failed ({reason}); free space on its volume if it is full: the \
         runner reopens it by itself, or is restarted by its liveness probe"
    )]
    Latched {
        /// The queue file.
        path: String,
        /// The failure, and those of the attempts to reopen it.
        reason: String,
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

impl QueueError {
    /// Whether the store found its file corrupt or not a queue at all (not an I/O
    /// failure, a lock or a format version).
    pub fn is_corrupt(&self) -> bool {
        let Self::Store(e) = self else { return false };
        match e.downcast_ref::<::redb::Error>() {
            Some(::redb::Error::Corrupted(_)) => true,
            Some(::redb::Error::Io(io)) => io.kind() == std::io::ErrorKind::InvalidData,
            _ => false,
        }
    }
}

impl From<std::io::Error> for QueueError {
    fn from(e: std::io::Error) -> Self {
        Self::Store(Box::new(e))
    }
}

/// Each flow's target names, in `spec.targets` order: what a queue written by an earlier
/// version, which named targets by position, is migrated with.
pub type TargetNames = BTreeMap<String, Vec<String>>;

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
    /// The bytes the whole queue may hold (records, delivery items and dead letters)
    /// beyond which it is refused (`spec.runner.queue.maxBytes`).
    pub max_bytes: u64,
    /// The record already mapped (at intake, for a flow that needs nothing else from
    /// the inbox): when its flow's inbox is empty it is placed in the same transaction
    /// (outbox, duplicate or dead letter, as [`QueueBackend::prepare_batch`] would), so
    /// it costs one commit rather than two. Behind other inbox records it joins the
    /// inbox, so the prepare worker keeps the flow's arrival order.
    pub prepared: Option<&'a Prepared>,
}

/// What happened to a record offered to the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Durably queued in the inbox under this sequence number.
    Queued(u64),
    /// Already mapped ([`Offer::prepared`]) and placed past the inbox, in the same
    /// transaction: under this sequence number in the outbox, or dropped as a duplicate
    /// idempotency key, or dead-lettered.
    Prepared {
        /// The record's sequence number (the outbox items' key).
        seq: u64,
        /// Where it went.
        outcome: PrepareOutcome,
    },
    /// The source already delivered this delivery id within the dedup window: nothing
    /// was queued, the source may be told it succeeded.
    DuplicateDelivery,
    /// The queue holds its limit of records or of bytes: nothing was queued, the source
    /// must retry.
    Full,
}

/// What the prepare stage decided for an inbox record.
// Short-lived, at most a batch of them at a time: boxing the dead letter buys nothing.
#[allow(clippy::large_enum_variant)]
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

/// A shared handle on the queue's backend. Cheap to clone; every call does blocking
/// I/O, so async callers run it with [`Queue::off_thread`].
#[derive(Clone)]
pub struct Queue(Arc<dyn QueueBackend>);

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Queue").field(&self.0).finish()
    }
}

impl Deref for Queue {
    type Target = dyn QueueBackend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl Queue {
    /// A handle on `backend`.
    pub fn new(backend: impl QueueBackend) -> Self {
        Self(Arc::new(backend))
    }

    /// Runs `work` on the queue on a blocking thread: every queue call does I/O (and a
    /// commit, an fsync), which must not stall the async workers.
    pub async fn off_thread<T: Send + 'static>(&self, work: impl FnOnce(&Queue) -> T + Send + 'static) -> T {
        let queue = self.clone();
        tokio::task::spawn_blocking(move || work(&queue)).await.expect("a queue operation panicked")
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
