//! The `entrepot-sim` command line: run a simulated ERP, storefront, marketplace or WMS.
//! `src/main.rs` calls [`main`]; so does the end-to-end tests' copy of the binary, which
//! the cluster tests run as local processes.
//!
//! Secrets (the ERP's bearer token, the storefront's webhook secret) are read from
//! environment variables named by flags, never passed as flag values, which `ps` would show.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::delivery::Faults;
use crate::erp::dynamics::DynamicsKnobs;
use crate::erp::sap::SapKnobs;
use crate::erp::{self, ErpConfig, NetSuiteKnobs, ThrottleShape};
use crate::marketplace::walmart::{self, WalmartConfig};
use crate::marketplace::{self, MarketplaceConfig, NotificationConfig};
use crate::storefront::{RetryPolicy, Storefront, StorefrontConfig, StorefrontReport};
use crate::wms::{self, WebhookConfig, WmsConfig};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Simulated retail systems for Entrepot's tests and demos.
#[derive(Debug, Parser)]
#[command(name = "entrepot-sim", version)]
struct Cli {
    /// Log line format (logs go to stderr; filter with RUST_LOG).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a sales-order API (NetSuite at /salesOrders, Dynamics 365 at /d365, SAP at /sap)
    /// until Ctrl-C or SIGTERM.
    Erp(ErpArgs),
    /// Send Shopify `orders/create` webhooks to a URL and print what was acknowledged.
    Storefront(StorefrontArgs),
    /// Serve an Amazon SP-API-like (or Walmart-like) marketplace until Ctrl-C or SIGTERM.
    Marketplace(MarketplaceArgs),
    /// Serve a WMS (stock per SKU and location, movement webhooks) until Ctrl-C or SIGTERM.
    Wms(WmsArgs),
}

/// Which marketplace API to serve.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Flavour {
    /// Amazon Selling Partner API.
    Amazon,
    /// Walmart Marketplace API.
    Walmart,
}

/// Seeded faults of pushed events.
#[derive(Debug, Args)]
struct FaultArgs {
    /// Fraction of events delivered twice with the same id.
    #[arg(long, default_value_t = 0.0)]
    duplicate_ratio: f64,
    /// Fraction of events swapped with the next one.
    #[arg(long, default_value_t = 0.0)]
    reorder_ratio: f64,
    /// Fraction of events never delivered.
    #[arg(long, default_value_t = 0.0)]
    drop_ratio: f64,
    /// Wait before each batch of events is delivered, e.g. `2s`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    event_delay: Duration,
}

impl FaultArgs {
    fn faults(&self, seed: u64) -> Faults {
        Faults {
            duplicate_ratio: self.duplicate_ratio,
            reorder_ratio: self.reorder_ratio,
            drop_ratio: self.drop_ratio,
            delay: self.event_delay,
            seed,
        }
    }
}

#[derive(Debug, Args)]
struct MarketplaceArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8083")]
    listen: String,
    /// The API to serve.
    #[arg(long, value_enum, default_value_t = Flavour::Amazon)]
    flavour: Flavour,
    /// The client id the token endpoint accepts.
    #[arg(long)]
    client_id: Option<String>,
    /// Name of the environment variable holding the client secret.
    #[arg(long, value_name = "VAR")]
    client_secret_env: Option<String>,
    /// Name of the environment variable holding the LWA refresh token (Amazon).
    #[arg(long, value_name = "VAR")]
    refresh_token_env: Option<String>,
    /// A listed SKU and the quantity shown, `SKU=QTY` (repeat the flag).
    #[arg(long = "listing", value_name = "SKU=QTY")]
    listings: Vec<String>,
    /// Place one seeded order every interval (e.g. `2s`) until stopped.
    #[arg(long, value_parser = humantime::parse_duration)]
    order_interval: Option<Duration>,
    /// URL `ORDER_CHANGE` notifications are posted to (Amazon).
    #[arg(long)]
    notify_url: Option<String>,
    /// Seed of the order generator and of the event faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    faults: FaultArgs,
}

#[derive(Debug, Args)]
struct WmsArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8084")]
    listen: String,
    /// Name of the environment variable holding the bearer token to require.
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// URL movement webhooks are posted to.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Name of the environment variable holding the webhook signing secret.
    #[arg(long, value_name = "VAR")]
    webhook_secret_env: Option<String>,
    /// A SKU the generator moves (repeat the flag); defaults to a small catalogue.
    #[arg(long = "sku", value_name = "SKU")]
    skus: Vec<String>,
    /// A location (repeat the flag); the first receives the opening stock.
    #[arg(long = "location", value_name = "LOCATION")]
    locations: Vec<String>,
    /// Units of every SKU received at the first location at start.
    #[arg(long, default_value_t = 0)]
    opening_stock: i64,
    /// Apply one seeded movement every interval (e.g. `500ms`) until stopped.
    #[arg(long, value_parser = humantime::parse_duration)]
    movement_interval: Option<Duration>,
    /// Seed of the movement generator and of the event faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    faults: FaultArgs,
}

