//! `entrepot demo`: the quickstart against a simulated storefront and ERP.

use std::process::ExitCode;

use anyhow::Result;

/// Options of the demo.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// How many orders the storefront takes.
    #[arg(long, default_value_t = 40)]
    pub orders: usize,
}

pub async fn run(_args: DemoArgs) -> Result<ExitCode> {
    anyhow::bail!("the demo is being built")
}
