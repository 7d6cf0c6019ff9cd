//! The bytes the queue holds: records in the inbox, items in the outbox and dead
//! letters, as stored. What the byte budget (`spec.runner.queue.maxBytes`) is compared
//! with, so intake refuses before the volume fills (a full volume latches redb). Counted
//! once when the file is opened, then kept by each write once it has committed.

use std::sync::atomic::{AtomicU64, Ordering};

use redb::{AccessGuard, ReadTransaction, ReadableTable};

use super::{DEAD, INBOX, OUTBOX};
use crate::queue::QueueError;

/// Bytes held, shared by the queue's writers.
#[derive(Debug, Default)]
pub(super) struct Held(AtomicU64);

/// What one write transaction added and removed.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Delta {
    added: u64,
    removed: u64,
}

impl Delta {
    /// A value of `len` bytes was stored.
    pub(super) fn add(&mut self, len: usize) {
        self.added += len as u64;
    }

    /// A value was removed (`None`: there was none).
    pub(super) fn remove(&mut self, removed: Option<&AccessGuard<'_, &[u8]>>) {
        self.removed += removed.map_or(0, |v| v.value().len() as u64);
    }

    /// Bytes added net of those removed, so far.
    pub(super) fn net(&self) -> i64 {
        self.added as i64 - self.removed as i64
    }

    /// Both deltas.
    pub(super) fn merge(&mut self, other: Delta) {
        self.added += other.added;
        self.removed += other.removed;
    }
}

impl Held {
    /// Counts what the file holds.
    pub(super) fn count(tx: &ReadTransaction) -> Result<Self, QueueError> {
        let mut bytes = 0u64;
        for entry in tx.open_table(INBOX)?.iter()?.chain(tx.open_table(DEAD)?.iter()?) {
            bytes += entry?.1.value().len() as u64;
        }
        for entry in tx.open_table(OUTBOX)?.iter()? {
            bytes += entry?.1.value().len() as u64;
        }
        Ok(Self(AtomicU64::new(bytes)))
    }

    /// Bytes held now.
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Applies a committed transaction's delta.
    pub(super) fn apply(&self, delta: Delta) {
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            Some((held + delta.added).saturating_sub(delta.removed))
        });
    }
}
