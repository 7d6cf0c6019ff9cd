//! The shape of the code: no file of any crate imports another in a loop, so the layers
//! of each crate read bottom to top (docs/architecture.md; the graph is read from the
//! sources by `support/module_graph.rs`), and no source file grows past 600 lines.

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

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_source_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let mut files = Vec::new();
    for dir in ["api", "runner", "operator", "sim", "demo", "tests/support", "tests/tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).expect("read a source file").lines().count();
            (lines > 600).then(|| format!("{} ({lines} lines)", f.strip_prefix(root).unwrap_or(f).display()))
        })
        .collect();
    assert!(long.is_empty(), "split these files by concept (STYLE.md: files under ~600 lines): {long:?}");
}
