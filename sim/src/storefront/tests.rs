//! The storefront against a small receiver over real HTTP on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::routing::post;
use tokio::net::TcpListener;

use super::webhook::{self, EVENT_ID_HEADER, HMAC_HEADER, TOPIC_HEADER, WEBHOOK_ID_HEADER};
use super::*;

const SECRET: &str = "shpss_storefront_test_secret";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    webhook_id: String,
    event_id: String,
    topic: String,
    signature_valid: bool,
    body: Bytes,
}

/// How the receiver answers its nth request (0-based).
type Answer = Box<dyn Fn(usize) -> (StatusCode, Duration) + Send + Sync>;

struct Receiver {
    answer: Answer,
    seen: Mutex<Vec<Received>>,
}

async fn receive(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let text =
        |name: &HeaderName| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let signature_valid = webhook::verify(SECRET.as_bytes(), &body, &text(&HMAC_HEADER));
    let index = {
        let mut seen = receiver.seen.lock().unwrap();
        seen.push(Received {
            webhook_id: text(&WEBHOOK_ID_HEADER),
            event_id: text(&EVENT_ID_HEADER),
            topic: text(&TOPIC_HEADER),
            signature_valid,
            body,
        });
        seen.len() - 1
    };
    if !signature_valid {
        return StatusCode::UNAUTHORIZED;
    }
    let (status, delay) = (receiver.answer)(index);
    tokio::time::sleep(delay).await;
    status
}

/// Starts a receiver; returns its URL and what it saw.
async fn receiver(answer: impl Fn(usize) -> (StatusCode, Duration) + Send + Sync + 'static) -> (String, Arc<Receiver>) {
    let receiver = Arc::new(Receiver { answer: Box::new(answer), seen: Mutex::new(Vec::new()) });
    let app = Router::new().route("/webhooks/shopify", post(receive)).with_state(Arc::clone(&receiver));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/shopify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}

fn config(target: &str) -> StorefrontConfig {
    let mut config = StorefrontConfig::new(target, SECRET);
    config.retry = RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
    };
    config
}

fn ok(_: usize) -> (StatusCode, Duration) {
    (StatusCode::OK, Duration::ZERO)
}

#[tokio::test]
async fn a_failed_delivery_is_resent_with_the_same_webhook_id_and_body() {
    let (url, receiver) = receiver(|n| {
        let status = if n < 2 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
        (status, Duration::ZERO)
    })
    .await;
    let mut storefront = Storefront::new(config(&url)).unwrap();
    let order = storefront.next_order();
    let delivery = storefront.delivery(&order, Topic::OrdersCreate);

    let outcome = storefront.send_with_retries(&delivery).await;
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.final_status, Some(200));
    assert!(outcome.acknowledged());

    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for attempt in &seen {
        assert_eq!(attempt.webhook_id, delivery.webhook_id);
        assert_eq!(attempt.event_id, delivery.event_id);
        assert_eq!(attempt.topic, "orders/create");
        assert_eq!(attempt.body, delivery.body);
        assert!(attempt.signature_valid);
    }
    let received: Order = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(received, order);
}

