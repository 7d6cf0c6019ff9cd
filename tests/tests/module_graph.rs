//! No file of any crate imports another in a loop: the layers of each crate stay
//! readable bottom to top (docs/architecture.md). Read from the sources by
//! `support/module_graph.rs`.

use std::path::Path;

use entrepot_e2e::module_graph::loops;

#[test]
fn no_file_of_any_crate_imports_another_in_a_loop() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let mut found = Vec::new();
    for krate in ["api/src", "runner/src", "operator/src", "sim/src", "demo/src", "tests/support"] {
        found.extend(loops(&root.join(krate)).into_iter().map(|l| format!("{krate}: {l}")));
    }
    assert!(
        found.is_empty(),
        "files importing each other in a loop; move what they share into a module of its own:\n{}",
        found.join("\n")
    );
}
