//! The crates' dependency trees keep their layers apart: the operator links no data
//! plane, and the production runner links no simulator. Read from `cargo tree`, so a new
//! dependency that drags one in fails here, naming the path that brought it.

use std::process::Command;

/// `cargo tree -p package` with the given edge kinds, one package per line.
fn tree(package: &str, edges: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--locked", "--offline", "-p", package, "-e", edges, "--prefix", "none", "--format", "{p}"])
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

/// The packages of `tree` whose name is one of `banned`, each with the line that names it.
fn found(tree: &str, banned: &[&str]) -> Vec<String> {
    tree.lines().filter(|l| banned.contains(&l.split_whitespace().next().unwrap_or(""))).map(str::to_string).collect()
}

#[test]
fn the_operator_links_no_data_plane_crate() {
    // Normal, build and dev edges alike: the operator's tests link no data plane either.
    let tree = tree("entrepot-operator", "normal,build,dev");
    let banned = ["redb", "axum", "tokio-postgres", "entrepot-sim", "entrepot", "entrepot-demo"];
    let found = found(&tree, &banned);
    assert!(
        found.is_empty(),
        "the operator's tree holds {found:?}; `cargo tree -p entrepot-operator -i <name>` says how"
    );
    assert!(tree.lines().any(|l| l.starts_with("entrepot-api ")), "the operator reads the specs from entrepot-api");
}

#[test]
fn the_api_crate_has_no_runtime_io_or_server() {
    let tree = tree("entrepot-api", "normal,build");
    let found = found(&tree, &["tokio", "redb", "axum", "reqwest", "hyper"]);
    assert!(found.is_empty(), "entrepot-api's tree holds {found:?}");
}

#[test]
fn the_production_runner_links_no_simulator() {
    // The runner's own tests may use the simulators (dev edges); its binary may not.
    let tree = tree("entrepot", "normal,build");
    let found = found(&tree, &["entrepot-sim", "entrepot-demo"]);
    assert!(
        found.is_empty(),
        "the runner's tree holds {found:?}: the simulators belong to entrepot-demo and the tests"
    );
}

#[test]
fn the_kubectl_plugin_links_no_simulator() {
    let tree = tree("kubectl-entrepot", "normal,build");
    let found = found(&tree, &["entrepot-sim", "entrepot-demo"]);
    assert!(found.is_empty(), "kubectl-entrepot's tree holds {found:?}: the plugin ships to users' machines");
}