#[derive(Debug, Args)]
struct ErpArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// A SKU the ERP knows (repeat the flag); without any, every SKU is accepted.
    #[arg(long = "sku", value_name = "SKU")]
    skus: Vec<String>,
    /// Requests allowed in flight at once; more are answered 429.
    #[arg(long, default_value_t = 15)]
    max_concurrency: usize,
    /// Name of the environment variable holding the bearer token to require.
    #[arg(long, value_name = "VAR")]
    token_env: Option<String>,
    /// Processing time of each request, e.g. `50ms`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    latency: Duration,
    /// Request header carrying the idempotency key.
    #[arg(long, default_value = "Idempotency-Key")]
    idempotency_header: String,
    /// Seed of the random faults (CSRF tokens, concurrent edits, lost answers).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share (0 to 1) of conditional writes that meet someone else's edit (ETag conflict).
    #[arg(long, default_value_t = 0.0)]
    concurrent_edit_ratio: f64,
    /// Share (0 to 1) of successful writes answered 504 after the write was made.
    #[arg(long, default_value_t = 0.0)]
    lost_answer_ratio: f64,
    /// NetSuite: job-status reads answered `pending` before a job shows its outcome.
    #[arg(long, default_value_t = 0)]
    async_pending_polls: u32,
    /// NetSuite: refuse requests over the concurrency limit as a RESTlet does
    /// (400 SSS_REQUEST_LIMIT_EXCEEDED) instead of 429.
    #[arg(long)]
    restlet_throttle: bool,
    /// Dynamics 365: requests per user within the sliding window.
    #[arg(long, default_value_t = 6_000)]
    dynamics_requests_per_window: u32,
    /// Dynamics 365: the sliding window, e.g. `5m`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    dynamics_window: Duration,
    /// SAP: writes one CSRF token serves before it expires (default: never).
    #[arg(long)]
    csrf_token_uses: Option<u32>,
}

