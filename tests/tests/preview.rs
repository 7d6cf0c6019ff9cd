//! `entrepot preview` end to end, on the quickstart's Shopify order Mapping and recorded
//! orders: a harmless change exits 0 and shows its fields; a breaking change exits 2 and
//! names the records it breaks and the schema violations it introduces, also when the
//! old version comes from a git ref; personal data never reaches the output.

use std::{path::Path, process::Command};

use entrepot_e2e::*;
use serde_json::Value;

/// The quickstart's Mappings, as committed.
fn quickstart_mappings() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/mappings.yaml")).unwrap()
}

/// The same Mappings with one line of the Shopify one changed.
fn changed(from: &str, to: &str) -> String {
    let text = quickstart_mappings();
    assert!(text.contains(from), "the quickstart Mapping no longer has `{from}`");
    text.replace(from, to)
}

const SKU_WITH_FALLBACK: &str = r#"sku: (.sku // ("variant:" + (.variant_id | tostring))),"#;
const EMAIL: &str = "email: ((.email // .customer.email // \"\") | ascii_downcase),";

/// Three recorded orders: two with a SKU, one sold by variant only; each with a
/// customer's name and email.
fn samples(dir: &Path) {
    let dir = dir.join("samples");
    std::fs::create_dir_all(&dir).unwrap();
    for (id, sku) in [(5001, Some("TS-M")), (5002, None), (5003, Some("MUG"))] {
        let mut order: Value = serde_json::from_slice(&shopify_order(id, "X", "2026-11-27T10:05:00-05:00")).unwrap();
        order["email"] = "Jane.Doe@Example.org".into();
        order["customer"]["first_name"] = "Janet".into();
        order["line_items"][0]["sku"] = sku.map_or(Value::Null, Value::from);
        std::fs::write(dir.join(format!("order-{id}.json")), serde_json::to_vec_pretty(&order).unwrap()).unwrap();
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn assert_no_personal_data(text: &str) {
    for personal in ["Jane.Doe", "jane.doe", "JANE.DOE", "Janet"] {
        assert!(!text.contains(personal), "{personal} printed:\n{text}");
    }
}

#[tokio::test]
async fn a_harmless_change_exits_0_and_shows_the_fields_it_changes_masked() {
    let dir = tempfile::tempdir().unwrap();
    samples(dir.path());
    let old = write(dir.path(), "old.yaml", &quickstart_mappings());
    let new = write(dir.path(), "new.yaml", &changed(EMAIL, &EMAIL.replace("ascii_downcase", "ascii_upcase")));
    let summary = dir.path().join("summary.md");
    let samples = dir.path().join("samples");
    let run = run_cli(&[
        "preview",
        "--old",
        &old,
        "--new",
        &new,
        "--samples",
        samples.to_str().unwrap(),
        "--summary",
        summary.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("Mapping default/shopify-order-to-canonical (changed): 3 record(s): 3 changed"),
        "{run:?}"
    );
    assert!(run.stdout.contains("~ /customer/email: \"masked-"), "the field, its masked values: {run:?}");
    assert!(run.stdout.contains("no record that passed before fails"), "{run:?}");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("✅") && md.contains("| `/customer/email` | 3 |"), "{md}");
    assert_no_personal_data(&run.stdout);
    assert_no_personal_data(&md);
}

#[tokio::test]
async fn a_breaking_change_exits_2_and_names_the_records_it_breaks() {
    let dir = tempfile::tempdir().unwrap();
    samples(dir.path());
    let old = write(dir.path(), "old.yaml", &quickstart_mappings());
    let new = write(dir.path(), "new.yaml", &changed(SKU_WITH_FALLBACK, "sku: .sku,"));
    let samples = dir.path().join("samples");
    let run =
        run_cli(&["preview", "--old", &old, "--new", &new, "--samples", samples.to_str().unwrap(), "--markdown"]).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stdout.contains("❌ **This change breaks 1 record(s) that passed before.**"), "{run:?}");
    assert!(run.stdout.contains("order-5002.json"), "the broken record named: {run:?}");
    assert!(!run.stdout.contains("order-5001.json`:"), "only the broken one: {run:?}");
    assert!(run.stdout.contains("Schema violations introduced") && run.stdout.contains("/lines/*/sku"), "{run:?}");
    assert_no_personal_data(&run.stdout);
}

#[tokio::test]
async fn the_old_version_can_come_from_a_git_ref() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=ci", "-c", "user.email=ci@example.com"])
            .args(args)
            .current_dir(repo)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    std::fs::create_dir_all(repo.join("mappings")).unwrap();
    write(&repo.join("mappings"), "orders.yaml", &quickstart_mappings());
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "base"]);
    samples(repo);
    let file = write(&repo.join("mappings"), "orders.yaml", &changed(SKU_WITH_FALLBACK, "sku: .sku,"));
    let samples = repo.join("samples");

    let on_file = run_cli(&["preview", "--base", "HEAD", "--new", &file, "--samples", samples.to_str().unwrap()]).await;
    assert_eq!(on_file.code, Some(2), "{on_file:?}");
    assert!(on_file.stdout.contains("broken        ") && on_file.stdout.contains("order-5002.json"), "{on_file:?}");
    let folder = repo.join("mappings");
    let on_folder = run_cli(&[
        "preview",
        "--base",
        "HEAD",
        "--new",
        folder.to_str().unwrap(),
        "--samples",
        samples.to_str().unwrap(),
    ])
    .await;
    assert_eq!(on_folder.code, Some(2), "{on_folder:?}");
    let bad_ref =
        run_cli(&["preview", "--base", "no-such-ref", "--new", &file, "--samples", samples.to_str().unwrap()]).await;
    assert!(!bad_ref.success && bad_ref.stderr.contains("--base no-such-ref"), "{bad_ref:?}");
    let no_samples = run_cli(&["preview", "--base", "HEAD", "--new", &file, "--samples", "/nonexistent"]).await;
    assert!(!no_samples.success && no_samples.stderr.contains("--samples /nonexistent"), "{no_samples:?}");
}
