//! `entrepot-demo --scenario peak-day`: the busiest day of the year, in one process, over
//! real HTTP on loopback, with the manifests of `examples/peak-day/` (embedded).
//!
//! A Shopify-like storefront and an Amazon-like marketplace take a burst of orders, each
//! only when the stock it shows can fill it, and the WMS reserves the units at once; the
//! store's POS sells from the same shelves, goods are received, returned and picked. The
//! storefront delivers 5% of its webhooks twice and 2% out of order (a newer revision
//! first), the marketplace's notifications likewise; the ERP grants fewer requests in
//! flight than its Connector declares (so the runner must find its limit) and goes down
//! for a minute in the middle. Three flows run: storefront
//! orders → ERP, marketplace orders → ERP, WMS movements → each channel's available-to-sell.
//!
//! At the end it prints, and [`Report::problems`] checks: orders in the ERP = orders
//! taken, each once; oversells = 0 (an order the WMS could not reserve, or a moment a
//! channel showed more than the WMS could ship); order-to-ERP posting time and inventory
//! freshness p50/p99, and posting time outside the outage with the rate its backlog
//! drained at; throttled requests; dead letters with their reasons; and a
//! reconciliation of storefront orders against the ERP, which must find no drift.

pub mod measure;
mod report;
mod world;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Result;

pub use measure::{Overshow, Percentiles};

/// A SKU the storefront still lists but the ERP no longer knows: its order is refused,
/// and its dead letter is the one expected.
const DISCONTINUED_SKU: &str = "DISCONTINUED-HAT";
pub use report::{Movements, Report};

/// The scenario's knobs. [`Params::default`] is the demo; tests run it smaller.
#[derive(Clone, Debug)]
pub struct Params {
    /// Orders the storefront's shoppers try to place.
    pub storefront_orders: usize,
    /// Orders the marketplace's buyers try to place.
    pub marketplace_orders: usize,
    /// How long the order burst lasts.
    pub burst: Duration,
    /// How long the ERP is down, in the middle of the burst.
    pub outage: Duration,
    /// Requests the ERP serves at once; more are refused with 429 (NetSuite's concurrency
    /// governance). Below the 4 the Connector declares, the runner must find it.
    pub erp_concurrency: usize,
    /// Units of each SKU received before the burst.
    pub opening_stock: i64,
    /// Sales at the store's tills (POS) during the burst.
    pub pos_sales: usize,
    /// Share of webhook deliveries sent twice.
    pub duplicate_ratio: f64,
    /// Share of orders whose newer revision is delivered before them.
    pub out_of_order_ratio: f64,
    /// Seed of every random choice (orders, faults, movements).
    pub seed: u64,
    /// Where the runner's queue lives (default: a fresh temporary directory).
    pub data_dir: Option<PathBuf>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            storefront_orders: 300,
            marketplace_orders: 100,
            burst: Duration::from_secs(120),
            outage: Duration::from_secs(60),
            erp_concurrency: 3,
            opening_stock: 150,
            pos_sales: 200,
            duplicate_ratio: 0.05,
            out_of_order_ratio: 0.02,
            seed: 2026,
            data_dir: None,
        }
    }
}

/// Runs the scenario, prints the report, and fails when a check fails.
pub async fn run(params: Params) -> Result<ExitCode> {
    let report = world::run(&params, true).await?;
    report.print();
    let problems = report.problems();
    if problems.is_empty() {
        println!(
            "\nOK: every order taken is in the ERP exactly once, nothing was oversold, and reconciliation finds no drift."
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nFAILED:");
        for p in problems {
            println!("  - {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Runs the scenario quietly and returns its report (for tests).
pub async fn measure(params: &Params) -> Result<Report> {
    world::run(params, false).await
}
