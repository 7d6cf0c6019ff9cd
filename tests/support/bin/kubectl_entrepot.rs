//! The `kubectl-entrepot` plugin (the same `kubectl_entrepot::main` as
//! `kubectl/src/main.rs`), built as a binary of this test crate like the others here.

fn main() -> std::process::ExitCode {
    kubectl_entrepot::main()
}
