//! `entrepot-sim`: run a simulated ERP or storefront from the command line.
//!
//! Secrets (the ERP's bearer token, the storefront's webhook secret) are read from
//! environment variables named by flags, never passed as flag values, which `ps` would show.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use entrepot_sim::erp::{self, ErpConfig};
use entrepot_sim::storefront::{RetryPolicy, Storefront, StorefrontConfig, StorefrontReport};
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
    /// Seed of the random faults (CSRF tokens, concurrent edits).
    #[arg(long, default_value_t = 0)]
    seed: u64,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Erp(args) => run_erp(args).await,
        Command::Storefront(args) => run_storefront(args).await,
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
    let value = std::env::var(variable)
        .with_context(|| format!("environment variable {variable} is not set or not UTF-8"))?;
    if value.is_empty() {
        bail!("environment variable {variable} is empty");
    }
    Ok(value)
}

async fn run_erp(args: ErpArgs) -> anyhow::Result<()> {
    let bearer_token = args.token_env.as_deref().map(secret_from_env).transpose()?;
    let idempotency_header = args.idempotency_header.parse().with_context(|| {
        format!(
            "--idempotency-header {:?} is not a header name",
            args.idempotency_header
        )
    })?;
    let config = ErpConfig {
        known_skus: (!args.skus.is_empty()).then(|| args.skus.into_iter().collect::<BTreeSet<_>>()),
        max_concurrency: args.max_concurrency,
        bearer_token,
        latency: args.latency,
        idempotency_header,
        seed: args.seed,
        ..ErpConfig::default()
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
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
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
    config.retry = RetryPolicy {
        max_retries: args.max_retries,
        initial_backoff: args.initial_backoff,
        ..RetryPolicy::default()
    };
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
        bail!(
            "{missing} of {} orders were never acknowledged by {}",
            report.orders_sent,
            args.target
        );
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
            order
                .final_status
                .map_or_else(|| "none".to_owned(), |status| status.to_string()),
        );
    }
}
