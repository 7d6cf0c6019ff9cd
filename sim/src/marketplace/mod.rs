//! A simulated marketplace with an Amazon Selling Partner API (SP-API) surface, and a
//! small Walmart Marketplace flavour ([`walmart`]).
//!
//! It reproduces what a connector must cope with (external-API reference, §5 Amazon and
//! "Behaviours a simulator must reproduce"):
//! - Login with Amazon: `POST /auth/o2/token` with `grant_type=refresh_token`, the client id
//!   and secret; access tokens live one hour and go in `x-amz-access-token`; a call without
//!   a live token is answered `403` in the SP-API error shape `{errors:[{code,message,details}]}`.
//! - One token bucket per operation (rate + burst, [`Operation::default_limit`]), its rate
//!   in `x-amzn-RateLimit-Limit` on every answer, `429 QuotaExceeded` when empty (no
//!   `Retry-After`, as Amazon documents none).
//! - Orders API v0 with opaque `NextToken` pages; `getOrderItems`.
//! - Listings Items API `PATCH` of `fulfillment_availability` quantities, and the
//!   `JSON_LISTINGS_FEED` path (feed document, upload, feed states `IN_QUEUE`,
//!   `IN_PROGRESS`, `DONE`, `FATAL`; 5 feeds per 5 minutes).
//! - `ORDER_CHANGE` notifications posted to an HTTP destination (EventBridge-like), with
//!   seeded duplicates, reordering, drops and delay ([`NotificationConfig`]).
//!
//! Every listing keeps its quantity history with timestamps ([`MarketplaceHandle::listing_history`]),
//! so a scenario can check that a channel never showed more than the WMS could ship.

mod api;
pub(crate) use api::query_pairs;
mod bucket;
mod feeds;
mod notify;
pub mod operation;
pub mod order;
mod sp_error;
mod tokens;
pub mod walmart;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use rand::RngExt;
use serde::Serialize;
use tokio::net::TcpListener;

pub use crate::delivery::{DeliveryReport, Faults};
pub use bucket::Limit;
pub use notify::NotificationConfig;
pub use operation::Operation;
pub use order::{AmazonOrder, AmazonOrderItem, Money};

use crate::server::Server;
use bucket::Bucket;
use feeds::Feeds;
use order::OrderGenerator;
use tokens::TokenStore;

/// How the simulated Amazon marketplace behaves.
#[derive(Clone)]
pub struct MarketplaceConfig {
    /// The LWA client id the token endpoint accepts.
    pub client_id: String,
    /// The LWA client secret. Never logged.
    pub client_secret: String,
    /// The seller's refresh token. Never logged.
    pub refresh_token: String,
    /// The selling partner id in listings paths.
    pub seller_id: String,
    /// The marketplace orders belong to (`ATVPDKIKX0DER` is the US).
    pub marketplace_id: String,
    /// Currency of the orders.
    pub currency: String,
    /// How long an access token lives (LWA: one hour).
    pub token_lifetime: Duration,
    /// The usage plan of each operation; a missing one uses [`Operation::default_limit`].
    pub limits: BTreeMap<Operation, Limit>,
    /// Orders per `getOrders` page when the caller asks for none (SP-API: 100, the maximum).
    pub page_size: usize,
    /// `JSON_LISTINGS_FEED` feeds accepted per [`MarketplaceConfig::feed_window`] (5).
    pub feeds_per_window: usize,
    /// The window of [`MarketplaceConfig::feeds_per_window`] (5 minutes).
    pub feed_window: Duration,
    /// Seed of the order generator.
    pub seed: u64,
    /// Where `ORDER_CHANGE` notifications go; none are sent without it.
    pub notifications: Option<NotificationConfig>,
}

impl Default for MarketplaceConfig {
    fn default() -> Self {
        Self {
            client_id: "amzn1.application-oa2-client.entrepot".to_owned(),
            client_secret: "lwa-client-secret".to_owned(),
            refresh_token: "Atzr|entrepot-refresh-token".to_owned(),
            seller_id: "A2SELLER0ENTREPOT".to_owned(),
            marketplace_id: "ATVPDKIKX0DER".to_owned(),
            currency: "USD".to_owned(),
            token_lifetime: Duration::from_secs(3600),
            limits: BTreeMap::new(),
            page_size: 100,
            feeds_per_window: 5,
            feed_window: Duration::from_secs(300),
            seed: 0,
            notifications: None,
        }
    }
}

impl MarketplaceConfig {
    /// The limit in force for `operation`.
    pub fn limit(&self, operation: Operation) -> Limit {
        self.limits.get(&operation).copied().unwrap_or_else(|| operation.default_limit())
    }
}

