//! `entrepot-demo`: the runner against simulated systems, all in one process over real
//! HTTP on loopback. Kept out of the `entrepot` runner so the production binary ships no
//! simulator.
//!
//! - the quickstart (default): `examples/quickstart/`, a Shopify-like storefront and a
//!   NetSuite-like ERP, duplicates and an outage;
//! - `--scenario peak-day`: `examples/peak-day/`, storefront, marketplace, WMS and ERP on
//!   the busiest day of the year.

mod embedded;
pub mod peak_day;
mod quickstart;

use std::process::ExitCode;

use clap::Parser;

/// The demo's command line.
#[derive(Parser)]
#[command(name = "entrepot-demo", version, about = "Entrepot's runner against simulated retail systems, with a report")]
struct Cli {
    #[command(flatten)]
    args: quickstart::DemoArgs,
}

/// Parses the command line and runs the chosen scenario.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own progress and report; the runner's logs would only repeat
    // them (ENTREPOT_LOG=info shows them).
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENTREPOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(quickstart::run(cli.args)));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
