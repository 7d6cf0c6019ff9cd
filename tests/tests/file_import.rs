//! A settlement report dropped in a directory reaches the ERP through the
//! `examples/settlement-import` flow: each transaction once, as a journal entry, in
//! report order; a garbled row is dead-lettered with its line; the report is moved aside.

use std::{
    fs,
    path::Path,
    time::{Duration, SystemTime},
};

use entrepot::secrets::Secrets;
use entrepot_e2e::*;
use serde_json::{Value, json};

const FLOW: &str = "processor-settlements-to-erp";
const WAIT: Duration = Duration::from_secs(30);
const REPORT: &str = "settlement-2026-11-27.csv";

/// Drops `content` as `name` the way an uploader should: written as `.part`, dated a
/// minute back (so the runner need not wait for it to age), then renamed.
fn drop_file(dir: &Path, name: &str, content: &str) {
    let part = dir.join(format!("{name}.part"));
    fs::write(&part, content).unwrap();
    let file = fs::File::options().write(true).open(&part).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(60)).unwrap();
    fs::rename(&part, dir.join(name)).unwrap();
}

#[tokio::test]
async fn a_settlement_report_reaches_the_erp_once_per_transaction() {
    let root = tempfile::tempdir().unwrap();
    let inbox = root.path().join("inbox");
    fs::create_dir(&inbox).unwrap();
    let erp = ScriptedTarget::start().await;
    let manifests = example("settlement-import");
    let mut config = manifests.runner_config().expect("the example resolves");
    let flow = &mut config.flows[0];
    let file = flow.spec.source.trigger.file.as_mut().expect("a file trigger");
    file.directory = inbox.display().to_string();
    file.interval = Some(Duration::from_millis(50).into());
    flow.connectors.get_mut("erp-finance").unwrap().endpoint = Some(erp.url.clone());
    let runner =
        InProcessRunner::start_with(config, &Secrets::with_manifests(manifests.secrets), &root.path().join("data"))
            .await;

    let sample = fs::read_to_string(repo_root().join("examples/settlement-import/sample").join(REPORT)).unwrap();
    let transactions = sample.lines().count() - 1;
    // A row the processor's export garbled, after the good ones (line 7).
    let report = format!("{sample}ST-20261127-01,ch_garbled,charge,10.00\n");
    drop_file(&inbox, REPORT, &report);

    eventually(WAIT, "every transaction delivered and the report moved aside", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == transactions as u64
            && s.flows[0].pending == 0
            && inbox.join("processed").join(REPORT).is_file()
    })
    .await;

    let received = erp.received();
    let ids: Vec<&str> = received.iter().map(|r| r.body["externalId"].as_str().unwrap()).collect();
    let expected: Vec<String> = sample
        .lines()
        .skip(1)
        .map(|row| {
            let fields: Vec<&str> = row.split(',').collect();
            format!("settlement:{}:{}", fields[0], fields[1])
        })
        .collect();
    assert_eq!(ids, expected, "each transaction once, in report order");
    let first = &received[0];
    assert_eq!(first.headers["authorization"], "Bearer demo-erp-finance-token");
    assert_eq!(first.headers["idempotency-key"], "ST-20261127-01:ch_3PqR8x2eZvKYlo2C0a1b2c3d");
    assert_eq!(first.headers["x-correlation-id"], format!("{REPORT}:2"));
    assert_eq!(
        first.body,
        json!({
            "externalId": "settlement:ST-20261127-01:ch_3PqR8x2eZvKYlo2C0a1b2c3d",
            "tranDate": "2026-11-27",
            "currency": "USD",
            "memo": "charge #1042",
            "lines": [
                {"account": "1015", "amount": 12592, "memo": "net settled"},
                {"account": "6120", "amount": 407, "memo": "processor fee"},
                {"account": "1200", "amount": -12999, "memo": "customer receivable"}
            ]
        })
    );
    for r in &received {
        let sum: i64 = r.body["lines"].as_array().unwrap().iter().map(|l| l["amount"].as_i64().unwrap()).sum();
        assert_eq!(sum, 0, "a balanced entry: {}", r.body);
    }

    let letters: Vec<Value> =
        reqwest::get(format!("{}/v1/deadletters?flow={FLOW}", runner.admin_url)).await.unwrap().json().await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "invalidRecord");
    assert_eq!(letters[0]["message"], format!("{REPORT}: line 7: 4 fields where the header has 9"));
    let metrics = reqwest::get(format!("{}/metrics", runner.admin_url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("entrepot_files_processed_total{{flow=\"{FLOW}\"}} 1")), "{metrics}");
    assert!(
        metrics
            .contains(&format!("entrepot_records_dead_lettered_total{{connector=\"\",flow=\"{FLOW}\",reason=\"invalid_record\",target=\"\"}} 1")),
        "{metrics}"
    );
    assert!(!inbox.join(REPORT).exists());
    runner.stop().await;
}
