//! The WMS over real HTTP on loopback.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::events::{EVENT_ID_HEADER, SIGNATURE_HEADER, verify};
use super::{Faults, MovementKind, MovementRequest, WebhookConfig, WmsConfig, WmsHandle, bind};
use crate::test_support::{Receiver, client};

async fn start(config: WmsConfig) -> WmsHandle {
    bind(config, "127.0.0.1:0").await.expect("bind the WMS")
}

fn movement(kind: MovementKind, sku: &str, quantity: i64) -> Value {
    json!({"kind": kind, "sku": sku, "location": "DC-EAST", "quantity": quantity, "reference": "order-1"})
}

async fn post(wms: &WmsHandle, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut request = client().post(format!("{}/movements", wms.base_url())).bearer_auth("wms-token").json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn movements_reserve_and_ship_and_refusals_name_the_numbers() {
    let wms = start(WmsConfig { bearer_token: Some("wms-token".to_owned()), ..WmsConfig::default() }).await;
    let anonymous = client().get(format!("{}/inventory", wms.base_url())).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(post(&wms, &movement(MovementKind::Receipt, "SKU-1", 5), None).await.status(), StatusCode::CREATED);
    let sale = post(&wms, &movement(MovementKind::Sale, "SKU-1", 3), Some("order-1")).await;
    assert_eq!(sale.status(), StatusCode::CREATED);
    let first: Value = sale.json().await.unwrap();
    assert_eq!(wms.shippable("SKU-1"), 2);

    // A retried request with the same key answers the first outcome and changes nothing.
    let replay = post(&wms, &movement(MovementKind::Sale, "SKU-1", 3), Some("order-1")).await;
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    assert_eq!(wms.shippable("SKU-1"), 2);
    let reused = post(&wms, &movement(MovementKind::Sale, "SKU-1", 1), Some("order-1")).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);

    let oversold = post(&wms, &movement(MovementKind::Sale, "SKU-1", 3), None).await;
    assert_eq!(oversold.status(), StatusCode::CONFLICT);
    let body: Value = oversold.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INSUFFICIENT_STOCK");
    assert_eq!(
        body["error"]["message"],
        "insufficient stock of SKU-1 at DC-EAST: Sale of 3 needs 3 available, there are 2"
    );
    assert_eq!(post(&wms, &movement(MovementKind::Pick, "SKU-1", 3), None).await.status(), StatusCode::CREATED);
    let bad = post(&wms, &json!({"kind": "teleport", "sku": "SKU-1", "location": "X", "quantity": 1}), None).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let sku: Value = client()
        .get(format!("{}/inventory/SKU-1", wms.base_url()))
        .bearer_auth("wms-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((sku["shippable"].as_i64(), sku["version"].as_u64()), (Some(2), Some(3)));
    assert_eq!(sku["levels"][0]["onHand"], 2);
    let history: Vec<i64> = wms.shippable_history("SKU-1").iter().map(|point| point.shippable).collect();
    assert_eq!(history, [5, 2, 2]);
    let after_sale = wms.shippable_history("SKU-1")[1].at;
    assert_eq!(wms.shippable_at("SKU-1", after_sale), 2);
    assert_eq!(wms.shippable_at("SKU-1", jiff::Timestamp::UNIX_EPOCH), 0);
}

#[tokio::test]
async fn the_snapshot_pages_by_cursor_and_versions_only_go_up() {
    let wms = start(WmsConfig { seed: 5, ..WmsConfig::default() }).await;
    wms.receive_opening_stock(20).unwrap();
    wms.generate(200);
    let mut latest: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut url = format!("{}/inventory?updatedSince=2020-01-01T00:00:00Z&limit=3", wms.base_url());
    let mut pages = 0;
    loop {
        let body: Value = client().get(&url).send().await.unwrap().json().await.unwrap();
        pages += 1;
        for item in body["items"].as_array().unwrap() {
            let key = (item["sku"].as_str().unwrap().to_owned(), item["location"].as_str().unwrap().to_owned());
            let version = item["version"].as_u64().unwrap();
            assert_eq!(
                item["available"].as_i64(),
                Some(item["onHand"].as_i64().unwrap() - item["reserved"].as_i64().unwrap())
            );
            assert!(latest.insert(key, version).is_none(), "a record appeared twice in one scan");
        }
        match body["nextCursor"].as_str() {
            Some(cursor) => url = format!("{}/inventory?cursor={cursor}", wms.base_url()),
            None => break,
        }
    }
    let levels = wms.levels();
    assert!(pages > 1);
    assert_eq!(latest.len(), levels.len());
    for level in &levels {
        assert_eq!(latest[&(level.sku.clone(), level.location.clone())], level.version);
    }
    for sku in &WmsConfig::default().skus {
        let history = wms.shippable_history(sku);
        assert!(history.windows(2).all(|pair| pair[0].version < pair[1].version));
        assert!(history.iter().all(|point| point.shippable >= 0));
    }
    // Per SKU, the availability feed pages the same way and sums the locations.
    let mut shippable = BTreeMap::new();
    let mut url = format!("{}/availability?limit=2", wms.base_url());
    loop {
        let body: Value = client().get(&url).send().await.unwrap().json().await.unwrap();
        for item in body["items"].as_array().unwrap() {
            shippable.insert(item["sku"].as_str().unwrap().to_owned(), item["shippable"].as_i64().unwrap());
        }
        match body["nextCursor"].as_str() {
            Some(cursor) => url = format!("{}/availability?cursor={cursor}", wms.base_url()),
            None => break,
        }
    }
    for sku in &WmsConfig::default().skus {
        assert_eq!(shippable[sku], wms.shippable(sku), "{sku}");
    }
    let bad = client().get(format!("{}/inventory?cursor=garbage", wms.base_url())).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn movements_are_published_as_signed_webhooks_with_seeded_faults() {
    let receiver = Receiver::start().await;
    let webhook = WebhookConfig::new(&receiver.url, "wms-secret");
    let wms = start(WmsConfig { webhook: Some(webhook), ..WmsConfig::default() }).await;
    wms.receive_opening_stock(10).unwrap();
    let generated = wms.generate(20);
    let report = wms.flush_webhooks().await;
    assert_eq!(report.acknowledged, 24);
    let received = receiver.received();
    let ids: Vec<String> = received.iter().map(|r| r.header(EVENT_ID_HEADER.as_str()).unwrap().to_owned()).collect();
    let expected: Vec<String> = (1..=24).map(|sequence| format!("mv-{sequence}")).collect();
    assert_eq!(ids, expected);
    for delivery in &received {
        let signature = delivery.header(SIGNATURE_HEADER.as_str()).unwrap();
        assert!(verify(b"wms-secret", &delivery.body, signature));
    }
    let last = received.last().unwrap().json();
    assert_eq!(last["movement"]["sequence"], generated.last().unwrap().sequence);
    assert_eq!(last["shippable"], wms.shippable(&generated.last().unwrap().request.sku));
    assert!(
        !format!(
            "{:?}",
            WmsConfig { webhook: Some(WebhookConfig::new("http://x", "wms-secret")), ..WmsConfig::default() }
        )
        .contains("wms-secret")
    );

    let receiver = Receiver::start().await;
    let mut webhook = WebhookConfig::new(&receiver.url, "wms-secret");
    webhook.faults = Faults { duplicate_ratio: 0.2, drop_ratio: 0.2, reorder_ratio: 0.2, seed: 9, ..Faults::default() };
    let wms = start(WmsConfig { webhook: Some(webhook), ..WmsConfig::default() }).await;
    wms.receive_opening_stock(10).unwrap();
    wms.generate(50);
    let report = wms.flush_webhooks().await;
    assert!(report.duplicated > 0 && !report.dropped.is_empty() && report.reordered > 0, "{report:?}");
    assert_eq!(receiver.received().len() as u64, 54 - report.dropped.len() as u64 + report.duplicated);
}

#[test]
fn a_movement_request_reads_from_camel_case_json() {
    let request: MovementRequest = serde_json::from_value(json!({
        "kind": "transfer", "sku": "A", "location": "DC", "toLocation": "STORE", "quantity": 2
    }))
    .unwrap();
    assert_eq!(request.kind, MovementKind::Transfer);
    assert_eq!(request.to_location.as_deref(), Some("STORE"));
}
