//! A simulated ERP with a NetSuite-like REST sales-order API.
//!
//! It reproduces the behaviours a connector must cope with (see the external-API reference,
//! §7 NetSuite): `204` + `Location` on create, upsert by external id, idempotency keys whose
//! replay returns the original answer, business rejections naming the field and value, and a
//! concurrency limit whose excess requests are refused with `429` rather than queued.
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
pub mod error_body;
mod ledger;
pub mod sales_order;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::HeaderName;
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
    /// The request header carrying the idempotency key.
    pub idempotency_header: HeaderName,
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
        }
    }
}

// Written by hand so the bearer token never reaches a log line.
impl fmt::Debug for ErpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErpConfig")
            .field("known_skus", &self.known_skus)
            .field("max_concurrency", &self.max_concurrency)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("latency", &self.latency)
            .field("idempotency_header", &self.idempotency_header)
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
            Outcome::NotFound | Outcome::Unsupported | Outcome::Read => return,
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
}

impl Shared {
    fn new(config: ErpConfig) -> Self {
        Self {
            // Semaphore::new panics above MAX_PERMITS; no real limit comes near it.
            permits: Arc::new(Semaphore::new(
                config.max_concurrency.min(Semaphore::MAX_PERMITS),
            )),
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
    Ok(ErpHandle {
        addr,
        shared,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Binds `addr` (e.g. `"127.0.0.1:0"` for a free port) and serves the ERP API on it.
pub async fn bind(config: ErpConfig, addr: &str) -> Result<ErpHandle, ErpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ErpError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
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

    /// Every stored sales order, by internal id.
    pub fn orders(&self) -> Vec<StoredOrder> {
        self.shared.ledger().orders()
    }

    /// The stored sales order with this external id, if any.
    pub fn order_by_external_id(&self, external_id: &str) -> Option<StoredOrder> {
        self.shared
            .ledger()
            .orders()
            .into_iter()
            .find(|order| order.external_id == external_id)
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
            Some(task) => task
                .await
                .map_err(ErpError::Task)?
                .map_err(ErpError::Server),
            None => Ok(()),
        }
    }
}

impl Drop for ErpHandle {
    fn drop(&mut self) {
        self.set_paused(false);
    }
}
