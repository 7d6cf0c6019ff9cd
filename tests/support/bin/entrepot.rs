//! The `entrepot` program (the same `entrepot::cli::main` as `runner/src/main.rs`), built
//! as a binary of this test crate so the tests that start it as a process get it built
//! by the same `cargo nextest run` with the same features, instead of a second build.

fn main() -> std::process::ExitCode {
    entrepot::cli::main()
}
