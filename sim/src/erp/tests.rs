//! The ERP over real HTTP on loopback.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ErpConfig, ErpHandle, bind};

fn order(external_id: &str, skus: &[&str]) -> Value {
    let items: Vec<Value> = skus.iter().map(|sku| json!({"item": sku, "quantity": 2, "rate": 1999})).collect();
    json!({
        "externalId": external_id,
        "tranDate": "2026-11-20",
        "currency": "USD",
        "customer": {"email": "jane.doe@example.com"},
        "items": items,
        "total": 6937
    })
}

async fn start(config: ErpConfig) -> ErpHandle {
    bind(config, "127.0.0.1:0").await.expect("bind the ERP on loopback")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("build an HTTP client")
}

async fn post(erp: &ErpHandle, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut request = client().post(format!("{}/salesOrders", erp.base_url())).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("POST /salesOrders")
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|value| value.to_str().expect("an ASCII header"))
}

async fn error_codes(response: reqwest::Response) -> Vec<(String, Option<String>, String)> {
    let body: Value = response.json().await.expect("a JSON error body");
    body["o:errorDetails"]
        .as_array()
        .expect("o:errorDetails is an array")
        .iter()
        .map(|detail| {
            (
                detail["o:errorCode"].as_str().unwrap_or_default().to_owned(),
                detail["o:errorPath"].as_str().map(str::to_owned),
                detail["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits, boundedly, until `n` requests hold a concurrency slot; fails instead of hanging.
async fn wait_in_flight(erp: &ErpHandle, n: usize) {
    for _ in 0..2000 {
        if erp.in_flight() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("expected {n} requests in flight, found {}", erp.in_flight());
}

#[tokio::test]
async fn a_valid_order_is_stored_and_answered_204_with_location() {
    let erp = start(ErpConfig::default()).await;
    let response = post(&erp, &order("shopify-1042", &["TSHIRT-BLK-M"]), None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let location = header(&response, "location").expect("a Location header").to_owned();
    assert_eq!(location, "/salesOrders/1");

    let stored = erp.orders();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].external_id, "shopify-1042");
    assert_eq!(stored[0].items[0].item, "TSHIRT-BLK-M");
    assert_eq!(stored[0].total, Some(6937));

    let fetched: Value =
        client().get(format!("{}{location}", erp.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(fetched["externalId"], "shopify-1042");
    assert_eq!(fetched["id"], 1);
    assert_eq!(erp.stats().created, 1);
    erp.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unknown_sku_is_a_400_naming_the_field_and_value() {
    let known: BTreeSet<String> = ["TSHIRT-BLK-M".to_owned()].into();
    let erp = start(ErpConfig { known_skus: Some(known), ..ErpConfig::default() }).await;
    let response = post(&erp, &order("shopify-1", &["TSHIRT-BLK-M", "TSHIRT-XXX"]), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(header(&response, "content-type").is_some_and(|t| t.contains("type=error")), "NetSuite error media type");
    let errors = error_codes(response).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (code, path, detail) = &errors[0];
    assert_eq!(code, "INVALID_KEY_OR_REF");
    assert_eq!(path.as_deref(), Some("items[1].item"));
    assert_eq!(detail, "Invalid item reference key TSHIRT-XXX for field items[1].item.");
    assert!(erp.orders().is_empty());
    assert_eq!(erp.stats().rejected_business, 1);
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let erp = start(ErpConfig::default()).await;
    let response = client()
        .post(format!("{}/salesOrders", erp.base_url()))
        .header("content-type", "application/json")
        .body("{\"externalId\": \"x\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(response).await[0].0, "INVALID_CONTENT");
    assert_eq!(erp.stats().rejected_business, 1);
}

#[tokio::test]
async fn an_idempotent_replay_returns_the_same_location_and_stores_once() {
    let erp = start(ErpConfig::default()).await;
    let body = order("shopify-1042", &["MUG-WHT"]);
    let first = post(&erp, &body, Some("order-1042:1")).await;
    let second = post(&erp, &body, Some("order-1042:1")).await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert_eq!(second.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&first, "location"), header(&second, "location"));
    assert_eq!(header(&first, "idempotency-replayed"), None);
    assert_eq!(header(&second, "idempotency-replayed"), Some("true"));
    assert_eq!(erp.orders().len(), 1);
    let stats = erp.stats();
    assert_eq!((stats.created, stats.idempotent_replays), (1, 1));

    // The same external id under another key, or without one, is a duplicate.
    for key in [Some("another-key"), None] {
        let response = post(&erp, &body, key).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let errors = error_codes(response).await;
        assert_eq!(errors[0].0, "DUPLICATE_EXTERNAL_ID");
        assert!(errors[0].2.contains("shopify-1042"), "{}", errors[0].2);
    }
    assert_eq!(erp.orders().len(), 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_store_exactly_once() {
    // Latency keeps all five in flight together, as when a runner retries a timed-out
    // request while the first attempt is still being processed.
    let erp = start(ErpConfig { latency: Duration::from_millis(200), ..ErpConfig::default() }).await;
    let body = order("shopify-7", &["MUG-WHT"]);
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let url = format!("{}/salesOrders", erp.base_url());
        let body = body.clone();
        requests.spawn(async move {
            let response = client().post(url).header("Idempotency-Key", "same-key").json(&body).send().await.unwrap();
            (response.status(), header(&response, "location").map(str::to_owned))
        });
    }
    let answers = requests.join_all().await;
    assert!(
        answers.iter().all(
            |(status, location)| *status == StatusCode::NO_CONTENT && location.as_deref() == Some("/salesOrders/1")
        ),
        "{answers:?}"
    );
    assert_eq!(erp.orders().len(), 1);
    let stats = erp.stats();
    assert_eq!((stats.created, stats.idempotent_replays), (1, 4));
}

#[tokio::test]
async fn the_idempotency_header_name_is_configurable() {
    let erp =
        start(ErpConfig { idempotency_header: "x-netsuite-idempotency-key".parse().unwrap(), ..ErpConfig::default() })
            .await;
    let body = order("shopify-9", &["MUG-WHT"]);
    for _ in 0..2 {
        let response = client()
            .post(format!("{}/salesOrders", erp.base_url()))
            .header("X-NetSuite-Idempotency-Key", "k")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(erp.stats().idempotent_replays, 1);
    assert_eq!(erp.orders().len(), 1);
}

#[tokio::test]
async fn put_by_external_id_creates_then_updates() {
    let erp = start(ErpConfig::default()).await;
    let url = format!("{}/salesOrders/eid:shopify-5", erp.base_url());
    let mut body = order("shopify-5", &["MUG-WHT"]);
    let created = client().put(&url).json(&body).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&created, "location"), Some("/salesOrders/1"));

    body["items"][0]["quantity"] = json!(3);
    let updated = client().put(&url).json(&body).send().await.unwrap();
    assert_eq!(updated.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&updated, "location"), Some("/salesOrders/1"));

    let stored = erp.order_by_external_id("shopify-5").unwrap();
    assert_eq!((stored.revision, stored.items[0].quantity), (2, 3.0));
    let stats = erp.stats();
    assert_eq!((stats.created, stats.updated), (1, 1));

    let by_internal_id = client().put(format!("{}/salesOrders/1", erp.base_url())).json(&body).send().await.unwrap();
    assert_eq!(by_internal_id.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn parallel_requests_beyond_the_limit_get_429_with_retry_after() {
    // A second of latency keeps the first requests in flight while the others arrive.
    let erp = start(ErpConfig { max_concurrency: 2, latency: Duration::from_secs(1), ..ErpConfig::default() }).await;
    let mut requests = tokio::task::JoinSet::new();
    for index in 0..6 {
        let url = format!("{}/salesOrders", erp.base_url());
        let body = order(&format!("shopify-{index}"), &["MUG-WHT"]);
        requests.spawn(async move {
            let response = client().post(url).json(&body).send().await.unwrap();
            let retry_after = header(&response, "retry-after").map(str::to_owned);
            let status = response.status();
            let codes = if status == StatusCode::TOO_MANY_REQUESTS { error_codes(response).await } else { Vec::new() };
            (status, retry_after, codes)
        });
    }
    let answers = requests.join_all().await;
    let throttled: Vec<_> = answers.iter().filter(|(status, ..)| *status == StatusCode::TOO_MANY_REQUESTS).collect();
    assert!(!throttled.is_empty(), "{answers:?}");
    for (_, retry_after, codes) in &throttled {
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(codes[0].0, "CONCURRENCY_LIMIT_EXCEEDED");
    }
    let accepted = answers.iter().filter(|(status, ..)| *status == StatusCode::NO_CONTENT).count();
    assert_eq!(accepted + throttled.len(), 6, "{answers:?}");
    let stats = erp.stats();
    assert_eq!(stats.throttled, throttled.len() as u64);
    assert_eq!(stats.created, accepted as u64);
}

#[tokio::test]
async fn the_request_after_the_limit_is_refused_while_others_are_stalled() {
    let erp = start(ErpConfig { max_concurrency: 2, ..ErpConfig::default() }).await;
    erp.set_paused(true);
    let mut stalled = tokio::task::JoinSet::new();
    for index in 0..2 {
        let url = format!("{}/salesOrders", erp.base_url());
        let body = order(&format!("shopify-{index}"), &["MUG-WHT"]);
        stalled.spawn(async move { client().post(url).json(&body).send().await.unwrap().status() });
    }
    wait_in_flight(&erp, 2).await;
    let third = post(&erp, &order("shopify-3", &["MUG-WHT"]), None).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&third, "retry-after"), Some("1"));

    erp.set_paused(false);
    assert_eq!(stalled.join_all().await, [StatusCode::NO_CONTENT, StatusCode::NO_CONTENT]);
    assert_eq!(erp.orders().len(), 2);
    assert_eq!(erp.stats().throttled, 1);
}

#[tokio::test]
async fn a_bearer_token_is_required_when_configured() {
    let erp = start(ErpConfig { bearer_token: Some("s3cret-token".to_owned()), ..ErpConfig::default() }).await;
    let url = format!("{}/salesOrders", erp.base_url());
    let body = order("shopify-1", &["MUG-WHT"]);

    let missing = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&missing, "www-authenticate"), Some("Bearer"));
    let wrong = client().post(&url).bearer_auth("guess").json(&body).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong_body = wrong.text().await.unwrap();
    assert!(wrong_body.contains("INVALID_LOGIN"));
    assert!(!wrong_body.contains("s3cret-token"), "the token leaked");

    let right = client().post(&url).bearer_auth("s3cret-token").json(&body).send().await.unwrap();
    assert_eq!(right.status(), StatusCode::NO_CONTENT);
    let stats = erp.stats();
    assert_eq!((stats.unauthorized, stats.created), (2, 1));
    assert!(!format!("{erp:?}").contains("s3cret-token"), "Debug leaks the token");
}

#[tokio::test]
async fn a_down_erp_answers_503_until_it_is_back() {
    let erp = start(ErpConfig::default()).await;
    erp.set_down(true);
    let body = order("shopify-1", &["MUG-WHT"]);
    assert_eq!(post(&erp, &body, None).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    erp.set_down(false);
    assert_eq!(post(&erp, &body, None).await.status(), StatusCode::NO_CONTENT);
    let stats = erp.stats();
    assert_eq!((stats.unavailable, stats.created), (1, 1));
}

#[tokio::test]
async fn stored_orders_are_listed_in_pages() {
    let erp = start(ErpConfig::default()).await;
    for index in 0..3 {
        post(&erp, &order(&format!("shopify-{index}"), &["MUG-WHT"]), None).await;
    }
    let page: Value = client()
        .get(format!("{}/salesOrders?limit=2&offset=1", erp.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["totalResults"], 3);
    assert_eq!(page["count"], 2);
    assert_eq!(page["hasMore"], false);
    assert_eq!(page["items"][0]["externalId"], "shopify-1");

    let missing = client().get(format!("{}/salesOrders/eid:nope", erp.base_url())).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn after_shutdown_the_port_is_closed() {
    let erp = start(ErpConfig::default()).await;
    let url = format!("{}/salesOrders", erp.base_url());
    erp.shutdown().await.unwrap();
    let refused = client().get(url).send().await;
    assert!(refused.is_err(), "{refused:?}");
}
