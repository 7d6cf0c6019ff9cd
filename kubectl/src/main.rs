fn main() -> std::process::ExitCode {
    kubectl_entrepot::main()
}
