//! A simulated Shopify storefront: realistic orders, delivered as signed webhooks, and
//! listed by its REST Admin API ([`AdminApi`]).
//!
//! It reproduces what a webhook receiver must cope with (see the external-API reference,
//! §1 Shopify and "Behaviours a simulator must reproduce"): HMAC signatures over the raw
//! body, 1 s connect / 5 s total timeouts, retries of the same delivery with exponential
//! backoff, and duplicate deliveries carrying the same webhook id.
//!
//! ```no_run
//! # async fn demo() -> Result<(), entrepot_sim::storefront::StorefrontError> {
//! use entrepot_sim::storefront::{Storefront, StorefrontConfig};
//! let mut config = StorefrontConfig::new("http://127.0.0.1:8080/webhooks/shopify", "shpss_secret");
//! config.duplicate_ratio = 0.1;
//! let mut storefront = Storefront::new(config)?;
//! let report = storefront.run(100, 20.0).await?;
//! println!("{} of {} orders acknowledged", report.acknowledged, report.orders_sent);
//! # Ok(()) }
//! ```

pub mod admin_api;
mod admin_store;
pub mod bigcommerce;
pub mod bucket;
pub mod catalog;
pub mod faults;
pub mod generator;
pub mod graphql;
pub mod inventory;
pub mod order;
pub mod sender;
mod shopper;
mod traffic;
pub mod webhook;

#[cfg(test)]
mod admin_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use axum::http::StatusCode;
use jiff::Timestamp;
use jiff::tz::Offset;

pub use admin_api::{AdminApi, AdminApiConfig};
pub use admin_store::Refund;
pub use bucket::BucketConfig;
pub use faults::{FaultDraw, WebhookFaults};
pub use generator::OrderGenerator;
pub use inventory::{InventoryLevel, LevelChange};
pub use order::Order;
pub use sender::{DeliveryOutcome, RetryPolicy, SendError, Sendable, WebhookSender};
pub use traffic::{OrderReport, StorefrontReport};
pub use webhook::{Delivery, Topic, WebhookSigner};

/// Serves `app` on `listener` in the background until the returned sender is dropped.
fn spawn_server(listener: tokio::net::TcpListener, app: axum::Router) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    stop
}

/// How the simulated storefront behaves.
#[derive(Clone)]
pub struct StorefrontConfig {
    /// Where webhooks are posted (the runner's webhook source).
    pub target: String,
    /// The app's shared secret that signs webhooks. Never logged.
    pub secret: String,
    /// `X-Shopify-Shop-Domain`.
    pub shop_domain: String,
    /// `X-Shopify-API-Version`.
    pub api_version: String,
    /// The SKUs orders are made of.
    pub skus: Vec<String>,
    /// Shop currency.
    pub currency: String,
    /// Seed of the order generator (and of which deliveries are duplicated).
    pub seed: u64,
    /// Fraction of orders, 0 to 1, whose delivery is sent a second time with the same
    /// webhook id after the first one finished, as Shopify sometimes does.
    pub duplicate_ratio: f64,
    /// Fraction of orders, 0 to 1, that also get a newer `orders/updated` delivery which is
    /// sent before their `orders/create` (see [`WebhookFaults::out_of_order_ratio`]).
    pub out_of_order_ratio: f64,
    /// Fraction of orders, 0 to 1, whose delivery is held back up to `max_delay`.
    pub delay_ratio: f64,
    /// The longest hold of a delayed delivery.
    pub max_delay: Duration,
    /// Fraction of orders, 0 to 1, whose delivery is never sent (found only by
    /// reconciliation against the Admin API the storefront records into).
    pub drop_ratio: f64,
    /// Time to establish a connection (Shopify: 1 s).
    pub connect_timeout: Duration,
    /// Time for a whole attempt (Shopify: 5 s).
    pub request_timeout: Duration,
    /// How failed deliveries are retried.
    pub retry: RetryPolicy,
    /// When the first order is placed; later ones follow at random intervals.
    pub start: Timestamp,
    /// The shop's UTC offset, used in the orders' timestamps.
    pub utc_offset: Offset,
}

impl StorefrontConfig {
    /// Shopify's behaviour, posting to `target` and signing with `secret`.
    pub fn new(target: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            secret: secret.into(),
            shop_domain: "entrepot-demo.myshopify.com".to_owned(),
            api_version: "2026-10".to_owned(),
            skus: catalog::DEFAULT_SKUS.map(str::to_owned).to_vec(),
            currency: "USD".to_owned(),
            seed: 0,
            duplicate_ratio: 0.0,
            out_of_order_ratio: 0.0,
            delay_ratio: 0.0,
            max_delay: Duration::from_secs(2),
            drop_ratio: 0.0,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            start: generator::DEFAULT_START,
            utc_offset: Offset::constant(-5),
        }
    }
}

// Written by hand so the secret never reaches a log line.
impl fmt::Debug for StorefrontConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorefrontConfig")
            .field("target", &self.target)
            .field("secret", &"<redacted>")
            .field("shop_domain", &self.shop_domain)
            .field("api_version", &self.api_version)
            .field("skus", &self.skus)
            .field("currency", &self.currency)
            .field("seed", &self.seed)
            .field("duplicate_ratio", &self.duplicate_ratio)
            .field("out_of_order_ratio", &self.out_of_order_ratio)
            .field("delay_ratio", &self.delay_ratio)
            .field("max_delay", &self.max_delay)
            .field("drop_ratio", &self.drop_ratio)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .field("start", &self.start)
            .field("utc_offset", &self.utc_offset)
            .finish()
    }
}

