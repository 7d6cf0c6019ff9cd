//! Issue 13's leak test, on the runner's side: a runner with known secret values (the
//! webhook secret, the ERP's bearer token, the admin token) goes through a signed order,
//! a forged one, an ERP that refuses the credentials (an auth failure, then a dead
//! letter) and one that fails then recovers; then every place an operator or a scraper
//! can read is scanned for those values: the log (JSON, debug level), `/v1/status`,
//! `/metrics`, the dead letters (list and each one shown), the admin API's refusals, and
//! every file the runner wrote. The operator's side is
//! `operator/src/sync_flow/controller_tests.rs` (`no_secret_value_reaches_what_the_operator_writes`).

use std::{path::Path, time::Duration};

use entrepot::source::signature::sign;
use entrepot_api::resource::SignatureScheme;
use entrepot_e2e::*;
use serde_json::Value;

const WEBHOOK_SECRET_CANARY: &str = "canary-whsec-3b9f1c77a0";
const ERP_TOKEN_CANARY: &str = "canary-erp-bearer-8d2e4a19";
const ADMIN_TOKEN_CANARY: &str = "canary-admin-token-61f0c3de";
const CANARIES: [&str; 3] = [WEBHOOK_SECRET_CANARY, ERP_TOKEN_CANARY, ADMIN_TOKEN_CANARY];

/// Every file under `dir`, as bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path.display().to_string(), bytes));
        }
    }
    found
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_secret_value_reaches_logs_status_metrics_dead_letters_or_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    // Order 1: the ERP refuses the credentials (fresh ones too): an auth dead letter.
    target.fail_matching("SKU-AUTH", 401, 10);
    // Order 2: one outage answer, then delivered.
    target.fail_matching("SKU-RETRY", 503, 1);
    let manifests = dir.path().join("manifests");
    write_quickstart(&manifests, &target.url);
    let secrets = manifests.join("secrets.yaml");
    let text = std::fs::read_to_string(&secrets).unwrap();
    assert!(text.contains(WEBHOOK_SECRET) && text.contains("demo-erp-token"), "the quickstart's secrets moved");
    let text = text.replace(WEBHOOK_SECRET, WEBHOOK_SECRET_CANARY).replace("demo-erp-token", ERP_TOKEN_CANARY);
    std::fs::write(&secrets, text).unwrap();
    let admin_token = dir.path().join("admin-token");
    std::fs::write(&admin_token, format!("{ADMIN_TOKEN_CANARY}\n")).unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("runner.log");
    let args: Vec<String> = ["--log-format", "json", "run"]
        .into_iter()
        .map(String::from)
        .chain([manifests.display().to_string(), "--data-dir".into(), data.display().to_string()])
        .chain(["--admin-token-file".into(), admin_token.display().to_string()])
        .collect();
    let runner = RunnerProcess::spawn_logged(args, vec![("ENTREPOT_LOG".into(), "debug".into())], &log).await;

    let url = runner.webhook(FLOW);
    let signed = |body: &[u8]| Some(sign(SignatureScheme::ShopifyHmacSha256, WEBHOOK_SECRET_CANARY.as_bytes(), body));
    let refused = shopify_order(1, "SKU-AUTH", "2026-11-27T10:00:00Z");
    let retried = shopify_order(2, "SKU-RETRY", "2026-11-27T10:00:00Z");
    assert_eq!(post_webhook(&url, &refused, "delivery-1", signed(&refused)).await.status(), 200);
    assert_eq!(post_webhook(&url, &retried, "delivery-2", signed(&retried)).await.status(), 200);
    let forged = shopify_order(3, "SKU-FORGED", "2026-11-27T10:00:00Z");
    let answer = post_webhook(&url, &forged, "delivery-3", Some("bm90IHRoZSBzaWduYXR1cmU=".into())).await;
    assert_eq!(answer.status(), 401);
    let mut read = vec![("the forged delivery's answer".to_string(), answer.bytes().await.unwrap().to_vec())];

    eventually(Duration::from_secs(30), "one delivered, one dead-lettered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == 1 && s.flows[0].dead_lettered == 1 && s.flows[0].pending == 0
    })
    .await;
    // The canaries were in use: the ERP got the token, so a clean scan means something.
    assert!(target.received().iter().all(|r| r.headers["authorization"] == format!("Bearer {ERP_TOKEN_CANARY}")));

    let admin = &runner.admin_url;
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("{admin}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for path in ["/v1/status", "/metrics", "/healthz", "/readyz"] {
        read.push((path.into(), get(path, None).await.unwrap().bytes().await.unwrap().to_vec()));
    }
    let unauthorized = get("/v1/deadletters", Some("a-wrong-token")).await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    read.push(("a refused admin call".into(), unauthorized.bytes().await.unwrap().to_vec()));
    let letters: Vec<Value> = get("/v1/deadletters", Some(ADMIN_TOKEN_CANARY)).await.unwrap().json().await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "auth", "{letters:?}");
    read.push(("/v1/deadletters".into(), serde_json::to_vec(&letters).unwrap()));
    for letter in &letters {
        let path = format!("/v1/deadletters/{}", letter["id"]);
        let shown = get(&path, Some(ADMIN_TOKEN_CANARY)).await.unwrap().bytes().await.unwrap().to_vec();
        assert!(holds(&shown, "SKU-AUTH"), "the dead letter shows its record");
        read.push((path, shown));
    }
    drop(runner);
    read.push(("the runner's log".into(), std::fs::read(&log).unwrap()));
    assert!(holds(&read.last().unwrap().1, "delivery-2"), "the log is the debug log of this run");
    read.extend(files(&data));
    assert!(read.iter().any(|(name, _)| name.ends_with("queue.redb")), "the queue file is scanned");

    for (name, bytes) in &read {
        for canary in CANARIES {
            assert!(!holds(bytes, canary), "`{canary}` found in {name}:\n{}", String::from_utf8_lossy(bytes));
        }
    }
}
