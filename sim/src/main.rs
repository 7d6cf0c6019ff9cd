//! `entrepot-sim`: run a simulated ERP, storefront, marketplace or WMS from the command
//! line (see `cli`).

fn main() -> anyhow::Result<()> {
    entrepot_sim::cli::main()
}
