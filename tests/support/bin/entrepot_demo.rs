//! The `entrepot-demo` program (the same `entrepot_demo::main` as `demo/src/main.rs`),
//! built as a binary of this test crate, like `entrepot-under-test`.

fn main() -> std::process::ExitCode {
    entrepot_demo::main()
}
