//! `entrepot-demo` (the quickstart scenario): the quickstart (embedded in the binary) against a simulated
//! Shopify-like storefront and a NetSuite-like ERP, all in this process, over real HTTP
//! on loopback. It sends a burst of orders with duplicate deliveries, a re-sent order
//! revision and an order with an unknown SKU, takes the ERP down for a moment, and ends
//! with a report that it checks: every acknowledged order in the ERP exactly once.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::embedded::{load_embedded, secret_of};
use anyhow::{Context, Result};
use entrepot::cli::resolve;
use entrepot::{
    manifest::Manifests,
    queue::{DeadLetterEntry, DeadLetterFilter, now_ms},
    runtime::Runtime,
    secrets::Secrets,
};
use entrepot_sim::{
    erp::{self, ErpConfig, ErpHandle},
    storefront::{Storefront, StorefrontConfig, StorefrontReport, Topic, catalog::DEFAULT_SKUS},
};
use tokio::{net::TcpListener, sync::watch};

/// The quickstart, as committed in `examples/quickstart/`.
const QUICKSTART: [(&str, &str); 4] = [
    ("connectors.yaml", include_str!("../../examples/quickstart/connectors.yaml")),
    ("mappings.yaml", include_str!("../../examples/quickstart/mappings.yaml")),
    ("secrets.yaml", include_str!("../../examples/quickstart/secrets.yaml")),
    ("syncflow.yaml", include_str!("../../examples/quickstart/syncflow.yaml")),
];
const FLOW: &str = "shopify-orders-to-erp";
const ERP_CONNECTOR: &str = "erp-demo";
const UNKNOWN_SKU: &str = "DISCONTINUED-HAT";

/// The demo's scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// The quickstart: storefront orders to an ERP, with duplicates and a short outage.
    Quickstart,
    /// The busiest day of the year: storefront and marketplace orders to the ERP, WMS
    /// stock to both channels, faults everywhere (examples/peak-day).
    PeakDay,
}

/// Options of the demo.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Which scenario runs.
    #[arg(long, value_enum, default_value = "quickstart")]
    scenario: Scenario,
    /// Orders the storefront takes (quickstart).
    #[arg(long, default_value_t = 40)]
    orders: usize,
    /// Orders per second (quickstart).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Share of deliveries sent twice with the same id. Default: 0.2 (quickstart), 0.05
    /// (peak-day).
    #[arg(long)]
    duplicate_ratio: Option<f64>,
    /// How long the ERP is down in the middle of the burst. Default: 2s (quickstart), 60s
    /// (peak-day).
    #[arg(long, value_parser = humantime::parse_duration)]
    outage: Option<Duration>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the runner's queue lives (default: a fresh temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Orders the storefront's shoppers try to place (peak-day).
    #[arg(long, default_value_t = crate::peak_day::Params::default().storefront_orders)]
    storefront_orders: usize,
    /// Orders the marketplace's buyers try to place (peak-day).
    #[arg(long, default_value_t = crate::peak_day::Params::default().marketplace_orders)]
    marketplace_orders: usize,
    /// How long the order burst lasts (peak-day).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    burst: Duration,
    /// Requests the ERP serves at once; more are answered 429 (peak-day).
    #[arg(long, default_value_t = crate::peak_day::Params::default().erp_concurrency)]
    erp_concurrency: usize,
    /// Units of each SKU received before the burst (peak-day).
    #[arg(long, default_value_t = crate::peak_day::Params::default().opening_stock)]
    opening_stock: i64,
    /// Sales at the store's tills during the burst (peak-day).
    #[arg(long, default_value_t = crate::peak_day::Params::default().pos_sales)]
    pos_sales: usize,
    /// Share of orders whose newer revision is delivered first (peak-day).
    #[arg(long, default_value_t = crate::peak_day::Params::default().out_of_order_ratio)]
    out_of_order_ratio: f64,
}

/// Runs the chosen scenario; the exit code says whether its own checks passed.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    match args.scenario {
        Scenario::Quickstart => quickstart(args).await,
        Scenario::PeakDay => {
            let defaults = crate::peak_day::Params::default();
            crate::peak_day::run(crate::peak_day::Params {
                storefront_orders: args.storefront_orders,
                marketplace_orders: args.marketplace_orders,
                burst: args.burst,
                outage: args.outage.unwrap_or(defaults.outage),
                erp_concurrency: args.erp_concurrency,
                opening_stock: args.opening_stock,
                pos_sales: args.pos_sales,
                duplicate_ratio: args.duplicate_ratio.unwrap_or(defaults.duplicate_ratio),
                out_of_order_ratio: args.out_of_order_ratio,
                seed: args.seed,
                data_dir: args.data_dir,
            })
            .await
        }
    }
}

