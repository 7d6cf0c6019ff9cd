//! The redb database under the queue, and what happens when it latches.
//!
//! After a failed write (a full disk, an I/O error) redb refuses every later transaction
//! (`PreviousIo`) until the file is closed and opened again: a runner that kept going
//! would answer 503 to every webhook and deliver nothing, behind green probes. The store
//! notices the latch at the next transaction (or at [`Store::check`], which `/healthz`
//! calls), closes the database and opens it again (redb repairs it from its last
//! commit). Until a write commits again, [`Store::check`] fails with the reason.

use std::{
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant},
};

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use tracing::{error, info};

use super::META;
use crate::queue::{QueueError, now_ms};

/// Opens the database: the same steps as at start (migration, tables).
pub(super) type Opener = Box<dyn Fn() -> Result<Database, QueueError> + Send + Sync>;

/// Reopening is tried at most this often by transactions (`/healthz` tries at each call).
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Where the health check's write probe is kept in `META`.
const PROBE_KEY: &str = "health_probe_ms";

/// The database, reopened after a latch.
pub(super) struct Store {
    path: String,
    open: Opener,
    /// `None` while closed after a latch and not yet reopened.
    db: RwLock<Option<Arc<Database>>>,
    latch: Mutex<Option<Latch>>,
}

struct Latch {
    /// What latched it.
    cause: String,
    /// Why it is not usable again yet: the last failure to reopen or write.
    last: Option<String>,
    tried: Instant,
}

impl Latch {
    fn reason(&self) -> String {
        match &self.last {
            None => self.cause.clone(),
            Some(last) => format!("{}; since: {last}", self.cause),
        }
    }
}

impl Store {
    /// A store on `db`, reopened with `open` after a latch.
    pub(super) fn new(path: String, db: Database, open: Opener) -> Self {
        Self { path, open, db: RwLock::new(Some(Arc::new(db))), latch: Mutex::new(None) }
    }

    /// A write transaction; a latched database is reopened first.
    pub(super) fn begin_write(&self) -> Result<WriteTransaction, QueueError> {
        self.begin_write_now(false)
    }

    /// [`Store::begin_write`]; reopening a closed database `now` rather than at most
    /// every [`RETRY_EVERY`].
    fn begin_write_now(&self, now: bool) -> Result<WriteTransaction, QueueError> {
        // Bound first: the database handle must be dropped before it can be reopened.
        let began = self.database(now)?.begin_write();
        match began {
            Err(e) if is_latch(&e) => {
                self.latched(e.to_string());
                Ok(self.database(true)?.begin_write()?)
            }
            other => Ok(other?),
        }
    }

    /// A read transaction.
    pub(super) fn begin_read(&self) -> Result<ReadTransaction, QueueError> {
        Ok(self.database(false)?.begin_read()?)
    }

    /// Why the queue cannot take writes, if it cannot: the database latched and either
    /// cannot be reopened or has not committed a write since. Tries both first.
    pub(super) fn check(&self) -> Result<(), QueueError> {
        if self.lock_latch().is_none() {
            // Cheap: a writer at work (`WouldBlock`) shows the database is fine.
            let began = self.database(false)?.try_begin_write();
            match began {
                Ok(tx) => return Ok(tx.abort()?),
                Err(redb::TransactionError::WouldBlock) => return Ok(()),
                Err(e) if is_latch(&e) => self.latched(e.to_string()),
                Err(e) => return Err(e.into()),
            }
        }
        let probe = || -> Result<(), QueueError> {
            let tx = self.begin_write_now(true)?;
            tx.open_table(META)?.insert(PROBE_KEY, now_ms().max(0) as u64)?;
            Ok(tx.commit()?)
        };
        match probe() {
            Ok(()) => {
                if self.lock_latch().take().is_some() {
                    info!(path = %self.path, "queue writable again after a failed write");
                }
                Ok(())
            }
            Err(e) => {
                let mut latch = self.lock_latch();
                let latch =
                    latch.get_or_insert_with(|| Latch { cause: e.to_string(), last: None, tried: Instant::now() });
                if !matches!(e, QueueError::Latched { .. }) {
                    latch.last = Some(e.to_string());
                }
                latch.tried = Instant::now();
                let reason = latch.reason();
                // A failed commit latches the reopened database again.
                *self.db.write().unwrap_or_else(PoisonError::into_inner) = None;
                Err(QueueError::Latched { path: self.path.clone(), reason })
            }
        }
    }

    /// The reason the store latched, while it is.
    pub(super) fn latch_reason(&self) -> Option<String> {
        self.lock_latch().as_ref().map(Latch::reason)
    }

    fn lock_latch(&self) -> std::sync::MutexGuard<'_, Option<Latch>> {
        self.latch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the latch and closes the database (once the transactions in flight end).
    fn latched(&self, reason: String) {
        let mut latch = self.lock_latch();
        if latch.is_none() {
            error!(path = %self.path, reason = %reason, "queue store failed a write and refuses every other until \
                   reopened; reopening (free space on its volume if it is full)");
            *latch = Some(Latch { cause: reason, last: None, tried: Instant::now() - RETRY_EVERY });
        }
        drop(latch);
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The open database; a closed one is reopened when `now` or when the last try is
    /// older than [`RETRY_EVERY`].
    fn database(&self, now: bool) -> Result<Arc<Database>, QueueError> {
        if let Some(db) = self.db.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return Ok(db.clone());
        }
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let mut latch = self.lock_latch();
        let latch = latch.get_or_insert_with(|| Latch {
            cause: "closed".into(),
            last: None,
            tried: Instant::now() - RETRY_EVERY,
        });
        if !now && latch.tried.elapsed() < RETRY_EVERY {
            return Err(QueueError::Latched { path: self.path.clone(), reason: latch.reason() });
        }
        match (self.open)() {
            Ok(db) => {
                info!(path = %self.path, "queue store reopened after a failed write");
                let db = Arc::new(db);
                *slot = Some(db.clone());
                Ok(db)
            }
            Err(e) => {
                latch.last = Some(format!("reopening failed: {e}"));
                latch.tried = Instant::now();
                Err(QueueError::Latched { path: self.path.clone(), reason: latch.reason() })
            }
        }
    }
}

/// Whether redb refuses everything after an earlier failed write.
fn is_latch(e: &redb::TransactionError) -> bool {
    use redb::StorageError::{DatabaseClosed, PreviousIo};
    matches!(e, redb::TransactionError::Storage(PreviousIo | DatabaseClosed))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
