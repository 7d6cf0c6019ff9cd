//! The `entrepot-operator` program (the same `entrepot_operator::cli::main` as
//! `operator/src/main.rs`), built as a binary of this test crate so the cluster tests
//! that run it as a pod's process get it from the same `cargo nextest run`.

fn main() -> anyhow::Result<()> {
    entrepot_operator::cli::main()
}
