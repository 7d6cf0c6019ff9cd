//! A simulated warehouse management system: the source of truth for stock.
//!
//! Stock is kept per (SKU, location) as on hand and reserved, and changes only through
//! movements ([`MovementKind`]: sales reserve, picks ship, receipts and returns add,
//! transfers move, adjustments correct, releases cancel reservations). Movements come from
//! the API (`POST /movements`, e.g. a scenario reserving stock when an order is taken, with
//! idempotency-key replay) and from a seeded generator ([`WmsHandle::generate`]).
//!
//! Every applied movement is published as a signed webhook ([`events`], with seeded
//! duplicates, reordering, drops and delay) and shows in the pollable snapshot
//! `GET /inventory?updatedSince=&cursor=&limit=`, whose records carry a per-SKU version that
//! only goes up. For verification the WMS keeps each SKU's shippable quantity (on hand −
//! reserved) as a history ([`WmsHandle::shippable_history`], [`WmsHandle::shippable_at`]).

mod api;
pub mod events;
mod generator;
pub mod stock;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub use crate::delivery::{DeliveryReport, Faults};
pub use events::WebhookConfig;
pub use stock::{Level, Movement, MovementKind, MovementRequest, Refusal, ShippablePoint};

use crate::server::Server;
use generator::MovementGenerator;
use stock::Stock;

/// How the simulated WMS behaves.
#[derive(Clone)]
pub struct WmsConfig {
    /// When set, API calls must carry `Authorization: Bearer <token>`, else `401`. Never logged.
    pub bearer_token: Option<String>,
    /// Where movement webhooks go; none are sent without it.
    pub webhook: Option<WebhookConfig>,
    /// The SKUs the generator moves.
    pub skus: Vec<String>,
    /// The locations the generator uses; the first is the main warehouse.
    pub locations: Vec<String>,
    /// Seed of the movement generator.
    pub seed: u64,
    /// Records per snapshot page when the caller asks for none (at most 1000).
    pub page_size: usize,
}

impl Default for WmsConfig {
    fn default() -> Self {
        Self {
            bearer_token: None,
            webhook: None,
            skus: ["TSHIRT-BLK-M", "TSHIRT-WHT-L", "HOODIE-GRY-M", "CAP-NVY"].map(str::to_owned).to_vec(),
            locations: ["DC-EAST", "DC-WEST", "STORE-042"].map(str::to_owned).to_vec(),
            seed: 0,
            page_size: 100,
        }
    }
}

// Written by hand so the token and the webhook secret never reach a log line.
impl fmt::Debug for WmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WmsConfig")
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<redacted>"))
            .field("webhook", &self.webhook)
            .field("skus", &self.skus)
            .field("locations", &self.locations)
            .field("seed", &self.seed)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// Failures starting or stopping the simulated WMS.
#[derive(Debug, thiserror::Error)]
pub enum WmsError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port or use port 0")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The configuration cannot work.
    #[error("invalid WMS configuration: {0}")]
    Config(String),
    /// The HTTP server failed or its task ended abnormally.
    #[error("the simulated WMS's HTTP server failed: {0}")]
    Server(String),
}

/// An idempotency key's first answer.
#[derive(Debug, Clone)]
struct Remembered {
    request: MovementRequest,
    answer: Result<Movement, Refusal>,
}

/// State behind one lock; never held across an await.
struct Ledger {
    stock: Stock,
    keys: HashMap<String, Remembered>,
    generator: MovementGenerator,
}

struct Shared {
    config: WmsConfig,
    ledger: Mutex<Ledger>,
    publisher: Option<mpsc::UnboundedSender<events::Job>>,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the webhooks of `movements` (already applied), in order.
    fn publish(&self, ledger: &Ledger, movements: &[Movement]) {
        let (Some(publisher), Some(webhook)) = (&self.publisher, &self.config.webhook) else {
            return;
        };
        let batch = movements
            .iter()
            .map(|movement| {
                let request = &movement.request;
                let levels = ledger
                    .stock
                    .levels()
                    .filter(|level| level.sku == request.sku)
                    .filter(|level| {
                        level.location == request.location || request.to_location.as_deref() == Some(&level.location)
                    })
                    .cloned()
                    .collect();
                events::event(&webhook.secret, movement, levels, ledger.stock.shippable(&request.sku))
            })
            .collect();
        let _ = publisher.send(events::Job::Deliver(batch));
    }

    /// Applies one movement under an optional idempotency key; a replayed key answers the
    /// first outcome (flag `true`), a key reused for another movement is refused.
    fn apply(&self, request: MovementRequest, key: Option<&str>) -> (Result<Movement, Refusal>, bool) {
        let mut ledger = self.ledger();
        if let Some(key) = key
            && let Some(remembered) = ledger.keys.get(key)
        {
            if remembered.request == request {
                return (remembered.answer.clone(), true);
            }
            return (
                Err(Refusal::Invalid {
                    field: "Idempotency-Key",
                    message: format!("{key:?} was first used for another movement; use a new key"),
                }),
                false,
            );
        }
        let answer = ledger.stock.apply(request.clone());
        if let Ok(movement) = &answer {
            self.publish(&ledger, std::slice::from_ref(movement));
        }
        if let Some(key) = key {
            ledger.keys.insert(key.to_owned(), Remembered { request, answer: answer.clone() });
        }
        (answer, false)
    }
}

