//! The `entrepot-sim` program (the same `entrepot_sim::cli::main` as `sim/src/main.rs`),
//! built as a binary of this test crate so the cluster tests run the simulators as local
//! processes from the same `cargo nextest run`.

fn main() -> anyhow::Result<()> {
    entrepot_sim::cli::main()
}
