//! `entrepot`: the runner binary.

fn main() -> std::process::ExitCode {
    entrepot::cli::main()
}
