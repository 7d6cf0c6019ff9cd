//! The BigCommerce-like store over real HTTP on loopback.

use super::*;
use crate::storefront::OrderGenerator;

const TOKEN: &str = "bc-test-token";

async fn store(config: BigCommerceConfig) -> BigCommerceApi {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    BigCommerceApi::serve(listener, "abc123", TOKEN, config).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_order_is_refetched_in_the_v2_shape_with_its_lines() {
    let api = store(BigCommerceConfig::default()).await;
    let order = OrderGenerator::new(3, vec!["SKU-1".into()]).unwrap().next_order();
    api.stock("SKU-1", 1, 5);
    let id = api.put_order(order.clone());
    let url = format!("{}/v2/orders/{id}?include=consignments.line_items", api.base_url());
    let answer = client().get(&url).header("X-Auth-Token", TOKEN).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "x-rate-limit-requests-quota").as_deref(), Some("150"));
    assert_eq!(header(&answer, "x-rate-limit-requests-left").as_deref(), Some("149"));
    assert_eq!(header(&answer, "x-rate-limit-time-window-ms").as_deref(), Some("30000"));
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["id"], id);
    assert!(body["total_inc_tax"].as_str().unwrap().ends_with("00"), "{body}");
    assert!(body["date_created"].as_str().unwrap().ends_with("+0000"), "{body}");
    let lines = &body["consignments"][0]["shipping"][0]["line_items"];
    assert_eq!(lines[0]["sku"], "SKU-1");
    assert_eq!(lines[0]["variant_id"], api.variant("SKU-1").unwrap());

    let missing = client()
        .get(format!("{}/v2/orders/999999", api.base_url()))
        .header("X-Auth-Token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let anonymous = client().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn over_the_window_quota_a_429_has_the_headers_and_no_retry_after() {
    let api = store(BigCommerceConfig { quota: 3, ..BigCommerceConfig::default() }).await;
    let url = format!("{}/v3/catalog/variants", api.base_url());
    for left in ["2", "1", "0"] {
        let ok = client().get(&url).header("X-Auth-Token", TOKEN).send().await.unwrap();
        assert_eq!((ok.status().as_u16(), header(&ok, "x-rate-limit-requests-left").as_deref()), (200, Some(left)));
    }
    let refused = client().get(&url).header("X-Auth-Token", TOKEN).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), None);
    let reset: u64 = header(&refused, "x-rate-limit-time-reset-ms").unwrap().parse().unwrap();
    assert!(reset <= 30_000);
    assert_eq!(header(&refused, "x-rate-limit-requests-left").as_deref(), Some("0"));
}

#[tokio::test]
async fn a_bare_429_carries_no_rate_limit_headers() {
    let api = store(BigCommerceConfig { bare_429_ratio: 1.0, ..BigCommerceConfig::default() }).await;
    let refused = client()
        .get(format!("{}/v3/catalog/variants", api.base_url()))
        .header("X-Auth-Token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().keys().all(|k| !k.as_str().starts_with("x-rate-limit")), "{:?}", refused.headers());
}

#[tokio::test]
async fn an_absolute_adjustment_sets_stock_and_refuses_an_unknown_variant() {
    let api = store(BigCommerceConfig::default()).await;
    let variant = api.stock("SKU-9", 2, 10);
    let url = format!("{}/v3/inventory/adjustments/absolute", api.base_url());
    let body = json!({ "reason": "sync", "items": [{ "location_id": 2, "variant_id": variant, "quantity": 4 }] });
    let ok = client().put(&url).header("X-Auth-Token", TOKEN).json(&body).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.json::<Value>().await.unwrap()["transaction_id"].is_string());
    assert_eq!(api.available("SKU-9", 2), Some(4));
    assert_eq!(api.most_concurrent_adjustments(), 1);

    let bad = json!({ "items": [{ "location_id": 2, "variant_id": 4242, "quantity": 1 }] });
    let refused = client().put(&url).header("X-Auth-Token", TOKEN).json(&bad).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("items.0.variant_id"));
}
