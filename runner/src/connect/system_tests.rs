//! The amazon-sp and walmart protocols over real HTTP against the simulated marketplaces.

use entrepot_sim::marketplace::walmart::{self as walmart_sim, WalmartConfig};
use entrepot_sim::marketplace::{self as amazon_sim, Limit, MarketplaceConfig, Operation as SimOperation};
use reqwest::{Method, StatusCode};

use crate::{
    connect::{ConnectorClient, Sent},
    protocol::{Answer, Write, WriteContext},
    queue::{DeliveryItem, Envelope},
    secrets::Secrets,
    test_support::{marketplace_oauth, marketplace_secrets},
};

use entrepot_api::resource::{
    ClientAuth, ConnectorAuth, ConnectorLimits, ConnectorSpec, ConnectorType, Operation, OperationLimit,
};

/// A rate at which no token comes back while a test runs.
const NO_REFILL: f64 = 0.000_001;

fn secrets(values: &[(&str, &str)]) -> Secrets {
    marketplace_secrets(values)
}

fn oauth(token_url: String, client_auth: ClientAuth, refresh: bool) -> ConnectorAuth {
    marketplace_oauth(token_url, client_auth, refresh)
}

fn amazon_spec(market: &amazon_sim::MarketplaceHandle, operations: Vec<OperationLimit>) -> ConnectorSpec {
    ConnectorSpec {
        kind: ConnectorType::AmazonSp,
        endpoint: Some(market.base_url()),
        auth: Some(oauth(market.token_url(), ClientAuth::Body, true)),
        limits: Some(ConnectorLimits { operations, ..Default::default() }),
        ..Default::default()
    }
}

fn amazon_client(market: &amazon_sim::MarketplaceHandle, operations: Vec<OperationLimit>) -> ConnectorClient {
    let config = market.config();
    let secrets = secrets(&[
        ("client-id", &config.client_id),
        ("client-secret", &config.client_secret),
        ("refresh-token", &config.refresh_token),
    ]);
    ConnectorClient::new("amazon-us", "retail", &amazon_spec(market, operations), &secrets).unwrap()
}

fn op(name: &str, method: &str, path: &str, rate: f64, burst: u32) -> OperationLimit {
    OperationLimit { name: name.into(), method: method.into(), path: path.into(), requests_per_second: rate, burst }
}

async fn get(client: &ConnectorClient, path: &str) -> Answer {
    let url = format!("{}{path}", client.endpoint());
    client.send(|http| http.get(url.clone())).await.into_answer(client.system()).await
}

fn status(answer: &Answer) -> Option<StatusCode> {
    match answer {
        Answer::Response { status, .. } => Some(*status),
        _ => None,
    }
}

#[tokio::test]
async fn amazon_gets_an_lwa_token_sends_it_as_x_amz_access_token_and_replaces_it_after_a_403() {
    let market = amazon_sim::bind(MarketplaceConfig::default(), "127.0.0.1:0").await.unwrap();
    market.set_listing_quantity("SKU-1", 5);
    market.place_orders(2).await;
    let client = amazon_client(&market, vec![op("getOrders", "GET", "/orders/v0/orders", 50.0, 10)]);
    let orders = format!(
        "/orders/v0/orders?MarketplaceIds={}&CreatedAfter=2020-01-01T00:00:00Z",
        market.config().marketplace_id
    );
    let answer = get(&client, &orders).await;
    assert_eq!(status(&answer), Some(StatusCode::OK), "{}", answer.summary());
    let Answer::Response { body, quota, .. } = &answer else { unreachable!() };
    assert!(body.contains("AmazonOrderId"), "{body}");
    // The rate Amazon names in x-amzn-RateLimit-Limit is read (the sim's default plan).
    assert_eq!(quota.granted_rate, Some(0.0167));
    assert_eq!(status(&get(&client, &orders).await), Some(StatusCode::OK));
    assert_eq!(market.stats().tokens_issued, 1, "one token for both calls");

    market.expire_access_tokens();
    assert_eq!(status(&get(&client, &orders).await), Some(StatusCode::OK));
    let stats = market.stats();
    assert_eq!((stats.tokens_issued, stats.unauthorized, stats.token_refusals), (2, 1, 0));
}

#[test]
fn an_amazon_connector_without_lwa_credentials_is_refused_naming_the_field() {
    let spec = ConnectorSpec {
        kind: ConnectorType::AmazonSp,
        endpoint: Some("https://sellingpartnerapi-na.amazon.com".into()),
        auth: Some(oauth("https://api.amazon.com/auth/o2/token".into(), ClientAuth::Body, false)),
        ..Default::default()
    };
    let error =
        ConnectorClient::new("amazon-us", "retail", &spec, &secrets(&[("client-id", "a"), ("client-secret", "b")]))
            .unwrap_err()
            .to_string();
    assert!(error.contains("spec.auth") && error.contains("refreshTokenSecretRef"), "{error}");
}

