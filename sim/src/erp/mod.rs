//! A simulated ERP: one sales-order ledger served in three protocol flavours.
//!
//! - NetSuite REST (at `/salesOrders`, §7 of the external-API reference): `204` + `Location`
//!   on create, upsert by external id (`PUT /salesOrders/eid:{id}`), idempotency keys whose
//!   replay returns the original answer, asynchronous requests (`Prefer: respond-async`:
//!   `202` + job `Location`, job status under `/async/v1/job/{id}`, a duplicate key answered
//!   `IDEMPOTENCY_ERROR` with the prior job's `Location`), `limit`/`offset` pages with
//!   `links` rel=next, business rejections in the `o:errorDetails` shape, and concurrency
//!   governance refusing the (limit+1)th request in flight (`429`, or the RESTlet
//!   `400 SSS_REQUEST_LIMIT_EXCEEDED` shape).
//! - Dynamics 365 Business Central OData v4 (at `/d365`, §8, see [`dynamics`]).
//! - SAP S/4HANA OData v2 (at `/sap`, §9, see [`sap`]).
//!
//! Every fault is a knob of [`ErpConfig`]; the random ones draw from a generator seeded
//! with [`ErpConfig::seed`], so a run is reproducible. What the ERP holds is exposed for
//! verification ([`ErpHandle::orders`], [`ErpHandle::order_by_external_id`]: `revision`
//! counts the writes each order got), whichever flavour wrote it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), entrepot_sim::erp::ErpError> {
//! use entrepot_sim::erp::{self, ErpConfig};
//! let erp = erp::bind(ErpConfig::default(), "127.0.0.1:0").await?;
//! println!("POST sales orders to {}/salesOrders", erp.base_url());
//! // ... run the flow under test ...
//! assert_eq!(erp.stats().created, erp.orders().len() as u64);
//! erp.shutdown().await?;
//! # Ok(()) }
//! ```

mod admission;
mod api;
pub mod dynamics;
pub mod error_body;
mod ledger;
mod netsuite_async;
mod odata;
pub mod sales_order;
pub mod sap;

#[cfg(test)]
mod flavour_tests;
#[cfg(test)]
mod sap_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::HeaderName;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;

pub use error_body::ErrorDetail;
pub use sales_order::{OrderItem, StoredOrder};

use ledger::Ledger;

/// How the simulated ERP behaves.
#[derive(Clone)]
pub struct ErpConfig {
    /// The item SKUs the ERP knows; `None` accepts any SKU.
    pub known_skus: Option<BTreeSet<String>>,
    /// Requests allowed in flight at once; the next one is answered `429` (NetSuite's
    /// concurrency governance counts requests in flight, not requests per minute).
    /// 0 throttles every request.
    pub max_concurrency: usize,
    /// When set, every request must carry `Authorization: Bearer <token>`, else `401`.
    pub bearer_token: Option<String>,
    /// Processing time of each request, spent while holding a concurrency slot; makes the
    /// concurrency limit observable with a handful of requests.
    pub latency: Duration,
    /// The request header carrying the idempotency key of synchronous NetSuite writes
    /// (asynchronous ones also read `X-NetSuite-Idempotency-Key`).
    pub idempotency_header: HeaderName,
    /// Seed of every random fault, so a run is reproducible.
    pub seed: u64,
    /// Share (0 to 1) of conditional writes (`If-Match`, Dynamics and SAP flavours) that
    /// find the order edited by someone else just before, so the ETag no longer matches.
    pub concurrent_edit_ratio: f64,
    /// Share (0 to 1) of successful writes whose answer is lost on the way back: the
    /// write is made, the client gets `504 Gateway Timeout` (seeded draw).
    pub lost_answer_ratio: f64,
    /// NetSuite-flavour knobs.
    pub netsuite: NetSuiteKnobs,
    /// Dynamics 365 flavour knobs.
    pub dynamics: dynamics::DynamicsKnobs,
    /// SAP flavour knobs.
    pub sap: sap::SapKnobs,
}

impl Default for ErpConfig {
    fn default() -> Self {
        Self {
            known_skus: None,
            // NetSuite's base concurrency for its entry service tier.
            max_concurrency: 15,
            bearer_token: None,
            latency: Duration::ZERO,
            idempotency_header: HeaderName::from_static("idempotency-key"),
            seed: 0,
            concurrent_edit_ratio: 0.0,
            lost_answer_ratio: 0.0,
            netsuite: NetSuiteKnobs::default(),
            dynamics: dynamics::DynamicsKnobs::default(),
            sap: sap::SapKnobs::default(),
        }
    }
}

/// How the NetSuite flavour behaves beyond the record API.
#[derive(Debug, Clone, Default)]
pub struct NetSuiteKnobs {
    /// Job-status reads answered `pending` before an asynchronous job shows its outcome.
    pub async_pending_polls: u32,
    /// How a request over the concurrency limit is refused.
    pub throttle_shape: ThrottleShape,
}