#[derive(Debug, Args)]
struct StorefrontArgs {
    /// URL the webhooks are posted to.
    #[arg(long)]
    target: String,
    /// Name of the environment variable holding the webhook signing secret.
    #[arg(long, value_name = "VAR")]
    secret_env: String,
    /// Orders to create.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Orders per second.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Fraction of deliveries sent twice with the same webhook id.
    #[arg(long, default_value_t = 0.0)]
    duplicate_ratio: f64,
    /// Fraction of orders that also get a newer `orders/updated` sent before their create.
    #[arg(long, default_value_t = 0.0)]
    out_of_order_ratio: f64,
    /// Fraction of orders whose delivery is held back up to `--max-delay`.
    #[arg(long, default_value_t = 0.0)]
    delay_ratio: f64,
    /// The longest hold of a delayed delivery.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    max_delay: Duration,
    /// Fraction of orders whose delivery is never sent (reconciliation must find them).
    #[arg(long, default_value_t = 0.0)]
    drop_ratio: f64,
    /// Seed of the order generator and of the faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A SKU to sell (repeat the flag); defaults to a small apparel catalogue.
    #[arg(long = "sku", value_name = "SKU")]
    skus: Vec<String>,
    /// `X-Shopify-Shop-Domain`.
    #[arg(long, default_value = "entrepot-demo.myshopify.com")]
    shop_domain: String,
    /// Retries after a failed delivery (Shopify: 8).
    #[arg(long, default_value_t = 8)]
    max_retries: u32,
    /// Wait before the first retry, doubling after each (Shopify: about 1 min).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    initial_backoff: Duration,
    /// When the first order is placed (RFC 3339); defaults to now.
    #[arg(long)]
    start: Option<jiff::Timestamp>,
    /// Print the full report as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Erp(args) => run_erp(args).await,
        Command::Storefront(args) => run_storefront(args).await,
        Command::Marketplace(args) => run_marketplace(args).await,
        Command::Wms(args) => run_wms(args).await,
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; they garble captured test logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Reads a secret from the environment; the error names the variable, never a value.
fn secret_from_env(variable: &str) -> anyhow::Result<String> {
    let value =
        std::env::var(variable).with_context(|| format!("environment variable {variable} is not set or not UTF-8"))?;
    if value.is_empty() {
        bail!("environment variable {variable} is empty");
    }
    Ok(value)
}

async fn run_erp(args: ErpArgs) -> anyhow::Result<()> {
    let bearer_token = args.token_env.as_deref().map(secret_from_env).transpose()?;
    let idempotency_header = args
        .idempotency_header
        .parse()
        .with_context(|| format!("--idempotency-header {:?} is not a header name", args.idempotency_header))?;
    let config = ErpConfig {
        known_skus: (!args.skus.is_empty()).then(|| args.skus.into_iter().collect::<BTreeSet<_>>()),
        max_concurrency: args.max_concurrency,
        bearer_token,
        latency: args.latency,
        idempotency_header,
        seed: args.seed,
        concurrent_edit_ratio: args.concurrent_edit_ratio,
        lost_answer_ratio: args.lost_answer_ratio,
        netsuite: NetSuiteKnobs {
            async_pending_polls: args.async_pending_polls,
            throttle_shape: if args.restlet_throttle {
                ThrottleShape::RestletRequestLimit
            } else {
                ThrottleShape::TooManyRequests
            },
        },
        dynamics: DynamicsKnobs {
            requests_per_window: args.dynamics_requests_per_window,
            window: args.dynamics_window,
            ..DynamicsKnobs::default()
        },
        sap: SapKnobs { csrf_token_uses: args.csrf_token_uses, ..SapKnobs::default() },
    };
    tracing::info!(
        listen = args.listen,
        known_skus = config.known_skus.as_ref().map(BTreeSet::len),
        max_concurrency = config.max_concurrency,
        auth = config.bearer_token.is_some(),
        latency_ms = config.latency.as_millis() as u64,
        "starting simulated ERP"
    );
    let erp = erp::bind(config, &args.listen).await?;
    shutdown_signal().await?;
    let stats = erp.stats();
    tracing::info!(
        created = stats.created,
        updated = stats.updated,
        idempotent_replays = stats.idempotent_replays,
        rejected_business = stats.rejected_business,
        throttled = stats.throttled,
        unauthorized = stats.unauthorized,
        "stopping simulated ERP"
    );
    erp.shutdown().await?;
    Ok(())
}

/// Ctrl-C, or SIGTERM as sent by a container runtime or a test harness.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.context("cannot watch Ctrl-C")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("cannot watch Ctrl-C")?;
    Ok(())
}

async fn run_storefront(args: StorefrontArgs) -> anyhow::Result<()> {
    let secret = secret_from_env(&args.secret_env)?;
    let mut config = StorefrontConfig::new(&args.target, secret);
    config.shop_domain = args.shop_domain;
    config.seed = args.seed;
    config.duplicate_ratio = args.duplicate_ratio;
    config.out_of_order_ratio = args.out_of_order_ratio;
    config.delay_ratio = args.delay_ratio;
    config.max_delay = args.max_delay;
    config.drop_ratio = args.drop_ratio;
    config.start = args.start.unwrap_or_else(jiff::Timestamp::now);
    if !args.skus.is_empty() {
        config.skus = args.skus;
    }
    config.retry =
        RetryPolicy { max_retries: args.max_retries, initial_backoff: args.initial_backoff, ..RetryPolicy::default() };
    let mut storefront = Storefront::new(config)?;
    let report = storefront.run(args.count, args.rate).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    // Dropped deliveries were never sent: not the receiver's failure.
    let missing = report.orders_sent - report.acknowledged - report.dropped;
    if missing > 0 {
        bail!("{missing} of {} orders were never acknowledged by {}", report.orders_sent, args.target);
    }
    Ok(())
}

fn print_summary(report: &StorefrontReport) {
    println!("orders sent:          {}", report.orders_sent);
    println!("acknowledged:         {}", report.acknowledged);
    println!("duplicate deliveries: {}", report.duplicate_deliveries);
    println!("dropped (never sent): {}", report.dropped);
    println!("out of order:         {}", report.out_of_order);
    println!("delayed:              {}", report.delayed);
    println!("HTTP attempts:        {}", report.attempts);
    for order in report.unacknowledged().filter(|order| !order.dropped) {
        println!(
            "not acknowledged:     {} (id {}, webhook {}, last status {})",
            order.name,
            order.order_id,
            order.webhook_id,
            order.final_status.map_or_else(|| "none".to_owned(), |status| status.to_string()),
        );
    }
}

