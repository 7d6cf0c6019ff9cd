//! The Admin API's rate limits and GraphQL mutations over real HTTP on loopback.

use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::inventory::{item_gid, location_gid};
use super::*;

const TOKEN: &str = "shpat_admin_test";

async fn api(config: AdminApiConfig) -> AdminApi {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    AdminApi::serve_with(listener, TOKEN, config).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn graphql(api: &AdminApi, query: &str, variables: Value) -> Value {
    let url = format!("{}/admin/api/2026-10/graphql.json", api.base_url());
    let answer = client()
        .post(url)
        .header("X-Shopify-Access-Token", TOKEN)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

const SET: &str = "mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) { inventoryAdjustmentGroup { changes { delta } } userErrors { field message code } } }";
const ADJUST: &str = "mutation Adjust($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) { userErrors { field message } } }";

/// Sets `quantity` of `item` at location 1, compared with `from`.
fn set_input(item: u64, quantity: i64, from: Option<i64>) -> Value {
    json!({ "name": "available", "reason": "correction",
            "quantities": [{ "inventoryItemId": item_gid(item), "locationId": location_gid(1), "quantity": quantity, "changeFromQuantity": from }] })
}

#[tokio::test]
async fn the_rest_bucket_reports_its_level_and_refuses_with_429_and_retry_after() {
    let api = api(AdminApiConfig {
        rest_bucket: BucketConfig { capacity: 3.0, leak_per_second: 0.001 },
        ..AdminApiConfig::default()
    })
    .await;
    let url = format!("{}/admin/api/2026-10/orders.json", api.base_url());
    let call = || client().get(&url).header("X-Shopify-Access-Token", TOKEN).send();
    for n in 1..=3 {
        let ok = call().await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["x-shopify-shop-api-call-limit"], format!("{n}/3").as_str());
    }
    let refused = call().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "2.0");
    assert_eq!(refused.headers()["x-shopify-shop-api-call-limit"], "3/3");
}

#[tokio::test]
async fn set_quantities_compares_and_sets_and_a_replayed_key_returns_the_original_result() {
    let api = api(AdminApiConfig::default()).await;
    let item = api.stock("SKU-A", 1, 10);
    let first = graphql(&api, SET, json!({ "input": set_input(item, 7, Some(10)), "key": "k1" })).await;
    let payload = &first["data"]["inventorySetQuantities"];
    assert_eq!(payload["userErrors"], json!([]));
    assert_eq!(payload["inventoryAdjustmentGroup"]["changes"][0]["delta"], -3);
    assert_eq!(api.available("SKU-A", 1), Some(7));
    let cost = &first["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], 10.0);
    assert_eq!(cost["throttleStatus"]["maximumAvailable"], 1000.0);
    assert_eq!(cost["throttleStatus"]["restoreRate"], 100.0);

    // The same key again, even with other input: the original result, nothing applied.
    let replay = graphql(&api, SET, json!({ "input": set_input(item, 1, None), "key": "k1" })).await;
    assert_eq!(replay["data"], first["data"]);
    assert_eq!(api.available("SKU-A", 1), Some(7));

    // A stale compare quantity is a user error and changes nothing.
    let stale = graphql(&api, SET, json!({ "input": set_input(item, 1, Some(10)), "key": "k2" })).await;
    let errors = &stale["data"]["inventorySetQuantities"]["userErrors"];
    assert_eq!(errors[0]["code"], "CHANGE_FROM_QUANTITY_STALE");
    assert_eq!(errors[0]["field"], json!(["input", "quantities", "0", "changeFromQuantity"]));
    assert_eq!(api.available("SKU-A", 1), Some(7));

    let unknown = graphql(&api, SET, json!({ "input": set_input(item + 500, 1, None), "key": "k3" })).await;
    assert_eq!(unknown["data"]["inventorySetQuantities"]["userErrors"][0]["code"], "INVALID_INVENTORY_ITEM");
    assert_eq!(api.inventory_levels().len(), 1);
}

#[tokio::test]
async fn adjustments_need_a_key_and_an_empty_cost_bucket_throttles() {
    let api = api(AdminApiConfig {
        graphql_bucket: BucketConfig { capacity: 25.0, leak_per_second: 0.001 },
        ..AdminApiConfig::default()
    })
    .await;
    let item = api.stock("SKU-B", 1, 5);
    let input = json!({ "name": "available", "reason": "received",
                        "changes": [{ "inventoryItemId": item_gid(item), "locationId": location_gid(1), "delta": 2 }] });
    let unkeyed = "mutation A($input: InventoryAdjustQuantitiesInput!) { inventoryAdjustQuantities(input: $input) { userErrors { field } } }";
    let refused = graphql(&api, unkeyed, json!({ "input": input })).await;
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("@idempotent"), "{refused}");
    assert_eq!(api.available("SKU-B", 1), Some(5));

    let adjusted = graphql(&api, ADJUST, json!({ "input": input, "key": "a1" })).await;
    assert_eq!(adjusted["data"]["inventoryAdjustQuantities"]["userErrors"], json!([]));
    assert_eq!(api.available("SKU-B", 1), Some(7));
    assert_eq!(adjusted["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"], 5.0);

    // 25 points, 10 a call: the third call does not fit.
    let throttled = graphql(&api, ADJUST, json!({ "input": input, "key": "a2" })).await;
    assert_eq!(throttled["errors"][0]["extensions"]["code"], "THROTTLED");
    assert!(throttled.get("data").is_none());
    assert_eq!(throttled["extensions"]["cost"]["actualQueryCost"], Value::Null);
    assert_eq!(api.available("SKU-B", 1), Some(7));
}

#[tokio::test]
async fn a_refund_is_made_once_per_key_and_never_beyond_what_was_bought() {
    let api = api(AdminApiConfig::default()).await;
    let order = OrderGenerator::new(5, vec!["SKU-R".into()]).unwrap().next_order();
    let line = &order.line_items[0];
    let input = json!({ "orderId": format!("gid://shopify/Order/{}", order.id), "note": "damaged",
                        "refundLineItems": [{ "lineItemId": format!("gid://shopify/LineItem/{}", line.id), "quantity": 1 }] });
    let query = "mutation R($input: RefundInput!, $key: String!) { refundCreate(input: $input) @idempotent(key: $key) { refund { id } userErrors { field message } } }";
    let missing = graphql(&api, query, json!({ "input": input, "key": "r0" })).await;
    assert_eq!(missing["data"]["refundCreate"]["userErrors"][0]["field"], json!(["orderId"]));
    api.put(order.clone());
    let first = graphql(&api, query, json!({ "input": input, "key": "r1" })).await;
    let again = graphql(&api, query, json!({ "input": input, "key": "r1" })).await;
    assert_eq!(first["data"], again["data"]);
    let refunds = api.refunds();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].amount_minor, order::parse_minor(&line.price).unwrap());
    let too_many = json!({ "orderId": input["orderId"], "refundLineItems": [{ "lineItemId": input["refundLineItems"][0]["lineItemId"], "quantity": line.quantity + 1 }] });
    let refused = graphql(&api, query, json!({ "input": too_many, "key": "r2" })).await;
    assert_eq!(refused["data"]["refundCreate"]["userErrors"][0]["field"], json!(["refundLineItems", "0", "quantity"]));
    assert_eq!(api.refunds().len(), 1);
}
