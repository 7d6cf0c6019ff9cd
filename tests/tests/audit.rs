//! The audit trail end to end: dead letters replayed and discarded with a reason
//! through the `entrepot deadletters` CLI against a running runner, read back with
//! `deadletters history` (through the admin API, then from the queue file once the runner
//! stopped: it is durable); a replay or discard without a reason is refused by the CLI
//! and by the admin API. Also `deadletters export`, with personal data masked.

use std::time::Duration;

use entrepot_e2e::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// Posts order `id` (its SKU refused by the target) and waits for `total` dead letters.
async fn dead_lettered(runner: &InProcessRunner, target: &ScriptedTarget, id: u64, total: u64) {
    target.push(400, &[], r#"{"error":"unknown SKU"}"#);
    let order = shopify_order(id, "NOPE", "2026-11-27T10:05:00-05:00");
    assert_eq!(post_webhook(&runner.webhook(FLOW), &order, &format!("delivery-{id}"), None).await.status(), 200);
    eventually(WAIT, "the order is dead-lettered", || async {
        status(&runner.admin_url).await.flows[0].dead_lettered == total
    })
    .await;
}

async fn dead_letter_ids(admin: &str) -> Vec<u64> {
    let listed = run_cli(&["deadletters", "list", "--admin", admin, "-o", "json"]).await.expect_ok("list");
    let letters: Vec<Value> = serde_json::from_str(&listed).unwrap();
    letters.iter().map(|l| l["id"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn replays_and_discards_need_a_reason_and_are_kept_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    let runner = InProcessRunner::start(quickstart_config(&target.url), dir.path()).await;
    let admin = runner.admin_url.clone();
    dead_lettered(&runner, &target, 4101, 1).await;
    dead_lettered(&runner, &target, 4102, 2).await;
    let ids = dead_letter_ids(&admin).await;
    let (first, second) = (ids[0].to_string(), ids[1].to_string());

    // Without a reason: the CLI refuses, and so does the admin API, naming the field.
    let refused = run_cli(&["deadletters", "replay", &first, "--admin", &admin]).await;
    assert!(!refused.success && refused.stderr.contains("--why"), "{refused:?}");
    let response = reqwest::Client::new()
        .post(format!("{admin}/v1/deadletters/replay"))
        .json(&json!({"ids": [ids[0]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("`why` is required"), "{error}");
    let blank = run_cli(&["deadletters", "discard", &second, "--admin", &admin, "--why", "  "]).await;
    assert!(!blank.success && blank.stderr.contains("`why` is required"), "{blank:?}");
    assert_eq!(dead_letter_ids(&admin).await, ids, "nothing was done without a reason");

    // With reasons: one replayed (and delivered, the SKU now exists), one discarded.
    let why_replay = "SKU NOPE created in the ERP, INC-4711";
    run_cli(&["deadletters", "replay", &first, "--admin", &admin, "--why", why_replay]).await.expect_ok("replay");
    run_cli(&["deadletters", "discard", &second, "--admin", &admin, "--why", "test order"]).await.expect_ok("discard");
    eventually(WAIT, "the replayed order delivered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == 1 && s.flows[0].dead_lettered == 0
    })
    .await;

    let history = run_cli(&["deadletters", "history", "--admin", &admin, "--flow", FLOW, "-o", "json"])
        .await
        .expect_ok("history");
    let entries: Vec<Value> = serde_json::from_str(&history).unwrap_or_else(|e| panic!("{e}: {history}"));
    let got: Vec<(&str, u64, &Value, &str)> = entries
        .iter()
        .map(|e| {
            (e["action"].as_str().unwrap(), e["count"].as_u64().unwrap(), &e["deadLetters"], e["why"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        got,
        [("replay", 1, &json!([ids[0]]), why_replay), ("discard", 1, &json!([ids[1]]), "test order")],
        "{history}"
    );
    for entry in &entries {
        assert_eq!(entry["flow"], FLOW);
        assert_eq!(entry["identity"], "open admin API (loopback, no token)", "{entry}");
        assert!(entry["client"].as_str().unwrap().starts_with("cli ("), "{entry}");
        assert!(entry["atMs"].as_i64().unwrap() > 0);
    }
    assert_eq!(entries[0]["records"].as_array().unwrap().len(), 1, "the replayed record's correlation id");
    let table = run_cli(&["deadletters", "history", "--admin", &admin, "--action", "discard"]).await.expect_ok("table");
    assert!(table.contains("discard") && table.contains("test order") && !table.contains(why_replay), "{table}");
    let unknown = run_cli(&["deadletters", "history", "--admin", &admin, "--flow", "nope"]).await;
    assert!(!unknown.success && unknown.stderr.contains("no flow named nope"), "{unknown:?}");
    runner.stop().await;

    // Durable: the runner gone, the queue file still has it.
    let data = dir.path().to_str().unwrap();
    let local = run_cli(&["deadletters", "history", "--data-dir", data, "--flow", FLOW, "-o", "json"])
        .await
        .expect_ok("history from the queue file");
    let again: Vec<Value> = serde_json::from_str(&local).unwrap();
    assert_eq!(again, entries);
}

#[tokio::test]
async fn dead_letters_are_exported_with_personal_data_masked() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    let runner = InProcessRunner::start(quickstart_config(&target.url), dir.path()).await;
    dead_lettered(&runner, &target, 4201, 1).await;
    let out = dir.path().join("export.jsonl");
    let admin = runner.admin_url.clone();
    run_cli(&["deadletters", "export", "--admin", &admin, "--out", out.to_str().unwrap()]).await.expect_ok("export");
    let text = std::fs::read_to_string(&out).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(line["id"].as_str().unwrap().starts_with("deadletter-"), "{line}");
    assert_eq!((line["flow"].as_str(), line["reason"].as_str()), (Some(FLOW), Some("rejected")));
    assert_eq!(line["payload"]["id"], 4201, "what is not personal is kept");
    assert_eq!(line["payload"]["line_items"][0]["sku"], "NOPE");
    for personal in ["buyer@example.com", "Ada", "Buyer"] {
        assert!(!text.contains(personal), "{personal} exported: {text}");
    }
    runner.stop().await;
}