/// The answer to a request over NetSuite's concurrency limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ThrottleShape {
    /// The REST web services answer: `429 Too Many Requests` with `Retry-After`. The
    /// reference marks the status uncertain (U); 429 is the documented title's status.
    #[default]
    TooManyRequests,
    /// The RESTlet answer: `400` with error code `SSS_REQUEST_LIMIT_EXCEEDED`.
    RestletRequestLimit,
}

// Written by hand so the bearer token never reaches a log line.
impl fmt::Debug for ErpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErpConfig")
            .field("known_skus", &self.known_skus)
            .field("max_concurrency", &self.max_concurrency)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<redacted>"))
            .field("latency", &self.latency)
            .field("idempotency_header", &self.idempotency_header)
            .field("seed", &self.seed)
            .field("concurrent_edit_ratio", &self.concurrent_edit_ratio)
            .field("lost_answer_ratio", &self.lost_answer_ratio)
            .field("netsuite", &self.netsuite)
            .field("dynamics", &self.dynamics)
            .field("sap", &self.sap)
            .finish()
    }
}

/// Counts of request outcomes since the ERP started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErpStats {
    /// Sales orders stored for the first time (by POST or by an upsert that created).
    pub created: u64,
    /// Stored sales orders overwritten by an upsert.
    pub updated: u64,
    /// Writes answered from an earlier request with the same idempotency key.
    pub idempotent_replays: u64,
    /// Writes refused with `400` (invalid record, duplicate external id, malformed JSON).
    pub rejected_business: u64,
    /// Requests refused with `429` by the concurrency limit.
    pub throttled: u64,
    /// Requests refused with `401`.
    pub unauthorized: u64,
    /// Requests refused with `503` while the ERP was down.
    pub unavailable: u64,
    /// Conditional writes refused with `412` (the ETag no longer matched).
    pub conflicts: u64,
    /// SAP writes refused with `403` for a missing, wrong or expired CSRF token.
    pub csrf_refused: u64,
    /// Reads answered (records, NetSuite job status and results, ETags).
    pub reads: u64,
}

impl ErpStats {
    /// Requests the ERP served (neither refused by its limits nor unavailable): what a
    /// client's use of the granted concurrency is measured by.
    pub fn served(&self) -> u64 {
        self.created + self.updated + self.idempotent_replays + self.rejected_business + self.conflicts + self.reads
    }
}

/// What became of one request; logged and counted in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Created,
    Updated,
    Replayed,
    Rejected,
    Throttled,
    Unauthorized,
    Unavailable,
    Conflict,
    CsrfRequired,
    NotFound,
    Unsupported,
    Read,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Replayed => "replayed",
            Self::Rejected => "rejected",
            Self::Throttled => "throttled",
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
            Self::Conflict => "conflict",
            Self::CsrfRequired => "csrf_required",
            Self::NotFound => "not_found",
            Self::Unsupported => "unsupported",
            Self::Read => "read",
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    created: AtomicU64,
    updated: AtomicU64,
    idempotent_replays: AtomicU64,
    rejected_business: AtomicU64,
    throttled: AtomicU64,
    unauthorized: AtomicU64,
    unavailable: AtomicU64,
    conflicts: AtomicU64,
    csrf_refused: AtomicU64,
    reads: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Created => &self.created,
            Outcome::Updated => &self.updated,
            Outcome::Replayed => &self.idempotent_replays,
            Outcome::Rejected => &self.rejected_business,
            Outcome::Throttled => &self.throttled,
            Outcome::Unauthorized => &self.unauthorized,
            Outcome::Unavailable => &self.unavailable,
            Outcome::Conflict => &self.conflicts,
            Outcome::CsrfRequired => &self.csrf_refused,
            Outcome::Read => &self.reads,
            Outcome::NotFound | Outcome::Unsupported => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ErpStats {
        ErpStats {
            created: self.created.load(Ordering::Relaxed),
            updated: self.updated.load(Ordering::Relaxed),
            idempotent_replays: self.idempotent_replays.load(Ordering::Relaxed),
            rejected_business: self.rejected_business.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            csrf_refused: self.csrf_refused.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
        }
    }
}

/// State shared by the request handlers and the [`ErpHandle`].
struct Shared {
    config: ErpConfig,
    ledger: Mutex<Ledger>,
    permits: Arc<Semaphore>,
    down: AtomicBool,
    paused: watch::Sender<bool>,
    counters: Counters,
    /// The seeded generator behind every random fault.
    rng: Mutex<Xoshiro256PlusPlus>,
    jobs: Mutex<netsuite_async::Jobs>,
    window: Mutex<dynamics::Window>,
    sessions: Mutex<sap::Sessions>,
}

impl Shared {
    fn new(config: ErpConfig) -> Self {
        Self {
            // Semaphore::new panics above MAX_PERMITS; no real limit comes near it.
            permits: Arc::new(Semaphore::new(config.max_concurrency.min(Semaphore::MAX_PERMITS))),
            rng: Mutex::new(Xoshiro256PlusPlus::seed_from_u64(config.seed)),
            jobs: Mutex::new(netsuite_async::Jobs::default()),
            window: Mutex::new(dynamics::Window::default()),
            sessions: Mutex::new(sap::Sessions::default()),
            config,
            ledger: Mutex::new(Ledger::default()),
            down: AtomicBool::new(false),
            paused: watch::Sender::new(false),
            counters: Counters::default(),
        }
    }