async fn quickstart(args: DemoArgs) -> Result<ExitCode> {
    let outage = args.outage.unwrap_or(Duration::from_secs(2));
    let duplicate_ratio = args.duplicate_ratio.unwrap_or(0.2);
    let started = Instant::now();
    let erp = Arc::new(
        erp::bind(
            ErpConfig {
                known_skus: Some(DEFAULT_SKUS.iter().map(|s| s.to_string()).collect()),
                bearer_token: Some(quickstart_secret(&load_quickstart()?, "erp-demo", "token")?),
                latency: Duration::from_millis(15),
                ..ErpConfig::default()
            },
            "127.0.0.1:0",
        )
        .await?,
    );

    let manifests = load_quickstart()?;
    let mut config = resolve(&manifests)?;
    for flow in &mut config.flows {
        if let Some(c) = flow.connectors.get_mut(ERP_CONNECTOR) {
            c.endpoint = Some(erp.base_url());
        }
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("entrepot-demo-{}", std::process::id())));
    let fresh_dir = args.data_dir.is_none();
    let rt = Runtime::new(config, &Secrets::with_manifests(manifests.secrets.clone()), &data_dir)?;
    let webhooks = TcpListener::bind("127.0.0.1:0").await?;
    let admin = TcpListener::bind("127.0.0.1:0").await?;
    let webhook_url = format!("http://{}/webhooks/{FLOW}", webhooks.local_addr()?);
    let admin_addr = admin.local_addr()?;
    let (stop, shutdown) = watch::channel(false);
    let server = tokio::spawn(entrepot::runtime::serve(rt.clone(), webhooks, admin, shutdown));

    println!("Entrepot demo: Shopify-like storefront → runner (examples/quickstart) → NetSuite-like ERP");
    println!("  runner webhooks {webhook_url}");
    println!("  runner admin    http://{admin_addr}  (/metrics, /v1/status, /v1/deadletters)");
    println!("  ERP             {}\n", erp.base_url());

    let secret = quickstart_secret(&manifests, "shopify-demo", "client-secret")?;
    let mut store_config = StorefrontConfig::new(webhook_url, secret);
    store_config.seed = args.seed;
    store_config.duplicate_ratio = duplicate_ratio;
    store_config.retry.initial_backoff = Duration::from_millis(250);
    store_config.retry.max_backoff = Duration::from_secs(2);
    store_config.start = jiff::Timestamp::now();
    let mut storefront = Storefront::new(store_config).context("storefront")?;

    // The burst, with the ERP going down and coming back in the middle of it.
    let burst = Duration::from_secs_f64(args.orders as f64 / args.rate.max(0.1));
    let outage = tokio::spawn(erp_outage(erp.clone(), burst / 3, outage));
    let progress = tokio::spawn(show_progress(rt.clone(), erp.clone(), args.orders));
    let mut report = storefront.run(args.orders, args.rate).await.context("storefront")?;

    // A few order revisions delivered again under new webhook ids (Shopify sends
    // orders/updated when nothing the ERP cares about changed): the idempotency key
    // (order id + updated_at) drops them.
    let mut extra_sent = 0;
    let mut revision_resent = 0;
    for order in report.orders.iter().filter(|o| o.acknowledged).take(3) {
        let delivery = storefront.signer().delivery_with_body(Topic::OrdersUpdated, order.body.clone());
        if storefront.send_with_retries(&delivery).await.acknowledged() {
            revision_resent += 1;
        }
        extra_sent += 1;
    }
    let bad = storefront.order_with_sku(UNKNOWN_SKU);
    let bad_delivery = storefront.delivery(&bad, Topic::OrdersCreate);
    let bad_acked = storefront.send_with_retries(&bad_delivery).await.acknowledged();
    extra_sent += 1;
    let _ = outage.await;

    // Wait for the runner to drain.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = rt.status().await?;
        if status.flows.iter().all(|f| f.pending == 0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.abort();
    let _ = progress.await;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }

    let status = rt.status().await?.flows.into_iter().find(|f| f.name == FLOW).context("flow status")?;
    let letters = dead_letters(&rt).await?;
    let _ = stop.send(true);
    let _ = server.await;
    if fresh_dir {
        let _ = std::fs::remove_dir_all(&data_dir);
    }

    let verdict = check(&report, bad.id, bad_acked, &erp, &letters);
    report.orders_sent += 1; // the unknown-SKU order
    print_report(&report, extra_sent, revision_resent, &status, &erp, &letters, started.elapsed());
    match verdict {
        Ok(()) => {
            println!("\nOK: every acknowledged order is in the ERP exactly once, or dead-lettered with its reason.");
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            println!("\nFAILED: {problem}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn load_quickstart() -> Result<Manifests> {
    load_embedded("examples/quickstart", &QUICKSTART)
}

fn quickstart_secret(manifests: &Manifests, name: &str, key: &str) -> Result<String> {
    secret_of(manifests, "examples/quickstart", name, key)
}

async fn erp_outage(erp: Arc<ErpHandle>, after: Duration, length: Duration) {
    if length.is_zero() {
        return;
    }
    tokio::time::sleep(after).await;
    erp.set_down(true);
    tokio::time::sleep(length).await;
    erp.set_down(false);
}

async fn show_progress(rt: Arc<Runtime>, erp: Arc<ErpHandle>, orders: usize) {
    let terminal = std::io::stderr().is_terminal();
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(if terminal { 200 } else { 1000 })).await;
        let Ok(status) = rt.status().await else { continue };
        let Some(f) = status.flows.first() else { continue };
        let line = format!(
            "  {:>5.1}s  storefront orders {orders}  runner accepted {:>3}  queued {:>3}  in ERP {:>3}  retried {:>3}  dead letters {}",
            start.elapsed().as_secs_f64(),
            f.received,
            f.pending,
            erp.orders().len(),
            f.targets.iter().map(|t| t.retried).sum::<u64>(),
            f.dead_lettered,
        );
        if terminal {
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }
}

async fn dead_letters(rt: &Runtime) -> Result<Vec<DeadLetterEntry>> {
    let queue = rt.queue.clone();
    let filter = DeadLetterFilter { flow: Some(FLOW.into()), ..DeadLetterFilter::default() };
    Ok(tokio::task::spawn_blocking(move || queue.find_dead_letters(&filter)).await??.entries)
}

/// Every acknowledged order is stored once, except the unknown-SKU one, which is a dead letter.
fn check(
    report: &StorefrontReport,
    bad_id: u64,
    bad_acked: bool,
    erp: &ErpHandle,
    letters: &[DeadLetterEntry],
) -> Result<(), String> {
    let stored = erp.orders();
    for order in report.orders.iter().filter(|o| o.acknowledged) {
        let id = format!("shopify:{}", order.order_id);
        let copies = stored.iter().filter(|s| s.external_id == id).count();
        if copies != 1 {
            return Err(format!("order {} ({id}) is in the ERP {copies} times", order.name));
        }
    }
    if erp.stats().created as usize != stored.len() {
        return Err(format!("the ERP created {} records for {} orders", erp.stats().created, stored.len()));
    }
    let bad_letter =
        letters.iter().any(|l| String::from_utf8_lossy(&l.dead_letter.envelope.payload).contains(UNKNOWN_SKU));
    if bad_acked && !bad_letter {
        return Err(format!("order {bad_id} with unknown SKU {UNKNOWN_SKU} is not a dead letter"));
    }
    Ok(())
}

fn print_report(
    report: &StorefrontReport,
    extra_sent: usize,
    revision_resent: usize,
    status: &entrepot_api::status::FlowStatus,
    erp: &ErpHandle,
    letters: &[DeadLetterEntry],
    elapsed: Duration,
) {
    let stats = erp.stats();
    println!("\nReport ({:.1}s)", elapsed.as_secs_f64());
    println!("  orders taken by the storefront     {:>5}", report.orders_sent);
    println!(
        "  webhook deliveries                 {:>5}  ({} duplicate deliveries, {} re-sent revisions, {} retries)",
        report.attempts as usize + extra_sent,
        report.duplicate_deliveries,
        revision_resent,
        report.attempts as usize - report.orders.len() - report.duplicate_deliveries,
    );
    println!("  accepted by the runner             {:>5}", status.received);
    println!("  duplicates dropped                 {:>5}", status.deduplicated);
    println!(
        "  sales orders stored in the ERP     {:>5}  (created {}, idempotent replays {})",
        erp.orders().len(),
        stats.created,
        stats.idempotent_replays
    );
    println!("  ERP answers 503 (outage) / 429     {:>5} / {}", stats.unavailable, stats.throttled);
    println!("  delivery retries                   {:>5}", status.targets.iter().map(|t| t.retried).sum::<u64>());
    println!("  dead letters                       {:>5}", letters.len());
    for l in letters {
        let d = &l.dead_letter;
        let age = (now_ms() - d.dead_lettered_at_ms).max(0) / 1000;
        println!(
            "    #{} {} after {} attempt(s), {}s ago, correlation {}: {}",
            l.id,
            d.reason.as_str(),
            d.attempts.len().max(1),
            age,
            d.envelope.correlation_id,
            d.message
        );
    }
}