/// A storefront configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum StorefrontError {
    /// `skus` is empty.
    #[error("the storefront catalogue is empty: configure at least one SKU")]
    EmptyCatalogue,
    /// `target` is not an http(s) URL.
    #[error("webhook target {target:?} is not usable: {reason}")]
    InvalidTarget {
        /// The configured target.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value sent as a header contains characters headers cannot carry.
    #[error("{field} {value:?} cannot be sent as an HTTP header value")]
    InvalidHeaderValue {
        /// The configuration field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// `duplicate_ratio` is outside 0..=1.
    #[error("duplicate_ratio {0} must be between 0 and 1")]
    InvalidDuplicateRatio(f64),
    /// Another fault ratio is outside 0..=1.
    #[error("{name} {ratio} must be between 0 and 1")]
    InvalidRatio {
        /// The configuration field.
        name: &'static str,
        /// Its value.
        ratio: f64,
    },
    /// The send rate is not a positive number.
    #[error("the send rate {0} must be a positive number of orders per second")]
    InvalidRate(f64),
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A simulated Shopify store: makes orders and delivers them as webhooks.
#[derive(Debug)]
pub struct Storefront {
    generator: OrderGenerator,
    signer: WebhookSigner,
    sender: WebhookSender,
    faults: WebhookFaults,
    /// Kept apart from the generator's so the ratios do not change the orders a seed makes.
    dice: faults::FaultDice,
    /// Where placed orders are recorded (the Admin API reconciliation reads).
    store: Option<std::sync::Arc<admin_store::Shared>>,
    /// Decides whether a buyer can check an order out (stock shown); see
    /// [`Storefront::set_checkout`].
    checkout: Option<Checkout>,
}

/// A checkout rule: `true` when the order can be taken.
#[derive(Clone)]
pub struct Checkout(pub std::sync::Arc<dyn Fn(&Order) -> bool + Send + Sync>);

impl fmt::Debug for Checkout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Checkout(..)")
    }
}

impl Storefront {
    /// A storefront as configured; fails on an unusable configuration.
    pub fn new(config: StorefrontConfig) -> Result<Self, StorefrontError> {
        if !(0.0..=1.0).contains(&config.duplicate_ratio) {
            return Err(StorefrontError::InvalidDuplicateRatio(config.duplicate_ratio));
        }
        let faults = WebhookFaults {
            duplicate_ratio: config.duplicate_ratio,
            out_of_order_ratio: config.out_of_order_ratio,
            delay_ratio: config.delay_ratio,
            max_delay: config.max_delay,
            drop_ratio: config.drop_ratio,
        };
        faults.check()?;
        let generator = OrderGenerator::new(config.seed, config.skus)
            .ok_or(StorefrontError::EmptyCatalogue)?
            .with_currency(config.currency)
            .starting_at(config.start, config.utc_offset);
        let signer = WebhookSigner::new(config.secret, &config.shop_domain, &config.api_version)?;
        let sender = WebhookSender::new(&config.target, config.connect_timeout, config.request_timeout, config.retry)?;
        Ok(Self {
            generator,
            signer,
            sender,
            faults,
            dice: faults::FaultDice::new(config.seed),
            store: None,
            checkout: None,
        })
    }

    /// Records every order [`Storefront::run`] places (its latest revision) into `api`,
    /// delivered or not, so the Admin API holds what the webhooks should have carried.
    pub fn record_into(&mut self, api: &AdminApi) {
        self.store = Some(api.shared());
    }

    /// Makes [`Storefront::run`] place only the orders `checkout` accepts (say, those the
    /// stock the store shows can fill); the others are counted as sold out.
    pub fn set_checkout(&mut self, checkout: Checkout) {
        self.checkout = Some(checkout);
    }

    /// The next order from the catalogue.
    pub fn next_order(&mut self) -> Order {
        self.generator.next_order()
    }

    /// The next order, with one line for `sku`, known to the catalogue or not.
    pub fn order_with_sku(&mut self, sku: &str) -> Order {
        self.generator.order_with_sku(sku)
    }

    /// The order generator, for orders of a particular shape.
    pub fn generator_mut(&mut self) -> &mut OrderGenerator {
        &mut self.generator
    }

    /// A new signed delivery of `order` under `topic`.
    pub fn delivery(&self, order: &Order, topic: Topic) -> Delivery {
        self.signer.delivery(order, topic)
    }

    /// The signer, for deliveries of custom bodies.
    pub fn signer(&self) -> &WebhookSigner {
        &self.signer
    }

    /// The sender, to share with other tasks.
    pub fn sender(&self) -> &WebhookSender {
        &self.sender
    }

    /// One attempt at delivering; see [`WebhookSender::send`].
    pub async fn send(&self, delivery: &Delivery) -> Result<StatusCode, SendError> {
        self.sender.send(delivery).await
    }

    /// Delivers with Shopify's retries; see [`WebhookSender::send_with_retries`].
    pub async fn send_with_retries(&self, delivery: &Delivery) -> DeliveryOutcome {
        self.sender.send_with_retries(delivery).await
    }
}
