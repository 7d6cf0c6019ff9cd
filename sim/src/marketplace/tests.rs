//! The marketplaces over real HTTP on loopback.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::walmart::{self, WalmartConfig};
use super::{Faults, Limit, ListingCause, MarketplaceConfig, MarketplaceHandle, NotificationConfig, Operation, bind};
use crate::test_support::{Receiver, client};

/// A rate at which no token comes back while a test runs.
const NO_REFILL: f64 = 0.000_001;

async fn start(config: MarketplaceConfig) -> MarketplaceHandle {
    bind(config, "127.0.0.1:0").await.expect("bind the marketplace")
}

async fn access_token(market: &MarketplaceHandle) -> String {
    let config = market.config();
    let response = client()
        .post(market.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={}&client_id={}&client_secret={}",
            urlencode(&config.refresh_token),
            urlencode(&config.client_id),
            urlencode(&config.client_secret)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 3600);
    body["access_token"].as_str().unwrap().to_owned()
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn get(market: &MarketplaceHandle, token: &str, path_and_query: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path_and_query}", market.base_url()))
        .header("x-amz-access-token", token)
        .send()
        .await
        .unwrap()
}

fn orders_path(market: &MarketplaceHandle, extra: &str) -> String {
    format!(
        "/orders/v0/orders?MarketplaceIds={}&CreatedAfter=2020-01-01T00:00:00Z{extra}",
        market.config().marketplace_id
    )
}

#[tokio::test]
async fn lwa_tokens_are_required_checked_and_expire() {
    let market = start(MarketplaceConfig::default()).await;
    let refused = client()
        .post(market.token_url())
        .body("grant_type=refresh_token&refresh_token=x&client_id=wrong&client_secret=wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let anonymous = get(&market, "", &orders_path(&market, "")).await;
    assert_eq!(anonymous.status(), StatusCode::FORBIDDEN);
    assert_eq!(anonymous.headers()["x-amzn-ratelimit-limit"], "0.0167");
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "Unauthorized");

    let token = access_token(&market).await;
    assert!(token.starts_with("Atza|"));
    assert_eq!(get(&market, &token, &orders_path(&market, "")).await.status(), StatusCode::OK);
    market.expire_access_tokens();
    let expired = get(&market, &token, &orders_path(&market, "")).await;
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "The access token you provided has expired.");
    let stats = market.stats();
    assert_eq!((stats.tokens_issued, stats.token_refusals, stats.unauthorized), (1, 1, 2));
}

#[tokio::test]
async fn each_operation_has_its_own_bucket_and_names_its_rate() {
    let mut config = MarketplaceConfig::default();
    config.limits.insert(Operation::GetOrders, Limit::new(NO_REFILL, 2));
    let market = start(config).await;
    market.set_listing_quantity("SKU-1", 5);
    let (orders, _) = market.place_orders(1).await;
    let token = access_token(&market).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = get(&market, &token, &orders_path(&market, "")).await;
        assert_eq!(response.headers()["x-amzn-ratelimit-limit"], NO_REFILL.to_string().as_str());
        statuses.push(response.status());
    }
    assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
    let throttled = get(&market, &token, &orders_path(&market, "")).await;
    assert!(throttled.headers().get("retry-after").is_none());
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "QuotaExceeded");

    // getOrderItems draws on its own bucket.
    let items = get(&market, &token, &format!("/orders/v0/orders/{}/orderItems", orders[0].amazon_order_id)).await;
    assert_eq!(items.status(), StatusCode::OK);
    assert_eq!(items.headers()["x-amzn-ratelimit-limit"], "0.5");
    let body: Value = items.json().await.unwrap();
    assert_eq!(body["payload"]["OrderItems"][0]["SellerSKU"], "SKU-1");
    assert_eq!(market.stats().throttled, BTreeMap::from([("getOrders", 2)]));
}

