fn main() -> std::process::ExitCode {
    entrepot_demo::main()
}