/// A running simulated WMS. Dropping the handle stops the server.
pub struct WmsHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Server,
}

impl fmt::Debug for WmsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WmsHandle")
            .field("addr", &self.addr)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Binds `addr` (e.g. `"127.0.0.1:0"`) and serves the WMS API on it.
pub async fn bind(config: WmsConfig, addr: &str) -> Result<WmsHandle, WmsError> {
    if config.skus.is_empty() || config.locations.is_empty() {
        return Err(WmsError::Config("skus and locations must each name at least one".to_owned()));
    }
    let publisher = config
        .webhook
        .as_ref()
        .map(|webhook| {
            events::start(webhook)
                .map_err(|reason| WmsError::Config(format!("webhook target {:?}: {reason}", webhook.target)))
        })
        .transpose()?;
    let listener = TcpListener::bind(addr).await.map_err(|source| WmsError::Bind { addr: addr.to_owned(), source })?;
    let local = listener.local_addr().map_err(|error| WmsError::Server(error.to_string()))?;
    let shared = Arc::new(Shared {
        ledger: Mutex::new(Ledger {
            stock: Stock::default(),
            keys: HashMap::new(),
            generator: MovementGenerator::new(config.seed, config.skus.clone(), config.locations.clone()),
        }),
        config,
        publisher,
    });
    let server = Server::spawn(listener, api::router(Arc::clone(&shared)))
        .map_err(|error| WmsError::Server(error.to_string()))?;
    tracing::info!(addr = %local, "simulated WMS listening");
    Ok(WmsHandle { addr: local, shared, server })
}

impl WmsHandle {
    /// `http://IP:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies a movement as the API would (published as a webhook too).
    pub fn apply(&self, request: MovementRequest) -> Result<Movement, Refusal> {
        self.shared.apply(request, None).0
    }

    /// Receives `quantity` of every configured SKU at the first location: opening stock.
    pub fn receive_opening_stock(&self, quantity: i64) -> Result<Vec<Movement>, Refusal> {
        let location = self.shared.config.locations[0].clone();
        self.shared
            .config
            .skus
            .iter()
            .map(|sku| {
                self.apply(MovementRequest {
                    kind: MovementKind::Receipt,
                    sku: sku.clone(),
                    location: location.clone(),
                    to_location: None,
                    quantity,
                    reference: Some("opening-stock".to_owned()),
                })
            })
            .collect()
    }

    /// Applies `count` seeded movements, each possible given the stock at that moment
    /// (a sale never reserves more than is available, a pick never ships more than is
    /// reserved), and publishes them.
    pub fn generate(&self, count: usize) -> Vec<Movement> {
        let mut ledger = self.shared.ledger();
        let mut applied = Vec::with_capacity(count);
        for _ in 0..count {
            let Ledger { stock, generator, .. } = &mut *ledger;
            let request = generator.next(stock);
            // The generator only proposes feasible movements; a refusal would be its bug,
            // and is logged rather than hidden.
            match stock.apply(request) {
                Ok(movement) => applied.push(movement),
                Err(refusal) => tracing::warn!(%refusal, "generated movement refused"),
            }
        }
        self.shared.publish(&ledger, &applied);
        applied
    }

    /// Waits until every webhook queued so far is delivered (or given up), and returns
    /// the report of all deliveries since the start. Empty without a webhook target.
    pub async fn flush_webhooks(&self) -> DeliveryReport {
        let Some(publisher) = &self.shared.publisher else {
            return DeliveryReport::default();
        };
        let (answer, report) = oneshot::channel();
        if publisher.send(events::Job::Flush(answer)).is_err() {
            return DeliveryReport::default();
        }
        report.await.unwrap_or_default()
    }

    /// On hand − reserved over every location of `sku`, now.
    pub fn shippable(&self, sku: &str) -> i64 {
        self.shared.ledger().stock.shippable(sku)
    }

    /// Every shippable quantity `sku` had, oldest first.
    pub fn shippable_history(&self, sku: &str) -> Vec<ShippablePoint> {
        self.shared.ledger().stock.history(sku)
    }

    /// The shippable quantity of `sku` at `at` (0 before its first movement).
    pub fn shippable_at(&self, sku: &str, at: Timestamp) -> i64 {
        self.shippable_history(sku).iter().take_while(|point| point.at <= at).last().map_or(0, |point| point.shippable)
    }

    /// Every (SKU, location) record.
    pub fn levels(&self) -> Vec<Level> {
        self.shared.ledger().stock.levels().cloned().collect()
    }

    /// Every movement applied, in order.
    pub fn movements(&self) -> Vec<Movement> {
        self.shared.ledger().stock.movements().to_vec()
    }

    /// Stops accepting connections and waits for the server.
    pub async fn shutdown(self) -> Result<(), WmsError> {
        self.server.shutdown().await.map_err(WmsError::Server)
    }
}
