//! The poller against the simulated marketplaces: each Connector type's default
//! pagination (Amazon's `NextToken`, Walmart's query-string `nextCursor`) across pages,
//! with the type's authentication, and Amazon's per-operation pacing.

use std::sync::Arc;

use entrepot_sim::marketplace::walmart::{self as walmart_sim, WalmartConfig};
use entrepot_sim::marketplace::{self as amazon_sim, Limit, MarketplaceConfig, Operation as SimOperation};
use serde_json::Value;

use super::*;
use crate::{
    flow::Flow,
    metrics::Metrics,
    queue::{Queue, RedbQueue},
    test_support::{marketplace_oauth, marketplace_secrets},
};
use entrepot_api::{
    config::FlowConfig,
    resource::{
        ClientAuth, ConnectorAuth, ConnectorLimits, ConnectorSpec, ConnectorType, OperationLimit, SyncFlowSpec,
    },
};

const FLOW: &str = "marketplace-orders";

fn oauth(token_url: String, client_auth: ClientAuth, refresh: bool) -> Option<ConnectorAuth> {
    Some(marketplace_oauth(token_url, client_auth, refresh))
}

/// A flow polling `source` with `trigger` (YAML) and the given secrets.
fn flow(source: ConnectorSpec, trigger: &str, secrets: &[(&str, &str)]) -> Arc<Flow> {
    let yaml = format!(
        "source: {{connectorRef: market, entity: orders, trigger: {{poll: {trigger}}}}}\n\
         targets: [{{connectorRef: erp, entity: salesOrders}}]\n"
    );
    let spec: SyncFlowSpec = serde_saphyr::from_str(&yaml).unwrap();
    let connector = |name: &str| {
        Some(if name == "market" {
            source.clone()
        } else {
            ConnectorSpec { endpoint: Some("http://127.0.0.1:1".into()), ..ConnectorSpec::default() }
        })
    };
    let config = FlowConfig::resolve(FLOW, "retail", &spec, connector, |_| None).unwrap();
    Arc::new(Flow::new(config, &marketplace_secrets(secrets)).unwrap())
}

fn queued(queue: &Queue, field: &str) -> Vec<String> {
    let inbox = queue.inbox(FLOW, 1000).unwrap();
    inbox
        .iter()
        .map(|(_, e)| serde_json::from_slice::<Value>(&e.payload).unwrap()[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn amazon_orders_are_polled_across_next_token_pages_without_being_throttled() {
    let mut config = MarketplaceConfig::default();
    config.limits.insert(SimOperation::GetOrders, Limit::new(4.0, 2));
    let market = amazon_sim::bind(config, "127.0.0.1:0").await.unwrap();
    market.set_listing_quantity("SKU-1", 100);
    market.place_orders(5).await;
    let source = ConnectorSpec {
        kind: ConnectorType::AmazonSp,
        endpoint: Some(market.base_url()),
        auth: oauth(market.token_url(), ClientAuth::Body, true),
        limits: Some(ConnectorLimits {
            operations: vec![OperationLimit {
                name: "getOrders".into(),
                method: "GET".into(),
                path: "/orders/v0/orders".into(),
                requests_per_second: 3.5,
                burst: 2,
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let c = market.config();
    let trigger = format!(
        "{{interval: 1h, path: /orders/v0/orders, records: .payload.Orders, \
          query: {{MarketplaceIds: {}, CreatedAfter: \"2020-01-01T00:00:00Z\", MaxResultsPerPage: \"2\"}}}}",
        c.marketplace_id
    );
    let secrets =
        [("client-id", c.client_id.as_str()), ("client-secret", &c.client_secret), ("refresh-token", &c.refresh_token)];
    let flow = flow(source, &trigger, &secrets);
    let dir = tempfile::tempdir().unwrap();
    let queue = RedbQueue::open(&dir.path().join("queue.redb")).unwrap();
    let poller = Poller::new(flow, queue.clone(), Metrics::new(), None).unwrap().expect("a poll trigger");
    // No pagination in the trigger: amazon-sp pages by NextToken.
    assert_eq!(poller.poll_once().await, RunReport { pages: 3, queued: 5, duplicates: 0, end: RunEnd::Complete });
    let expected: Vec<String> = market.orders().into_iter().map(|o| o.amazon_order_id).collect();
    let mut got = queued(&queue, "AmazonOrderId");
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want);
    // A second poll reads the three pages again: six getOrders calls in a burst of 2 at
    // 4/s, paced by the runner so the marketplace throttled none.
    assert_eq!(poller.poll_once().await.pages, 3);
    let stats = market.stats();
    assert!(stats.throttled.is_empty(), "{:?}", stats.throttled);
    assert_eq!(stats.tokens_issued, 1);
}

#[tokio::test]
async fn walmart_orders_are_polled_across_next_cursor_pages() {
    let walmart = walmart_sim::bind(WalmartConfig::default(), "127.0.0.1:0").await.unwrap();
    for sku in ["MUG-WHT", "CAP-NVY"] {
        walmart.set_inventory(sku, 20);
    }
    let placed = walmart.place_orders(5);
    let source = ConnectorSpec {
        kind: ConnectorType::Walmart,
        endpoint: Some(walmart.base_url()),
        auth: oauth(format!("{}/v3/token", walmart.base_url()), ClientAuth::Basic, false),
        ..Default::default()
    };
    let trigger = "{interval: 1h, path: /v3/orders, records: .list.elements.order, \
                   query: {createdStartDate: \"2020-01-01T00:00:00Z\", limit: \"2\"}}";
    let flow = flow(source, trigger, &[("client-id", "walmart-client-id"), ("client-secret", "walmart-client-secret")]);
    let dir = tempfile::tempdir().unwrap();
    let queue = RedbQueue::open(&dir.path().join("queue.redb")).unwrap();
    let poller = Poller::new(flow, queue.clone(), Metrics::new(), None).unwrap().expect("a poll trigger");
    assert_eq!(poller.poll_once().await, RunReport { pages: 3, queued: 5, duplicates: 0, end: RunEnd::Complete });
    assert_eq!(queued(&queue, "purchaseOrderId"), placed);
    let stats = walmart.stats();
    assert_eq!((stats.missing_headers, stats.unauthorized, stats.tokens_issued), (0, 0, 1));
}