#[tokio::test]
async fn orders_are_paged_with_an_opaque_next_token() {
    let market = start(MarketplaceConfig::default()).await;
    market.set_listing_quantity("SKU-1", 100);
    market.set_listing_quantity("SKU-2", 100);
    market.place_orders(5).await;
    let token = access_token(&market).await;
    let mut seen = Vec::new();
    let mut path = orders_path(&market, "&MaxResultsPerPage=2");
    let mut pages = 0;
    loop {
        let body: Value = get(&market, &token, &path).await.json().await.unwrap();
        pages += 1;
        for order in body["payload"]["Orders"].as_array().unwrap() {
            seen.push(order["AmazonOrderId"].as_str().unwrap().to_owned());
            assert_eq!(order["OrderStatus"], "Unshipped");
        }
        match body["payload"]["NextToken"].as_str() {
            Some(next) => path = format!("/orders/v0/orders?NextToken={}", urlencode(next)),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = market.orders().into_iter().map(|order| order.amazon_order_id).collect();
    assert_eq!(seen.iter().collect::<BTreeSet<_>>(), expected.iter().collect::<BTreeSet<_>>());
    assert_eq!(seen.len(), 5);

    let bad = get(&market, &token, "/orders/v0/orders?NextToken=not-a-token").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let missing = get(&market, &token, "/orders/v0/orders?CreatedAfter=2020-01-01T00:00:00Z").await;
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "MarketplaceIds is required.");
}

#[tokio::test]
async fn the_marketplace_never_sells_more_than_it_shows() {
    let market = start(MarketplaceConfig { seed: 3, ..MarketplaceConfig::default() }).await;
    market.set_listing_quantity("SKU-1", 4);
    let (orders, _) = market.place_orders(10).await;
    let sold: u32 = orders.iter().flat_map(|order| &order.items).map(|item| item.quantity_ordered).sum();
    assert_eq!(sold, 4);
    assert_eq!(market.listing_quantity("SKU-1"), Some(0));
    let history = market.listing_history("SKU-1");
    assert_eq!(history[0].cause, ListingCause::Seeded);
    assert!(history.windows(2).all(|pair| pair[0].at <= pair[1].at));
}

async fn patch(market: &MarketplaceHandle, token: &str, sku: &str, quantity: Value) -> reqwest::Response {
    let config = market.config();
    client()
        .patch(format!(
            "{}/listings/2021-08-01/items/{}/{sku}?marketplaceIds={}",
            market.base_url(),
            config.seller_id,
            config.marketplace_id
        ))
        .header("x-amz-access-token", token)
        .json(&json!({"productType": "PRODUCT", "patches": [{
            "op": "replace",
            "path": "/attributes/fulfillment_availability",
            "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}],
        }]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn listings_patches_set_the_quantity_shown() {
    let market = start(MarketplaceConfig::default()).await;
    let token = access_token(&market).await;
    let accepted = patch(&market, &token, "SKU-9", json!(12)).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    let body: Value = accepted.json().await.unwrap();
    assert_eq!(body["status"], "ACCEPTED");
    assert_eq!(market.listing_quantity("SKU-9"), Some(12));

    let refused = patch(&market, &token, "SKU-9", json!(-1)).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.unwrap();
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("patches[0].value[0].quantity -1"), "{message}");
    assert_eq!(market.listing_quantity("SKU-9"), Some(12));
    assert_eq!(market.listing_history("SKU-9").len(), 1);
    assert_eq!(market.stats().listing_updates, 1);
}

async fn send_feed(market: &MarketplaceHandle, token: &str, document: &Value) -> reqwest::Response {
    let http = client();
    let created: Value = http
        .post(format!("{}/feeds/2021-06-30/documents", market.base_url()))
        .header("x-amz-access-token", token)
        .json(&json!({"contentType": "application/json; charset=UTF-8"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload = http.put(created["url"].as_str().unwrap()).body(document.to_string()).send().await.unwrap();
    assert_eq!(upload.status(), StatusCode::OK);
    http.post(format!("{}/feeds/2021-06-30/feeds", market.base_url()))
        .header("x-amz-access-token", token)
        .json(&json!({
            "feedType": "JSON_LISTINGS_FEED",
            "marketplaceIds": [market.config().marketplace_id],
            "inputFeedDocumentId": created["feedDocumentId"],
        }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_listings_feed_moves_through_its_states_and_the_sixth_in_the_window_is_refused() {
    let mut config = MarketplaceConfig::default();
    config.limits.insert(Operation::CreateFeed, Limit::new(NO_REFILL, 100));
    let market = start(config).await;
    let token = access_token(&market).await;
    let document = json!({
        "header": {"sellerId": market.config().seller_id, "version": "2.0"},
        "messages": [
            {"messageId": 1, "sku": "SKU-A", "operationType": "PATCH", "productType": "PRODUCT",
             "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                          "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 7}]}]},
            {"messageId": 2, "sku": "SKU-B", "operationType": "PATCH", "productType": "PRODUCT",
             "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                          "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": "many"}]}]},
        ],
    });
    let created = send_feed(&market, &token, &document).await;
    assert_eq!(created.status(), StatusCode::ACCEPTED);
    let feed_id = created.json::<Value>().await.unwrap()["feedId"].as_str().unwrap().to_owned();
    let mut states = Vec::new();
    let mut last = Value::Null;
    for _ in 0..3 {
        last = get(&market, &token, &format!("/feeds/2021-06-30/feeds/{feed_id}")).await.json().await.unwrap();
        states.push(last["processingStatus"].as_str().unwrap().to_owned());
    }
    assert_eq!(states, ["IN_PROGRESS", "DONE", "DONE"]);
    assert_eq!(market.listing_quantity("SKU-A"), Some(7));
    assert_eq!(market.listing_quantity("SKU-B"), None);
    let report_doc: Value = get(
        &market,
        &token,
        &format!("/feeds/2021-06-30/documents/{}", last["resultFeedDocumentId"].as_str().unwrap()),
    )
    .await
    .json()
    .await
    .unwrap();
    let report: Value = client().get(report_doc["url"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    assert_eq!(report["summary"]["messagesAccepted"], 1);
    assert_eq!(report["issues"][0]["messageId"], 2);

    let garbage = send_feed(&market, &token, &json!("not a feed")).await;
    let garbage_id = garbage.json::<Value>().await.unwrap()["feedId"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        last = get(&market, &token, &format!("/feeds/2021-06-30/feeds/{garbage_id}")).await.json().await.unwrap();
    }
    assert_eq!(last["processingStatus"], "FATAL");

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(send_feed(&market, &token, &document).await.status());
    }
    assert_eq!(
        statuses,
        [StatusCode::ACCEPTED, StatusCode::ACCEPTED, StatusCode::ACCEPTED, StatusCode::TOO_MANY_REQUESTS]
    );
}

#[tokio::test]
async fn order_change_notifications_carry_ids_and_faults_follow_the_seed() {
    let receiver = Receiver::start().await;
    let mut notifications = NotificationConfig::new(&receiver.url);
    notifications.api_key_header = Some(("x-api-key".to_owned(), "eventbridge-key".to_owned()));
    notifications.faults = Faults { duplicate_ratio: 1.0, ..Faults::default() };
    let market = start(MarketplaceConfig { notifications: Some(notifications), ..MarketplaceConfig::default() }).await;
    market.set_listing_quantity("SKU-1", 100);
    let (orders, report) = market.place_orders(3).await;
    assert_eq!((report.deliveries, report.acknowledged, report.duplicated), (6, 6, 3));
    let received = receiver.received();
    assert_eq!(received.len(), 6);
    assert!(received.iter().all(|r| r.header("x-api-key") == Some("eventbridge-key")));
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for delivery in &received {
        let event = delivery.json();
        assert_eq!(event["detail-type"], "ORDER_CHANGE");
        let id = event["detail"]["NotificationMetadata"]["NotificationId"].as_str().unwrap().to_owned();
        *by_id.entry(id).or_default() += 1;
        let order_id = &event["detail"]["Payload"]["OrderChangeNotification"]["AmazonOrderId"];
        assert!(orders.iter().any(|order| order.amazon_order_id == *order_id));
    }
    assert!(by_id.values().all(|count| *count == 2), "{by_id:?}");
    assert!(format!("{:?}", market.config()).contains("<redacted>"));
    assert!(!format!("{:?}", market.config()).contains("eventbridge-key"));

    // Drops and reorders are chosen by the seed: two runs make the same choices.
    let faults = Faults { drop_ratio: 0.3, reorder_ratio: 0.3, seed: 11, ..Faults::default() };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let receiver = Receiver::start().await;
        let mut notifications = NotificationConfig::new(&receiver.url);
        notifications.faults = faults;
        let market =
            start(MarketplaceConfig { notifications: Some(notifications), ..MarketplaceConfig::default() }).await;
        market.set_listing_quantity("SKU-1", 100);
        let (_, report) = market.place_orders(20).await;
        runs.push((report.dropped.len(), report.reordered, report.deliveries));
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].0 > 0 && runs[0].1 > 0, "{runs:?}");
}

fn walmart_request(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    let request =
        request.header("WM_QOS.CORRELATION_ID", uuid::Uuid::now_v7().to_string()).header("WM_SVC.NAME", "Entrepot");
    match token {
        Some(token) => request.header("WM_SEC.ACCESS_TOKEN", token),
        None => request,
    }
}

async fn walmart_token(base_url: &str) -> String {
    let response = walmart_request(client().post(format!("{base_url}/v3/token")), None)
        .basic_auth("walmart-client-id", Some("walmart-client-secret"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 900);
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn walmart_requires_its_headers_counts_tokens_and_pages_orders_by_cursor() {
    let config = WalmartConfig { inventory_limit: Limit::new(NO_REFILL, 3), ..WalmartConfig::default() };
    let walmart = walmart::bind(config, "127.0.0.1:0").await.unwrap();
    let base = walmart.base_url();
    let token = walmart_token(&base).await;

    let bare = client()
        .get(format!("{base}/v3/inventory?sku=SKU-1"))
        .header("WM_SEC.ACCESS_TOKEN", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::BAD_REQUEST);
    let body: Value = bare.json().await.unwrap();
    assert_eq!(body["errors"][0]["info"], "required headers missing: WM_QOS.CORRELATION_ID, WM_SVC.NAME");

    let put = |amount: Value| {
        walmart_request(client().put(format!("{base}/v3/inventory?sku=SKU-1")), Some(&token))
            .json(&json!({"sku": "SKU-1", "quantity": {"unit": "EACH", "amount": amount}}))
            .send()
    };
    let first = put(json!(8)).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["x-current-token-count"], "2");
    assert!(first.headers()["x-next-replenishment-time"].to_str().unwrap().parse::<u128>().is_ok());
    assert_eq!(walmart.inventory("SKU-1"), Some(8));
    assert_eq!(put(json!(-2)).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(put(json!(9)).await.unwrap().status(), StatusCode::OK);
    let throttled = put(json!(10)).await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers()["x-current-token-count"], "0");
    assert_eq!(walmart.inventory("SKU-1"), Some(9));
    assert_eq!(walmart.stats().inventory_throttled, 1);

    let placed = walmart.place_orders(5);
    assert!(!placed.is_empty());
    let mut seen = Vec::new();
    let mut path = "/v3/orders?createdStartDate=2020-01-01T00:00:00Z&limit=2".to_owned();
    loop {
        let body: Value = walmart_request(client().get(format!("{base}{path}")), Some(&token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for order in body["list"]["elements"]["order"].as_array().unwrap() {
            seen.push(order["purchaseOrderId"].as_str().unwrap().to_owned());
        }
        match body["list"]["meta"]["nextCursor"].as_str() {
            Some(next) => path = format!("/v3/orders{next}"),
            None => break,
        }
    }
    assert_eq!(seen, placed);

    walmart.expire_access_tokens();
    let expired = walmart_request(client().get(format!("{base}/v3/orders")), Some(&token)).send().await.unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    let history = walmart.inventory_history("SKU-1");
    assert!(history.iter().all(|change| change.quantity >= 0));
}
