//! A batch run (`entrepot run --once`, what a `mode: batch` flow's CronJob runs): the
//! settlement import takes one pass of its directory, delivers what it queued, prints a
//! summary and exits. Stopped before it is done (SIGTERM, the Job's deadline), it exits
//! 3 and the next run delivers what was left, each transaction still once.

use std::{
    fs,
    path::Path,
    process::Stdio,
    time::{Duration, SystemTime},
};

use entrepot_e2e::*;
use serde_json::Value;

const REPORT: &str = "settlement-2026-11-27.csv";

/// The settlement-import example, reading `inbox` and sending to `erp_url`.
fn write_example(dir: &Path, inbox: &Path, erp_url: &str) {
    fs::create_dir_all(dir).unwrap();
    for entry in fs::read_dir(repo_root().join("examples/settlement-import")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = fs::read_to_string(&path)
                .unwrap()
                .replace("http://127.0.0.1:8081", erp_url)
                .replace("/imports/settlements", &inbox.display().to_string());
            fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
        }
    }
}

/// A report as an uploader leaves it: complete, and a minute old.
fn drop_report(inbox: &Path, content: &str) {
    let path = inbox.join(REPORT);
    fs::write(&path, content).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

fn once_args(manifests: &Path, data: &Path) -> Vec<String> {
    [
        "run",
        &manifests.display().to_string(),
        "--once",
        "--data-dir",
        &data.display().to_string(),
        "--admin-listen",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec()
}

/// The summary line a batch run prints last.
fn summary(stdout: &str) -> Value {
    let line = stdout.lines().last().unwrap_or_else(|| panic!("no summary printed: {stdout:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("the summary is not JSON ({e}): {line}"))
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, String) {
    let root = tempfile::tempdir().unwrap();
    let inbox = root.path().join("inbox");
    fs::create_dir(&inbox).unwrap();
    let sample = fs::read_to_string(repo_root().join("examples/settlement-import/sample").join(REPORT)).unwrap();
    (root, inbox.clone(), inbox.join("processed").join(REPORT), sample)
}

#[tokio::test]
async fn a_batch_run_imports_the_directory_once_delivers_and_exits() {
    let (root, inbox, processed, sample) = setup();
    let erp = ScriptedTarget::start().await;
    let manifests = root.path().join("manifests");
    write_example(&manifests, &inbox, &erp.url);
    let data = root.path().join("data");
    let transactions = sample.lines().count() - 1;
    drop_report(&inbox, &format!("{sample}ST-20261127-01,ch_garbled,charge,10.00\n"));

    let args = once_args(&manifests, &data);
    let run = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(run.success, "the run ends well: {}", run.stderr);
    let s = summary(&run.stdout);
    assert_eq!(s["result"], "drained", "{s}");
    assert_eq!(s["flows"][0]["delivered"], transactions as u64, "{s}");
    assert_eq!(s["flows"][0]["deadLettered"], 1, "the garbled row: {s}");
    assert_eq!(s["flows"][0]["pending"], 0, "{s}");
    assert_eq!(erp.received().len(), transactions, "everything delivered before the exit");
    assert!(processed.is_file(), "the report is moved aside");

    // The next night: nothing new in the directory, nothing sent again.
    let run = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(run.success, "{}", run.stderr);
    assert_eq!(summary(&run.stdout)["flows"][0]["delivered"], 0);
    assert_eq!(erp.received().len(), transactions);
}

#[tokio::test]
async fn a_batch_run_stopped_early_exits_3_and_the_next_run_delivers_the_rest_once() {
    let (root, inbox, _, sample) = setup();
    let erp = ScriptedTarget::start().await;
    // The ERP is down for the first run.
    erp.fail_matching("settlement:", 503, usize::MAX);
    let manifests = root.path().join("manifests");
    write_example(&manifests, &inbox, &erp.url);
    let data = root.path().join("data");
    let transactions = sample.lines().count() - 1;
    drop_report(&inbox, &sample);

    let child = tokio::process::Command::new(runner_binary())
        .args(once_args(&manifests, &data))
        .env("ENTREPOT_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    eventually(Duration::from_secs(30), "the first attempts to fail", || async { erp.received().len() >= 2 }).await;
    // What the kubelet sends at the Job's deadline.
    assert!(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(3), "stopped with records queued");
    let s = summary(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(s["result"], "stopped", "{s}");
    assert_eq!(s["flows"][0]["pending"], transactions as u64, "everything is still queued: {s}");

    // The ERP is back for the next run: the queue is delivered, each transaction once.
    erp.recover();
    let failed_attempts = erp.received().len();
    let args = once_args(&manifests, &data);
    let run = run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(run.success, "{}", run.stderr);
    assert_eq!(summary(&run.stdout)["result"], "drained");
    let mut delivered: Vec<String> =
        erp.received()[failed_attempts..].iter().map(|r| r.body["externalId"].as_str().unwrap().to_string()).collect();
    assert_eq!(delivered.len(), transactions, "each transaction delivered once");
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), transactions, "no transaction twice");
}
