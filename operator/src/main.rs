//! `entrepot-operator`: prints the CRDs, or runs the controllers (see `cli`).

fn main() -> anyhow::Result<()> {
    entrepot_operator::cli::main()
}