// Written by hand so the client secret and refresh token never reach a log line.
impl fmt::Debug for MarketplaceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarketplaceConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("seller_id", &self.seller_id)
            .field("marketplace_id", &self.marketplace_id)
            .field("currency", &self.currency)
            .field("token_lifetime", &self.token_lifetime)
            .field("limits", &self.limits)
            .field("page_size", &self.page_size)
            .field("feeds_per_window", &self.feeds_per_window)
            .field("feed_window", &self.feed_window)
            .field("seed", &self.seed)
            .field("notifications", &self.notifications)
            .finish()
    }
}

/// What changed a listing's quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ListingCause {
    /// Set by the test or demo before the run ([`MarketplaceHandle::set_listing_quantity`]).
    Seeded,
    /// A Listings Items `PATCH`.
    Patch,
    /// A `JSON_LISTINGS_FEED` message.
    Feed,
    /// An order sold units.
    Sale,
}

/// One change of a listing's available quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListingChange {
    /// When the marketplace started showing `quantity`.
    pub at: Timestamp,
    /// The quantity shown from then on.
    pub quantity: i64,
    /// What set it.
    pub cause: ListingCause,
}

/// The quantities a channel shows, each with its history.
#[derive(Debug, Default)]
pub(crate) struct Listings(BTreeMap<String, Vec<ListingChange>>);

impl Listings {
    /// The quantity shown for `sku` now, if listed.
    pub(crate) fn quantity(&self, sku: &str) -> Option<i64> {
        self.0.get(sku).and_then(|history| history.last()).map(|change| change.quantity)
    }

    /// Shows `quantity` for `sku` from now on.
    pub(crate) fn set(&mut self, sku: &str, quantity: i64, cause: ListingCause) {
        self.0.entry(sku.to_owned()).or_default().push(ListingChange { at: Timestamp::now(), quantity, cause });
    }

    pub(crate) fn history(&self, sku: &str) -> Vec<ListingChange> {
        self.0.get(sku).cloned().unwrap_or_default()
    }

    pub(crate) fn skus(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    /// Picks a listed SKU with stock and a quantity of 1 to 3 it can sell, records the
    /// sale, and returns both; `None` when nothing is available.
    pub(crate) fn sell_one(&mut self, rng: &mut impl rand::Rng) -> Option<(String, u32)> {
        let available: Vec<(String, i64)> = self
            .0
            .iter()
            .filter_map(|(sku, history)| {
                let quantity = history.last().map_or(0, |change| change.quantity);
                (quantity > 0).then(|| (sku.clone(), quantity))
            })
            .collect();
        if available.is_empty() {
            return None;
        }
        let (sku, quantity) = available[rng.random_range(0..available.len())].clone();
        let wanted = rng.random_range(1..=3).min(quantity);
        self.set(&sku, quantity - wanted, ListingCause::Sale);
        Some((sku, u32::try_from(wanted).unwrap_or(1)))
    }
}

/// Counts since the marketplace started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarketplaceStats {
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Token requests refused (bad client or refresh token).
    pub token_refusals: u64,
    /// Calls refused with `403` (no, unknown or expired access token).
    pub unauthorized: u64,
    /// Calls refused with `429`, by operation name.
    pub throttled: BTreeMap<&'static str, u64>,
    /// Listings quantity updates applied (patches and feed messages).
    pub listing_updates: u64,
    /// Feeds accepted.
    pub feeds_created: u64,
}

/// Mutable state behind one lock; never held across an await.
struct Market {
    orders: Vec<AmazonOrder>,
    listings: Listings,
    tokens: TokenStore,
    buckets: BTreeMap<Operation, Bucket>,
    feeds: Feeds,
    generator: OrderGenerator,
    stats: MarketplaceStats,
}

impl Market {
    fn quantity(&self, sku: &str) -> Option<i64> {
        self.listings.quantity(sku)
    }

    fn set_quantity(&mut self, sku: &str, quantity: i64, cause: ListingCause) {
        self.listings.set(sku, quantity, cause);
        if matches!(cause, ListingCause::Patch | ListingCause::Feed) {
            self.stats.listing_updates += 1;
        }
    }
}

/// State shared by the handlers and the handle.
struct Shared {
    config: MarketplaceConfig,
    market: Mutex<Market>,
    request_ids: AtomicU64,
}

impl Shared {
    /// Held only for in-memory bookkeeping; a poisoned lock is taken over (a simulator
    /// has no invariant a panic could break that matters more than staying up).
    fn market(&self) -> MutexGuard<'_, Market> {
        self.market.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// Failures starting or stopping a simulated marketplace.
#[derive(Debug, thiserror::Error)]
pub enum MarketplaceError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port or use port 0")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The listener's local address could not be read.
    #[error("cannot read the marketplace listener's local address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// The notification destination is not an http(s) URL, or the client cannot be built.
    #[error("notification destination {destination:?} is not usable: {reason}")]
    Destination {
        /// The configured destination.
        destination: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP server stopped with an error or its task ended abnormally.
    #[error("the simulated marketplace's HTTP server failed: {0}")]
    Server(String),
}

/// A running simulated Amazon marketplace. Dropping the handle stops the server.
pub struct MarketplaceHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    notifier: Option<notify::Notifier>,
    server: Server,
}