#[tokio::test]
async fn amazon_operations_are_paced_each_on_its_own_bucket_so_nothing_is_throttled() {
    let mut config = MarketplaceConfig::default();
    config.limits.insert(SimOperation::GetOrders, Limit::new(4.0, 2));
    config.limits.insert(SimOperation::GetOrderItems, Limit::new(4.0, 2));
    let market = amazon_sim::bind(config, "127.0.0.1:0").await.unwrap();
    market.set_listing_quantity("SKU-1", 50);
    let (orders, _) = market.place_orders(3).await;
    // Declared a little under what the marketplace grants, so the two clocks never race.
    let client = amazon_client(
        &market,
        vec![
            op("getOrders", "GET", "/orders/v0/orders", 3.5, 2),
            op("getOrderItems", "GET", "/orders/v0/orders/{orderId}/orderItems", 3.5, 2),
        ],
    );
    let list = format!(
        "/orders/v0/orders?MarketplaceIds={}&CreatedAfter=2020-01-01T00:00:00Z",
        market.config().marketplace_id
    );
    let items = format!("/orders/v0/orders/{}/orderItems", orders[0].amazon_order_id);
    let lists = async {
        for _ in 0..6 {
            assert_eq!(status(&get(&client, &list).await), Some(StatusCode::OK));
        }
    };
    let lines = async {
        for _ in 0..6 {
            assert_eq!(status(&get(&client, &items).await), Some(StatusCode::OK));
        }
    };
    tokio::join!(lists, lines);
    assert!(market.stats().throttled.is_empty(), "{:?}", market.stats().throttled);
}

fn item(ordering_key: &str, body: serde_json::Value) -> DeliveryItem {
    DeliveryItem {
        envelope: Envelope {
            id: "0190f3c0-0000-7000-8000-000000000001".into(),
            delivery_id: None,
            source_delivery_id: None,
            event_id: None,
            topic: None,
            correlation_id: "corr-1".into(),
            trace_parent: None,
            received_at_ms: 0,
            payload: Vec::new(),
            replay: None,
        },
        target: "erp".into(),
        idempotency_key: "key-1".into(),
        ordering_key: Some(ordering_key.into()),
        version: None,
        body: serde_json::to_vec(&body).unwrap(),
    }
}

/// What `HttpTarget::send` does: the generic upsert write, reshaped by the protocol.
async fn upsert(client: &ConnectorClient, path: &str, item: &DeliveryItem) -> Answer {
    let base_url = format!("{}{path}", client.endpoint());
    let mut write = Write {
        method: Method::PUT,
        url: format!("{base_url}/{}", item.ordering_key.as_deref().unwrap()),
        headers: Default::default(),
        body: item.body.clone(),
    };
    let context = WriteContext {
        operation: Operation::Upsert,
        base_url: &base_url,
        idempotency_key: &item.idempotency_key,
        ordering_key: item.ordering_key.as_deref(),
        received_at_ms: item.envelope.received_at_ms,
        replayed_at_ms: None,
    };
    client.system().write(&mut write, context);
    write.headers.insert("content-type", "application/json".parse().unwrap());
    let sent: Sent = client
        .send(|http| {
            http.request(write.method.clone(), &write.url).headers(write.headers.clone()).body(write.body.clone())
        })
        .await;
    sent.into_answer(client.system()).await
}

#[tokio::test]
async fn an_amazon_inventory_upsert_lands_as_a_listings_patch() {
    let market = amazon_sim::bind(MarketplaceConfig::default(), "127.0.0.1:0").await.unwrap();
    let client = amazon_client(&market, Vec::new());
    let config = market.config();
    let path = format!("/listings/2021-08-01/items/{}?marketplaceIds={}", config.seller_id, config.marketplace_id);
    let patch = serde_json::json!({"productType": "PRODUCT", "patches": [{
        "op": "replace", "path": "/attributes/fulfillment_availability",
        "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 17}],
    }]});
    let answer = upsert(&client, &path, &item("TSHIRT BLK/M", patch)).await;
    assert_eq!(status(&answer), Some(StatusCode::OK), "{}", answer.summary());
    assert_eq!(market.listing_quantity("TSHIRT BLK/M"), Some(17));
}

fn walmart_client(walmart: &walmart_sim::WalmartHandle) -> ConnectorClient {
    let spec = ConnectorSpec {
        kind: ConnectorType::Walmart,
        endpoint: Some(walmart.base_url()),
        auth: Some(oauth(format!("{}/v3/token", walmart.base_url()), ClientAuth::Basic, false)),
        ..Default::default()
    };
    let secrets = secrets(&[("client-id", "walmart-client-id"), ("client-secret", "walmart-client-secret")]);
    ConnectorClient::new("walmart-us", "retail", &spec, &secrets).unwrap()
}

#[tokio::test]
async fn walmart_sends_its_headers_reads_token_counts_and_replaces_a_refused_token() {
    let config = WalmartConfig { inventory_limit: Limit::new(NO_REFILL, 2), ..WalmartConfig::default() };
    let walmart = walmart_sim::bind(config, "127.0.0.1:0").await.unwrap();
    let client = walmart_client(&walmart);
    let body = |amount: i64| serde_json::json!({"sku": "MUG-WHT", "quantity": {"unit": "EACH", "amount": amount}});

    let first = upsert(&client, "/v3/inventory", &item("MUG-WHT", body(12))).await;
    assert_eq!(status(&first), Some(StatusCode::OK), "{}", first.summary());
    let Answer::Response { quota, .. } = &first else { unreachable!() };
    assert_eq!(quota.remaining, Some(1.0));
    assert_eq!(walmart.inventory("MUG-WHT"), Some(12));

    walmart.expire_access_tokens();
    let second = upsert(&client, "/v3/inventory", &item("MUG-WHT", body(11))).await;
    assert_eq!(status(&second), Some(StatusCode::OK), "{}", second.summary());
    assert_eq!(walmart.stats().tokens_issued, 2);

    let throttled = upsert(&client, "/v3/inventory", &item("MUG-WHT", body(10))).await;
    let Answer::Response { status, quota, .. } = &throttled else { panic!("{}", throttled.summary()) };
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
    assert!(quota.throttled && quota.remaining == Some(0.0) && quota.reset_after.is_some(), "{quota:?}");
    let stats = walmart.stats();
    assert_eq!((stats.missing_headers, stats.inventory_updates), (0, 2));
    assert_eq!(walmart.inventory("MUG-WHT"), Some(11));
}