    /// The ledger lock is only ever held for in-memory bookkeeping, never across an await.
    /// A panic while holding it cannot leave the maps half-updated in a way that matters to
    /// a simulator, so a poisoned lock is simply taken over.
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the next conditional write meets a concurrent edit (seeded draw).
    fn edited_elsewhere(&self) -> bool {
        self.draw(self.config.concurrent_edit_ratio)
    }

    /// Whether the answer to a successful write is lost (seeded draw).
    fn answer_lost(&self) -> bool {
        self.draw(self.config.lost_answer_ratio)
    }

    fn draw(&self, ratio: f64) -> bool {
        ratio > 0.0 && lock(&self.rng).random::<f64>() < ratio
    }
}

/// The protocol state locks, like the ledger's, only guard in-memory bookkeeping.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Failures starting or stopping the simulated ERP.
#[derive(Debug, thiserror::Error)]
pub enum ErpError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port or use port 0")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The listener's local address could not be read.
    #[error("cannot read the ERP listener's local address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// The HTTP server stopped with an error.
    #[error("the simulated ERP's HTTP server failed: {0}")]
    Server(#[source] std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("the simulated ERP's server task ended abnormally: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// A running simulated ERP. Dropping the handle stops the server.
pub struct ErpHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl fmt::Debug for ErpHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErpHandle")
            .field("addr", &self.addr)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Serves the ERP API on `listener` from a new tokio task.
///
/// Must be called within a tokio runtime.
pub async fn serve(config: ErpConfig, listener: TcpListener) -> Result<ErpHandle, ErpError> {
    let addr = listener.local_addr().map_err(ErpError::LocalAddr)?;
    let shared = Arc::new(Shared::new(config));
    let (stop, stopped) = oneshot::channel::<()>();
    let app = api::router(Arc::clone(&shared));
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // Resolves on an explicit stop and when the handle is dropped.
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, max_concurrency = shared.config.max_concurrency, "simulated ERP listening");
    Ok(ErpHandle { addr, shared, stop: Some(stop), task: Some(task) })
}

/// Binds `addr` (e.g. `"127.0.0.1:0"` for a free port) and serves the ERP API on it.
pub async fn bind(config: ErpConfig, addr: &str) -> Result<ErpHandle, ErpError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| ErpError::Bind { addr: addr.to_owned(), source })?;
    serve(config, listener).await
}

impl ErpHandle {
    /// The address the ERP listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, to which `/salesOrders` is appended.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://IP:PORT/salesOrders`, where sales orders are created.
    pub fn sales_orders_url(&self) -> String {
        format!("{}/salesOrders", self.base_url())
    }

    /// `http://IP:PORT/d365`, the Dynamics 365 flavour's service root (entity set
    /// `salesOrders`, `$batch`).
    pub fn dynamics_url(&self) -> String {
        format!("{}/d365", self.base_url())
    }

    /// `http://IP:PORT/sap`, the SAP flavour's service root (entity set `salesOrders`).
    pub fn sap_url(&self) -> String {
        format!("{}/sap", self.base_url())
    }

    /// Someone else edits the order in the ERP: its ETag changes, its content does not.
    /// False when no order has this external id.
    pub fn edit_elsewhere(&self, external_id: &str) -> bool {
        self.shared.ledger().edit_elsewhere(external_id)
    }

    /// Every SAP CSRF token issued so far expires now (as when a session times out).
    pub fn expire_csrf_tokens(&self) {
        lock(&self.shared.sessions).expire_all();
    }

    /// Every stored sales order, by internal id.
    pub fn orders(&self) -> Vec<StoredOrder> {
        self.shared.ledger().orders()
    }

    /// The stored sales order with this external id, if any.
    pub fn order_by_external_id(&self, external_id: &str) -> Option<StoredOrder> {
        self.shared.ledger().orders().into_iter().find(|order| order.external_id == external_id)
    }

    /// Counts of request outcomes so far.
    pub fn stats(&self) -> ErpStats {
        self.shared.counters.snapshot()
    }

    /// Requests currently holding a concurrency slot.
    pub fn in_flight(&self) -> usize {
        self.shared
            .config
            .max_concurrency
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.shared.permits.available_permits())
    }

    /// While down, every request is answered `503 Service Unavailable` (an outage).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::Relaxed);
    }

    /// While paused, admitted requests wait before being processed, holding their
    /// concurrency slot (a stalled ERP): callers see timeouts and, past the limit, `429`.
    pub fn set_paused(&self, paused: bool) {
        self.shared.paused.send_replace(paused);
    }

    /// Stops accepting connections, lets requests in flight finish, and waits for the server.
    pub async fn shutdown(mut self) -> Result<(), ErpError> {
        // Paused requests would otherwise hold the graceful shutdown forever.
        self.set_paused(false);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(ErpError::Task)?.map_err(ErpError::Server),
            None => Ok(()),
        }
    }
}

impl Drop for ErpHandle {
    fn drop(&mut self) {
        self.set_paused(false);
    }
}