#[tokio::test]
async fn retries_stop_after_the_last_one() {
    let (url, receiver) = receiver(|_| (StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO)).await;
    let storefront = Storefront::new(config(&url)).unwrap();
    let delivery = storefront.signer().delivery_with_body(Topic::OrdersCreate, &b"{}"[..]);
    let outcome = storefront.send_with_retries(&delivery).await;
    assert_eq!(outcome.attempts, 4, "the first attempt and three retries");
    assert_eq!(outcome.final_status, Some(503));
    assert!(!outcome.acknowledged());
    assert_eq!(receiver.seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_redirect_is_a_failed_delivery() {
    let (url, receiver) = receiver(|_| (StatusCode::FOUND, Duration::ZERO)).await;
    let mut config = config(&url);
    config.retry.max_retries = 0;
    let storefront = Storefront::new(config).unwrap();
    let delivery = storefront.signer().delivery_with_body(Topic::OrdersCreate, &b"{}"[..]);
    let outcome = storefront.send_with_retries(&delivery).await;
    assert_eq!((outcome.attempts, outcome.final_status), (1, Some(302)));
    assert!(!outcome.acknowledged());
    assert_eq!(receiver.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_bad_signature_is_refused_by_a_verifying_receiver() {
    let (url, receiver) = receiver(ok).await;
    let mut storefront = Storefront::new(config(&url)).unwrap();
    let order = storefront.next_order();
    let delivery = storefront.delivery(&order, Topic::OrdersCreate);
    assert_eq!(storefront.send(&delivery).await.unwrap(), StatusCode::OK);
    let forged = delivery.with_bad_signature();
    assert_eq!(storefront.send(&forged).await.unwrap(), StatusCode::UNAUTHORIZED);
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|r| r.signature_valid).collect::<Vec<_>>(), [true, false]);
}

#[tokio::test]
async fn an_unreachable_receiver_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/shopify", listener.local_addr().unwrap());
    drop(listener);
    let mut config = config(&url);
    config.retry.max_retries = 1;
    let storefront = Storefront::new(config).unwrap();
    let delivery = storefront.signer().delivery_with_body(Topic::OrdersCreate, &b"{}"[..]);
    let error = storefront.send(&delivery).await.unwrap_err();
    assert!(matches!(error, SendError::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains(&delivery.webhook_id), "{error}");

    let outcome = storefront.send_with_retries(&delivery).await;
    assert_eq!((outcome.attempts, outcome.final_status), (2, None));
    assert!(outcome.last_error.is_some());
}

#[tokio::test]
async fn a_slow_receiver_times_out() {
    let (url, _receiver) = receiver(|_| (StatusCode::OK, Duration::from_secs(5))).await;
    let mut config = config(&url);
    config.request_timeout = Duration::from_millis(100);
    let storefront = Storefront::new(config).unwrap();
    let delivery = storefront.signer().delivery_with_body(Topic::OrdersCreate, &b"{}"[..]);
    let error = storefront.send(&delivery).await.unwrap_err();
    assert!(matches!(error, SendError::Timeout { .. }), "{error:?}");
}

#[tokio::test]
async fn run_delivers_every_order_and_duplicates_some() {
    // Every third request fails, so retries happen throughout the run.
    let (url, receiver) = receiver(|n| {
        let status = if n % 3 == 1 { StatusCode::BAD_GATEWAY } else { StatusCode::OK };
        (status, Duration::ZERO)
    })
    .await;
    let mut config = config(&url);
    config.duplicate_ratio = 0.5;
    config.seed = 9;
    // Requests run concurrently, so one delivery can draw several failing slots in a
    // row; with 20 retries that needs a 1-in-3^21 draw.
    config.retry.max_retries = 20;
    let mut storefront = Storefront::new(config).unwrap();
    let report = storefront.run(20, 500.0).await.unwrap();

    assert_eq!(report.orders_sent, 20);
    assert_eq!(report.acknowledged, 20, "{report:#?}");
    assert_eq!(report.unacknowledged().count(), 0);
    let duplicated = report.orders.iter().filter(|o| o.duplicated).count();
    assert_eq!(report.duplicate_deliveries, duplicated);
    assert!((1..20).contains(&duplicated), "seed 9 duplicates some orders, not all: {duplicated}");

    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(report.attempts, seen.len() as u64);
    assert!(seen.iter().all(|r| r.signature_valid));
    let mut per_webhook: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for request in &seen {
        let order: Order = serde_json::from_slice(&request.body).unwrap();
        per_webhook.entry(request.webhook_id.as_str()).or_default().insert(order.id);
    }
    assert_eq!(per_webhook.len(), 20, "one webhook id per order");
    assert!(per_webhook.values().all(|ids| ids.len() == 1), "a webhook id carries one order");
    for order in &report.orders {
        let sent = seen.iter().filter(|r| r.webhook_id == order.webhook_id).count();
        assert_eq!(sent as u32, order.attempts, "{}", order.name);
        if order.duplicated {
            assert!(sent >= 2, "{} was duplicated but sent {sent} time(s)", order.name);
        }
    }
    let names: Vec<&str> = report.orders.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names[0], "#1001");
    assert_eq!(names[19], "#1020");
}

#[tokio::test]
async fn a_seed_gives_the_same_orders_and_duplicates_in_every_run() {
    let (url, _receiver) = receiver(ok).await;
    let mut reports = Vec::new();
    for _ in 0..2 {
        let mut config = config(&url);
        config.seed = 1234;
        config.duplicate_ratio = 0.3;
        reports.push(Storefront::new(config).unwrap().run(10, 1000.0).await.unwrap());
    }
    let summary = |report: &StorefrontReport| {
        report
            .orders
            .iter()
            .map(|o| (o.order_id, o.skus.clone(), o.total_price_minor, o.duplicated))
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(&reports[0]), summary(&reports[1]));
    assert_ne!(reports[0].orders[0].webhook_id, reports[1].orders[0].webhook_id, "a new run makes new deliveries");
}

#[test]
fn unusable_configurations_are_refused() {
    let mut bad_ratio = config("http://127.0.0.1:1/");
    bad_ratio.duplicate_ratio = 1.5;
    assert!(matches!(Storefront::new(bad_ratio), Err(StorefrontError::InvalidDuplicateRatio(_))));
    let mut no_skus = config("http://127.0.0.1:1/");
    no_skus.skus.clear();
    assert!(matches!(Storefront::new(no_skus), Err(StorefrontError::EmptyCatalogue)));
    let debug = format!("{:?}", config("http://127.0.0.1:1/"));
    assert!(!debug.contains(SECRET), "Debug leaks the secret");
}

#[tokio::test]
async fn a_rate_must_be_positive() {
    let mut storefront = Storefront::new(config("http://127.0.0.1:1/")).unwrap();
    for rate in [0.0, -1.0, f64::NAN] {
        assert!(matches!(storefront.run(1, rate).await, Err(StorefrontError::InvalidRate(_))));
    }
}

#[tokio::test]
async fn faults_drop_reorder_and_delay_deliveries_and_the_admin_api_holds_every_order() {
    let (url, receiver) = receiver(ok).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = AdminApi::serve(listener, "shpat_faults").await.unwrap();
    let mut config = config(&url);
    config.seed = 21;
    config.drop_ratio = 0.25;
    config.out_of_order_ratio = 0.3;
    config.delay_ratio = 0.3;
    config.max_delay = Duration::from_millis(30);
    let mut storefront = Storefront::new(config).unwrap();
    storefront.record_into(&admin);
    let report = storefront.run(40, 2000.0).await.unwrap();

    assert!(report.dropped > 0 && report.out_of_order > 0 && report.delayed > 0, "{report:#?}");
    let seen = receiver.seen.lock().unwrap().clone();
    let stored = admin.orders();
    assert_eq!(stored.len(), 40, "the Admin API holds dropped orders too");
    for order in &report.orders {
        let for_order: Vec<&Received> =
            seen.iter().filter(|r| serde_json::from_slice::<Order>(&r.body).unwrap().id == order.order_id).collect();
        if order.dropped {
            assert!(for_order.is_empty(), "{} was dropped but delivered", order.name);
            assert!(!order.acknowledged);
            continue;
        }
        assert!(order.acknowledged, "{}", order.name);
        let topics: Vec<&str> = for_order.iter().map(|r| r.topic.as_str()).collect();
        if let Some(update_id) = &order.update_webhook_id {
            assert_eq!(topics[..2], ["orders/updated", "orders/create"], "{}", order.name);
            assert_eq!(&for_order[0].webhook_id, update_id);
            let newer: Order = serde_json::from_slice(&for_order[0].body).unwrap();
            let older: Order = serde_json::from_slice(&for_order[1].body).unwrap();
            let at = |o: &Order| o.updated_at.parse::<jiff::Timestamp>().unwrap();
            assert!(at(&newer) > at(&older), "the update carries the newer revision");
            let held = stored.iter().find(|o| o.id == order.order_id).unwrap();
            assert_eq!(held.updated_at, newer.updated_at, "the store holds the latest revision");
        } else {
            assert!(topics.iter().all(|t| *t == "orders/create"), "{topics:?}");
        }
    }
}

#[test]
fn deliveries_of_one_action_to_several_subscriptions_share_the_event_id() {
    let storefront = Storefront::new(config("http://127.0.0.1:1/")).unwrap();
    let mut generator = OrderGenerator::new(4, vec!["SKU-E".into()]).unwrap();
    let order = generator.next_order();
    let deliveries = storefront.signer().deliveries_for_subscriptions(&order, Topic::OrdersCreate, 3);
    assert_eq!(deliveries.len(), 3);
    let webhook_ids: BTreeSet<&str> = deliveries.iter().map(|d| d.webhook_id.as_str()).collect();
    let event_ids: BTreeSet<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!((webhook_ids.len(), event_ids.len()), (3, 1));
    let triggered = deliveries[0].headers.get(webhook::TRIGGERED_AT_HEADER).unwrap().to_str().unwrap();
    assert_eq!(
        triggered.parse::<jiff::Timestamp>().unwrap(),
        order.created_at.parse::<jiff::Timestamp>().unwrap(),
        "Triggered-At is when the order was placed"
    );
}
