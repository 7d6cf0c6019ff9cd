//! The runner over real HTTP on loopback, against a scripted target: signatures,
//! deduplication, retry classification and dead letters.

use std::time::Duration;

use entrepot::protocol::ErrorCategory;
use entrepot_e2e::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn setup(max_attempts: Option<u32>) -> (tempfile::TempDir, ScriptedTarget, InProcessRunner) {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    let mut config = quickstart_config(&target.url);
    if let Some(n) = max_attempts {
        config.flows[0].spec.delivery.retry.max_attempts = n;
    }
    let runner = InProcessRunner::start(config, dir.path()).await;
    (dir, target, runner)
}

async fn dead_letters(admin_url: &str) -> Vec<Value> {
    reqwest::get(format!("{admin_url}/v1/deadletters")).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_signed_order_reaches_the_target_once_with_its_keys() {
    let (_dir, target, runner) = setup(None).await;
    let order = shopify_order(1001, "SKU-1", "2026-11-27T10:05:00-05:00");
    let first = post_webhook(&runner.webhook(FLOW), &order, "delivery-1", None).await;
    assert_eq!(first.status(), 200);
    // Shopify retrying the same delivery, then the same order revision under another delivery.
    let retry = post_webhook(&runner.webhook(FLOW), &order, "delivery-1", None).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(post_webhook(&runner.webhook(FLOW), &order, "delivery-2", None).await.status(), 200);

    eventually(WAIT, "the status shows one delivery and two duplicates", || async {
        let s = status(&runner.admin_url).await;
        let f = &s.flows[0];
        f.delivered == 1 && f.deduplicated == 2 && f.pending == 0
    })
    .await;
    let received = target.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let request = &received[0];
    assert_eq!(request.headers["idempotency-key"], "shopify:1001:2026-11-27T15:05:00Z");
    assert_eq!(request.headers["authorization"], format!("Bearer {ERP_TOKEN}"));
    assert!(request.headers.contains_key("x-correlation-id"));
    assert_eq!(request.body["externalId"], "shopify:1001");
    assert_eq!(request.body["items"][0], serde_json::json!({"item": "SKU-1", "quantity": 1, "rate": 1000}));
    let s = status(&runner.admin_url).await;
    // The same body under a new delivery id is the same delivery: the id is not signed
    // (issue 13, M6), so it is not received twice.
    assert_eq!((s.flows[0].received, s.flows[0].dead_lettered), (1, 0));
    runner.stop().await;
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_refused_and_nothing_is_queued() {
    let (_dir, target, runner) = setup(None).await;
    let order = shopify_order(1002, "SKU-1", "2026-11-27T10:05:00-05:00");
    let forged = post_webhook(&runner.webhook(FLOW), &order, "d-1", Some("AAAA".into())).await;
    assert_eq!(forged.status(), 401);
    let unsigned = reqwest::Client::new().post(runner.webhook(FLOW)).body(order.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let unknown = post_webhook(&format!("{}/webhooks/nope", runner.webhook_url), &order, "d-1", None).await;
    assert_eq!(unknown.status(), 404);

    let s = status(&runner.admin_url).await;
    assert_eq!((s.flows[0].received, s.flows[0].pending), (0, 0));
    let metrics = reqwest::get(format!("{}/metrics", runner.admin_url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .contains(r#"entrepot_webhook_refused_total{flow="shopify-orders-to-erp",reason="signature_mismatch"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"entrepot_webhook_refused_total{flow="shopify-orders-to-erp",reason="signature_missing"} 1"#),
        "{metrics}"
    );
    // The forged delivery id was not remembered: the genuine delivery goes through.
    assert_eq!(
        post_webhook(&runner.webhook(FLOW), &order, "d-1", None).await.json::<Value>().await.unwrap()["status"],
        "queued"
    );
    eventually(WAIT, "the genuine delivery arrives", || async { target.received().len() == 1 }).await;
    runner.stop().await;
}

#[tokio::test]
async fn a_business_rejection_is_dead_lettered_at_once_with_the_answer() {
    let (_dir, target, runner) = setup(None).await;
    let answer =
        r#"{"o:errorDetails":[{"detail":"Invalid item reference key NOPE","o:errorCode":"INVALID_KEY_OR_REF"}]}"#;
    target.push(400, &[], answer);
    post_webhook(&runner.webhook(FLOW), &shopify_order(1003, "NOPE", "2026-11-27T10:05:00-05:00"), "d-3", None).await;

    eventually(WAIT, "a dead letter", || async { status(&runner.admin_url).await.flows[0].dead_lettered == 1 }).await;
    let letters = dead_letters(&runner.admin_url).await;
    let letter = &letters[0];
    assert_eq!(letter["reason"], "rejected");
    assert_eq!(letter["status"], 400);
    assert_eq!(letter["responseBody"], answer);
    assert!(letter["message"].as_str().unwrap().contains("INVALID_KEY_OR_REF"), "{letter}");
    assert_eq!(letter["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(target.received().len(), 1, "a business rejection is not retried");
    let s = status(&runner.admin_url).await;
    assert_eq!(s.flows[0].pending, 0);
    let erp = s.connectors.iter().find(|c| c.name == "erp-demo").expect("the target Connector's status");
    assert_eq!(erp.last_error_category, Some(ErrorCategory::Rejected));
    assert!(erp.last_error_message.as_deref().unwrap_or_default().contains("INVALID_KEY_OR_REF"), "{erp:?}");
    assert!(erp.last_error_at.is_some());
    runner.stop().await;
}

#[tokio::test]
async fn a_refused_token_that_reads_the_same_again_is_dead_lettered_as_auth() {
    let (_dir, target, runner) = setup(None).await;
    target.push(401, &[], r#"{"message":"token revoked"}"#);
    post_webhook(&runner.webhook(FLOW), &shopify_order(1006, "SKU-1", "2026-11-27T10:05:00-05:00"), "d-7", None).await;

    eventually(WAIT, "a dead letter", || async { status(&runner.admin_url).await.flows[0].dead_lettered == 1 }).await;
    let letters = dead_letters(&runner.admin_url).await;
    assert_eq!(letters[0]["reason"], "auth");
    assert_eq!(letters[0]["status"], 401);
    // The bearer token is read again, finds the same value, and is not sent twice.
    assert_eq!(target.received().len(), 1);
    let s = status(&runner.admin_url).await;
    let erp = s.connectors.iter().find(|c| c.name == "erp-demo").unwrap();
    assert_eq!(erp.last_error_category, Some(ErrorCategory::Auth));
    runner.stop().await;
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered() {
    let (_dir, target, runner) = setup(None).await;
    target.push(503, &[], "maintenance");
    target.push(429, &[("retry-after", "0")], "slow down");
    target.push(408, &[], "");
    post_webhook(&runner.webhook(FLOW), &shopify_order(1004, "SKU-1", "2026-11-27T10:05:00-05:00"), "d-4", None).await;

    eventually(WAIT, "delivered after three transient failures", || async {
        status(&runner.admin_url).await.flows[0].delivered == 1
    })
    .await;
    let s = status(&runner.admin_url).await;
    assert_eq!(s.flows[0].targets[0].retried, 3);
    assert_eq!(s.flows[0].targets[0].last_error, None);
    let received = target.received();
    assert_eq!(received.len(), 4);
    let keys: Vec<_> = received.iter().map(|r| r.headers["idempotency-key"].clone()).collect();
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "every attempt carries the same key");
    runner.stop().await;
}

#[tokio::test]
async fn exhausted_retries_and_unmappable_records_are_dead_lettered() {
    let (_dir, target, runner) = setup(Some(3)).await;
    for _ in 0..3 {
        target.push(500, &[], "boom");
    }
    post_webhook(&runner.webhook(FLOW), &shopify_order(1005, "SKU-1", "2026-11-27T10:05:00-05:00"), "d-5", None).await;
    post_webhook(&runner.webhook(FLOW), b"this is not json", "d-6", None).await;

    eventually(WAIT, "two dead letters", || async { status(&runner.admin_url).await.flows[0].dead_lettered == 2 })
        .await;
    let letters = dead_letters(&runner.admin_url).await;
    let by_reason =
        |r: &str| letters.iter().find(|l| l["reason"] == r).unwrap_or_else(|| panic!("no {r}: {letters:?}")).clone();
    let exhausted = by_reason("retriesExhausted");
    assert_eq!(exhausted["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(exhausted["status"], 500);
    let mapping = by_reason("mapping");
    assert!(mapping["message"].as_str().unwrap().contains("source payload"), "{mapping}");
    assert_eq!(mapping["envelope"]["payload"], "this is not json", "the record is kept as received");
    assert_eq!(target.received().len(), 3);
    runner.stop().await;
}

#[tokio::test]
async fn a_mapped_record_that_breaks_the_canonical_schema_is_dead_lettered_with_every_failing_field() {
    let (_dir, target, runner) = setup(None).await;
    let mut bad: Value = serde_json::from_slice(&shopify_order(1010, "SKU-1", "2026-11-27T10:05:00-05:00")).unwrap();
    bad["currency"] = json!("usd");
    bad["line_items"][0]["quantity"] = json!(-1);
    post_webhook(&runner.webhook(FLOW), &serde_json::to_vec(&bad).unwrap(), "d-10", None).await;
    post_webhook(&runner.webhook(FLOW), &shopify_order(1011, "SKU-1", "2026-11-27T10:05:00-05:00"), "d-11", None).await;

    eventually(WAIT, "one delivered, one dead-lettered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == 1 && s.flows[0].dead_lettered == 1
    })
    .await;
    let letters = dead_letters(&runner.admin_url).await;
    assert_eq!(letters[0]["reason"], "schemaViolation", "{letters:?}");
    let message = letters[0]["message"].as_str().unwrap();
    assert!(message.starts_with("Mapping shopify-order-to-canonical: not a valid SalesOrder v1: "), "{message}");
    assert!(message.contains(r#"/currency: "usd" does not match"#), "{message}");
    assert!(message.contains("/lines/0/quantity/value: -1 is less than the minimum of 0"), "{message}");
    let received = target.received();
    assert_eq!(received.len(), 1, "only the valid order reaches the target");
    assert_eq!(received[0].body["externalId"], "shopify:1011");
    runner.stop().await;
}

#[tokio::test]
async fn a_full_queue_pushes_back_with_503_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    target.fail_matching("shopify:", 503, 6); // the ERP is down for a while
    let mut config = quickstart_config(&target.url);
    config.flows[0].spec.runner.queue.max_pending = 2;
    let runner = InProcessRunner::start(config, dir.path()).await;
    let url = runner.webhook(FLOW);
    for id in [11, 12] {
        let answer =
            post_webhook(&url, &shopify_order(id, "SKU-1", "2026-11-27T10:05:00-05:00"), &format!("d-{id}"), None)
                .await;
        assert_eq!(answer.status(), 200);
    }
    let third = shopify_order(13, "SKU-1", "2026-11-27T10:05:00-05:00");
    let refused = post_webhook(&url, &third, "d-13", None).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "30");

    // The sender retries until the queue has room again; everything arrives once.
    eventually(WAIT, "the retried delivery accepted", || async {
        post_webhook(&url, &third, "d-13", None).await.status() == 200
    })
    .await;
    eventually(WAIT, "three orders delivered", || async { status(&runner.admin_url).await.flows[0].delivered == 3 })
        .await;
    let metrics = reqwest::get(format!("{}/metrics", runner.admin_url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"entrepot_webhook_refused_total{flow="shopify-orders-to-erp",reason="backpressure"}"#),
        "{metrics}"
    );
    runner.stop().await;
}