impl fmt::Debug for MarketplaceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarketplaceHandle")
            .field("addr", &self.addr)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Binds `addr` (e.g. `"127.0.0.1:0"`) and serves the SP-API surface on it.
pub async fn bind(config: MarketplaceConfig, addr: &str) -> Result<MarketplaceHandle, MarketplaceError> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| MarketplaceError::Bind { addr: addr.to_owned(), source })?;
    serve(config, listener).await
}

/// Serves the SP-API surface on `listener` from a new tokio task.
pub async fn serve(config: MarketplaceConfig, listener: TcpListener) -> Result<MarketplaceHandle, MarketplaceError> {
    let addr = listener.local_addr().map_err(MarketplaceError::LocalAddr)?;
    let notifier = config
        .notifications
        .clone()
        .map(|notifications| notify::Notifier::new(notifications, &config.seller_id))
        .transpose()?;
    let buckets =
        Operation::ALL.into_iter().map(|operation| (operation, Bucket::new(config.limit(operation)))).collect();
    let market = Market {
        orders: Vec::new(),
        listings: Listings::default(),
        tokens: TokenStore::default(),
        buckets,
        feeds: Feeds::default(),
        generator: OrderGenerator::new(config.seed, &config.currency, &config.marketplace_id),
        stats: MarketplaceStats::default(),
    };
    let shared = Arc::new(Shared { config, market: Mutex::new(market), request_ids: AtomicU64::new(1) });
    let server = Server::spawn(listener, api::router(Arc::clone(&shared))).map_err(MarketplaceError::LocalAddr)?;
    tracing::info!(%addr, "simulated Amazon marketplace listening");
    Ok(MarketplaceHandle { addr, shared, notifier, server })
}

impl MarketplaceHandle {
    /// `http://IP:PORT`, the SP-API endpoint (and the LWA token endpoint's host).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://IP:PORT/auth/o2/token`, the LWA token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/auth/o2/token", self.base_url())
    }

    /// The configuration served.
    pub fn config(&self) -> &MarketplaceConfig {
        &self.shared.config
    }

    /// Shows `quantity` for `sku` (the listing exists from now on, so orders can sell it).
    pub fn set_listing_quantity(&self, sku: &str, quantity: i64) {
        self.shared.market().set_quantity(sku, quantity, ListingCause::Seeded);
    }

    /// The quantity the marketplace shows for `sku` now, if it is listed.
    pub fn listing_quantity(&self, sku: &str) -> Option<i64> {
        self.shared.market().quantity(sku)
    }

    /// Every quantity `sku` showed, oldest first, with when and why.
    pub fn listing_history(&self, sku: &str) -> Vec<ListingChange> {
        self.shared.market().listings.history(sku)
    }

    /// Every listed SKU.
    pub fn listed_skus(&self) -> Vec<String> {
        self.shared.market().listings.skus()
    }

    /// Every order, oldest first.
    pub fn orders(&self) -> Vec<AmazonOrder> {
        self.shared.market().orders.clone()
    }

    /// Counts so far.
    pub fn stats(&self) -> MarketplaceStats {
        self.shared.market().stats.clone()
    }

    /// Expires every access token issued so far: the next call with one is answered `403`.
    pub fn expire_access_tokens(&self) {
        self.shared.market().tokens.expire_all();
    }

    /// Empties `operation`'s bucket: calls are throttled until tokens come back.
    pub fn drain_bucket(&self, operation: Operation) {
        if let Some(bucket) = self.shared.market().buckets.get_mut(&operation) {
            bucket.drain();
        }
    }

    /// Places up to `count` seeded orders of one to three units of listed SKUs, never more
    /// than a listing shows (the marketplace stops selling at zero), each reducing the
    /// listing's quantity; then sends their `ORDER_CHANGE` notifications if configured.
    /// Returns the orders placed (fewer than `count` when stock runs out) and the report.
    pub async fn place_orders(&self, count: usize) -> (Vec<AmazonOrder>, DeliveryReport) {
        let placed = {
            let mut market = self.shared.market();
            let mut placed = Vec::new();
            for _ in 0..count {
                let Market { listings, generator, .. } = &mut *market;
                let Some(line) = listings.sell_one(generator.rng()) else {
                    break;
                };
                let order = generator.order(Timestamp::now(), &[line]);
                market.orders.push(order.clone());
                placed.push(order);
            }
            placed
        };
        let report = match &self.notifier {
            Some(notifier) => notifier.send_order_changes(&placed).await,
            None => DeliveryReport::default(),
        };
        (placed, report)
    }

    /// Stops accepting connections and waits for the server.
    pub async fn shutdown(self) -> Result<(), MarketplaceError> {
        self.server.shutdown().await.map_err(MarketplaceError::Server)
    }
}