fn parse_listing(listing: &str) -> anyhow::Result<(String, i64)> {
    let (sku, quantity) = listing.split_once('=').with_context(|| format!("--listing {listing:?} must be SKU=QTY"))?;
    let quantity =
        quantity.parse().with_context(|| format!("--listing {listing:?}: {quantity:?} is not a whole number"))?;
    Ok((sku.to_owned(), quantity))
}

/// Runs `tick` every `interval` (when given) until Ctrl-C or SIGTERM.
async fn run_until_stopped(interval: Option<Duration>, mut tick: impl AsyncFnMut()) -> anyhow::Result<()> {
    let Some(interval) = interval else {
        return shutdown_signal().await;
    };
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            stopped = &mut stop => return stopped,
            _ = ticker.tick() => tick().await,
        }
    }
}

async fn run_marketplace(args: MarketplaceArgs) -> anyhow::Result<()> {
    let listings = args.listings.iter().map(|listing| parse_listing(listing)).collect::<anyhow::Result<Vec<_>>>()?;
    let client_secret = args.client_secret_env.as_deref().map(secret_from_env).transpose()?;
    match args.flavour {
        Flavour::Amazon => {
            let mut config = MarketplaceConfig { seed: args.seed, ..MarketplaceConfig::default() };
            if let Some(client_id) = args.client_id {
                config.client_id = client_id;
            }
            if let Some(secret) = client_secret {
                config.client_secret = secret;
            }
            if let Some(refresh_token) = args.refresh_token_env.as_deref().map(secret_from_env).transpose()? {
                config.refresh_token = refresh_token;
            }
            config.notifications = args.notify_url.map(|url| {
                let mut notifications = NotificationConfig::new(url);
                notifications.faults = args.faults.faults(args.seed);
                notifications
            });
            tracing::info!(listen = args.listen, ?config, "starting simulated Amazon marketplace");
            let market = marketplace::bind(config, &args.listen).await?;
            for (sku, quantity) in &listings {
                market.set_listing_quantity(sku, *quantity);
            }
            run_until_stopped(args.order_interval, async || {
                let (orders, report) = market.place_orders(1).await;
                tracing::info!(placed = orders.len(), notified = report.acknowledged, "order tick");
            })
            .await?;
            tracing::info!(stats = ?market.stats(), "stopping simulated Amazon marketplace");
            market.shutdown().await?;
        }
        Flavour::Walmart => {
            let mut config = WalmartConfig { seed: args.seed, ..WalmartConfig::default() };
            if let Some(client_id) = args.client_id {
                config.client_id = client_id;
            }
            if let Some(secret) = client_secret {
                config.client_secret = secret;
            }
            tracing::info!(listen = args.listen, ?config, "starting simulated Walmart marketplace");
            let walmart = walmart::bind(config, &args.listen).await?;
            for (sku, quantity) in &listings {
                walmart.set_inventory(sku, *quantity);
            }
            run_until_stopped(args.order_interval, async || {
                let placed = walmart.place_orders(1);
                tracing::info!(placed = placed.len(), "order tick");
            })
            .await?;
            tracing::info!(stats = ?walmart.stats(), "stopping simulated Walmart marketplace");
        }
    }
    Ok(())
}

async fn run_wms(args: WmsArgs) -> anyhow::Result<()> {
    let mut config = WmsConfig {
        bearer_token: args.token_env.as_deref().map(secret_from_env).transpose()?,
        seed: args.seed,
        ..WmsConfig::default()
    };
    if !args.skus.is_empty() {
        config.skus = args.skus;
    }
    if !args.locations.is_empty() {
        config.locations = args.locations;
    }
    config.webhook = match (args.webhook_url, args.webhook_secret_env) {
        (Some(url), Some(variable)) => {
            let mut webhook = WebhookConfig::new(url, secret_from_env(&variable)?);
            webhook.faults = args.faults.faults(args.seed);
            Some(webhook)
        }
        (None, None) => None,
        _ => bail!("--webhook-url and --webhook-secret-env go together: webhooks are always signed"),
    };
    tracing::info!(listen = args.listen, ?config, "starting simulated WMS");
    let wms = wms::bind(config, &args.listen).await?;
    if args.opening_stock > 0 {
        wms.receive_opening_stock(args.opening_stock)?;
    }
    run_until_stopped(args.movement_interval, async || {
        let movements = wms.generate(1);
        tracing::info!(applied = movements.len(), "movement tick");
    })
    .await?;
    let report = wms.flush_webhooks().await;
    tracing::info!(
        deliveries = report.deliveries,
        acknowledged = report.acknowledged,
        dropped = report.dropped.len(),
        "stopping simulated WMS"
    );
    wms.shutdown().await?;
    Ok(())
}
