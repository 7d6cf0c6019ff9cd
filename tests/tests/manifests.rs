//! `entrepot test DIR`: every example passes; a failing Mapping example or a broken
//! reference fails with a readable message.

use std::process::Command;

use entrepot_e2e::{repo_root, runner_binary, write_quickstart};

fn entrepot_test(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(runner_binary()).arg("test").arg(dir).output().expect("entrepot test runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn every_example_passes() {
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        let (ok, output) = entrepot_test(&dir);
        assert!(ok, "{}:\n{output}", dir.display());
        assert!(output.contains("0 failed"), "{output}");
    }
}

#[test]
fn a_failing_mapping_example_shows_a_diff_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    write_quickstart(dir.path(), "http://127.0.0.1:1");
    let mappings = dir.path().join("mappings.yaml");
    let text = std::fs::read_to_string(&mappings).unwrap().replace("tax: 290}", "tax: 291}");
    std::fs::write(&mappings, text).unwrap();
    let (ok, output) = entrepot_test(dir.path());
    assert!(!ok, "{output}");
    assert!(output.contains("FAIL  Mapping default/shopify-order-to-canonical"), "{output}");
    assert!(output.contains(".lines[0].tax: expected 291, got 290"), "{output}");
}

#[test]
fn a_missing_reference_names_the_field_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    write_quickstart(dir.path(), "http://127.0.0.1:1");
    let flow = dir.path().join("syncflow.yaml");
    let text = std::fs::read_to_string(&flow).unwrap().replace("connectorRef: erp-demo", "connectorRef: erp-typo");
    std::fs::write(&flow, text).unwrap();
    let (ok, output) = entrepot_test(dir.path());
    assert!(!ok, "{output}");
    assert!(
        output.contains("spec.targets[0].connectorRef refers to Connector `erp-typo`, which does not exist"),
        "{output}"
    );
}

#[test]
fn a_malformed_manifest_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write_quickstart(dir.path(), "http://127.0.0.1:1");
    let flow = dir.path().join("syncflow.yaml");
    let text = std::fs::read_to_string(&flow).unwrap().replace("operation: create", "operation: obliterate");
    std::fs::write(&flow, text).unwrap();
    let (ok, output) = entrepot_test(dir.path());
    assert!(!ok, "{output}");
    assert!(output.contains("syncflow.yaml:1: SyncFlow is invalid"), "{output}");
    assert!(output.contains("line 21 column 18"), "{output}");
    assert!(output.contains("obliterate"), "{output}");
}

/// A Mapping that would take more memory than a run may (`"x" * 10000000000` is 10 GB) is
/// stopped by its budget, reported as a failing example, and the process carries on.
#[test]
fn a_mapping_past_its_memory_budget_fails_its_example_without_taking_the_process_down() {
    let dir = tempfile::tempdir().unwrap();
    write_quickstart(dir.path(), "http://127.0.0.1:1");
    let mappings = dir.path().join("mappings.yaml");
    let text = std::fs::read_to_string(&mappings)
        .unwrap()
        .replace("      externalId: .orderId,", r#"      externalId: ("x" * 10000000000),"#);
    std::fs::write(&mappings, text).unwrap();
    let (ok, output) = entrepot_test(dir.path());
    assert!(!ok, "{output}");
    assert!(output.contains("needed more memory than its budget of 128 MiB"), "{output}");
    assert!(output.contains("1 failed"), "{output}");
}
