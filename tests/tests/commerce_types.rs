//! The `bigcommerce` and `shopify` Connector types against the simulated stores over real
//! HTTP on loopback: Standard Webhooks signatures, thin webhooks refetched through the
//! store's window quota, and Shopify GraphQL inventory writes with `@idempotent` keys,
//! the cost throttle and `userErrors` dead-lettered.

use std::time::Duration;

use entrepot::{manifest::Manifests, secrets::Secrets};

use entrepot_api::{
    config::RunnerConfig,
    resource::{ConnectorSpec, SignatureScheme, TriggerSpec, WebhookTrigger, WebhookVerification},
};
use entrepot_e2e::*;
use entrepot_sim::storefront::{
    AdminApi, AdminApiConfig, BucketConfig, OrderGenerator,
    bigcommerce::{BigCommerceApi, BigCommerceConfig, ThinDelivery, ThinSigner},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);
const BC_FLOW: &str = "bigcommerce-orders-to-erp";
/// The example's fake Secrets.
const BC_TOKEN: &str = "fake-bigcommerce-access-token";
const BC_SECRET: &str = "fake-bigcommerce-client-secret";

fn secrets(manifests: &Manifests) -> Secrets {
    Secrets::with_manifests(manifests.secrets.clone())
}

fn fast_retries(config: &mut RunnerConfig) {
    for flow in &mut config.flows {
        flow.spec.delivery.retry.initial_backoff = Duration::from_millis(20).into();
        flow.spec.delivery.retry.max_backoff = Duration::from_millis(300).into();
    }
}

async fn dead_letters(admin_url: &str) -> Vec<Value> {
    reqwest::get(format!("{admin_url}/v1/deadletters")).await.unwrap().json().await.unwrap()
}

async fn post(url: &str, delivery: &ThinDelivery) -> u16 {
    let client = reqwest::Client::new();
    let sent = client.post(url).headers(delivery.headers.clone()).body(delivery.body.clone()).send().await.unwrap();
    sent.status().as_u16()
}

/// The BigCommerce example pointed at the simulated store and a scripted ERP.
async fn bigcommerce_runner(store: &BigCommerceApi, erp: &ScriptedTarget, dir: &std::path::Path) -> InProcessRunner {
    let manifests = example("bigcommerce-orders-to-erp");
    let mut config = manifests.runner_config().unwrap();
    fast_retries(&mut config);
    let flow = &mut config.flows[0];
    flow.connectors.get_mut("bigcommerce-store").unwrap().endpoint = Some(store.base_url());
    flow.connectors.get_mut("erp-orders").unwrap().endpoint = Some(erp.url.clone());
    InProcessRunner::start_with(config, &secrets(&manifests), dir).await
}

#[tokio::test]
async fn thin_bigcommerce_webhooks_are_verified_deduplicated_on_hash_and_refetched() {
    let store = BigCommerceApi::serve(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        "abc123",
        BC_TOKEN,
        BigCommerceConfig::default(),
    )
    .await
    .unwrap();
    let mut orders = OrderGenerator::new(11, vec!["TSHIRT-BLK-M".into(), "MUG-WHT".into()]).unwrap();
    let order = orders.next_order();
    let id = store.put_order(order.clone());
    let erp = ScriptedTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let runner = bigcommerce_runner(&store, &erp, dir.path()).await;
    let url = runner.webhook(BC_FLOW);
    let signer = ThinSigner::new(BC_SECRET, "abc123");

    let created = signer.order_event("store/order/created", id);
    assert_eq!(post(&url, &created).await, 200);
    // BigCommerce's duplicate: a new message, the same payload hash.
    assert_eq!(post(&url, &signer.duplicate(&created)).await, 200);
    // Signed with another secret, or dated beyond the 5-minute tolerance: refused.
    let forged = ThinSigner::new("not-the-secret", "abc123").order_event("store/order/created", id);
    assert_eq!(post(&url, &forged).await, 401);
    let stale =
        signer.signed_at(&signer.order_event("store/order/created", id), jiff::Timestamp::now().as_second() - 600);
    assert_eq!(post(&url, &stale).await, 401);
    // An order deleted before the refetch.
    assert_eq!(post(&url, &signer.order_event("store/order/created", 999_999)).await, 200);

    eventually(WAIT, "one order delivered and one dead-lettered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == 1 && s.flows[0].dead_lettered == 1 && s.flows[0].pending == 0
    })
    .await;
    let s = status(&runner.admin_url).await;
    assert_eq!(s.flows[0].deduplicated, 1, "the duplicate message is dropped on its hash");

    let received = erp.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let sent = &received[0].body;
    assert_eq!(sent["externalId"], format!("bigcommerce:{id}"));
    let skus: Vec<&str> = sent["items"].as_array().unwrap().iter().map(|i| i["item"].as_str().unwrap()).collect();
    assert_eq!(skus, order.skus(), "the refetched order carries its lines");
    assert_eq!(sent["total"], order.total_price_minor().unwrap());

    let letters = dead_letters(&runner.admin_url).await;
    assert_eq!(letters.len(), 1);
    let message = letters[0]["message"].as_str().unwrap();
    assert!(message.contains("/v2/orders/999999") && message.contains("404"), "{message}");
    runner.stop().await;
}

#[tokio::test]
async fn refetches_wait_out_the_window_quota_and_bare_429s() {
    // Three requests per 300 ms window, and one request in five refused with a bare 429.
    let config = BigCommerceConfig {
        quota: 3,
        window: Duration::from_millis(300),
        bare_429_ratio: 0.2,
        seed: 5,
        ..BigCommerceConfig::default()
    };
    let store = BigCommerceApi::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), "abc123", BC_TOKEN, config)
        .await
        .unwrap();
    let mut orders = OrderGenerator::new(12, vec!["MUG-WHT".into()]).unwrap();
    let ids: Vec<u64> = (0..10).map(|_| store.put_order(orders.next_order())).collect();
    let erp = ScriptedTarget::start().await;
    let dir = tempfile::tempdir().unwrap();
    let runner = bigcommerce_runner(&store, &erp, dir.path()).await;
    let signer = ThinSigner::new(BC_SECRET, "abc123");
    for id in &ids {
        assert_eq!(post(&runner.webhook(BC_FLOW), &signer.order_event("store/order/created", *id)).await, 200);
    }
    eventually(WAIT, "every order delivered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == ids.len() as u64 && s.flows[0].pending == 0
    })
    .await;
    assert_eq!(status(&runner.admin_url).await.flows[0].dead_lettered, 0, "throttling is never a dead letter");
    assert!(store.requests() > ids.len(), "some refetches were refused and made again");
    runner.stop().await;
}

/// The Shopify GraphQL example, its WMS source turned into a signed webhook so the test
/// can push stock rows.
async fn shopify_runner(shop: &AdminApi, dir: &std::path::Path) -> InProcessRunner {
    let manifests = example("inventory-to-shopify-graphql");
    let mut config = manifests.runner_config().unwrap();
    fast_retries(&mut config);
    let flow = &mut config.flows[0];
    flow.connectors.get_mut("shopify-eu").unwrap().endpoint = Some(shop.base_url());
    let wms: &mut ConnectorSpec = flow.connectors.get_mut("wms-central").unwrap();
    let token_ref = match &wms.auth {
        Some(entrepot_api::resource::ConnectorAuth::Bearer { secret_ref }) => secret_ref.clone(),
        other => panic!("the example's WMS uses a bearer token: {other:?}"),
    };
    wms.webhook = Some(WebhookVerification {
        signature: SignatureScheme::ShopifyHmacSha256,
        secret_ref: token_ref,
        previous_secret_ref: None,
        tolerance: None,
        header: None,
        delivery_id_header: None,
    });
    flow.spec.source.trigger =
        TriggerSpec { webhook: Some(WebhookTrigger { topics: Vec::new(), refetch: None }), ..Default::default() };
    InProcessRunner::start_with(config, &secrets(&manifests), dir).await
}

async fn push_row(url: &str, n: usize, row: Value) {
    let body = serde_json::to_vec(&row).unwrap();
    let signature = entrepot::source::signature::sign(SignatureScheme::ShopifyHmacSha256, b"fake-wms-token", &body);
    let answer = post_webhook(url, &body, &format!("row-{n}"), Some(signature)).await;
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn stock_reaches_shopify_graphql_with_idempotent_keys_through_the_cost_throttle() {
    // Two mutations fit in the bucket, one more a second: the runner gets THROTTLED.
    let config = AdminApiConfig {
        graphql_bucket: BucketConfig { capacity: 20.0, leak_per_second: 10.0 },
        ..AdminApiConfig::default()
    };
    let shop = AdminApi::serve_with(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        "shpat_fake1111111111111111111111111111",
        config,
    )
    .await
    .unwrap();
    // The example's lookups: TSHIRT-BLK-M is inventory item 43000000001, MUG-WHT 43000000002;
    // only the first exists in this shop, so MUG-WHT's write gets userErrors.
    assert_eq!(shop.stock("TSHIRT-BLK-M", 1, 0), 43_000_000_001);
    let dir = tempfile::tempdir().unwrap();
    let runner = shopify_runner(&shop, dir.path()).await;
    let url = runner.webhook("inventory-to-shopify-eu");

    let rows = 6;
    for n in 0..rows {
        let at = format!("2026-11-27T14:{n:02}:00Z");
        push_row(&url, n, json!({"articleNumber": "TSHIRT-BLK-M", "warehouseCode": "WH-AMS", "inStock": 50 + n, "allocated": 10, "updatedAt": at})).await;
    }
    push_row(&url, rows, json!({"articleNumber": "MUG-WHT", "warehouseCode": "WH-AMS", "inStock": 5, "allocated": 0, "updatedAt": "2026-11-27T14:30:00Z"})).await;

    eventually(WAIT, "every row delivered or dead-lettered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered + s.flows[0].stale == rows as u64
            && s.flows[0].dead_lettered == 1
            && s.flows[0].pending == 0
    })
    .await;
    assert_eq!(
        shop.available("TSHIRT-BLK-M", 1),
        Some(50 + rows as i64 - 1 - 10),
        "the newest row is what the channel shows"
    );
    assert!(shop.throttled_calls() > 0, "the bucket was emptied at least once");
    let keys: Vec<String> =
        shop.idempotency_keys().into_iter().map(|k| k.expect("every mutation carries @idempotent")).collect();
    assert!(keys.iter().all(|k| k.starts_with("WH-AMS/")), "{keys:?}");

    let letters = dead_letters(&runner.admin_url).await;
    let message = letters[0]["message"].as_str().unwrap();
    assert_eq!(letters[0]["reason"], "rejected");
    assert!(
        message.contains("userErrors")
            && message.contains("inventoryItemId")
            && message.contains("INVALID_INVENTORY_ITEM"),
        "{message}"
    );
    runner.stop().await;
}

#[tokio::test]
async fn after_a_shopify_secret_rotation_the_previous_secret_is_still_accepted() {
    let erp = ScriptedTarget::start().await;
    let mut config = quickstart_config(&erp.url);
    let flow = &mut config.flows[0];
    // The quickstart's ERP token stands in for the secret used before the rotation.
    let previous = entrepot_api::resource::SecretKeySelector { name: "erp-demo".into(), key: "token".into() };
    flow.connectors.get_mut("shopify-demo").unwrap().webhook.as_mut().unwrap().previous_secret_ref = Some(previous);
    let dir = tempfile::tempdir().unwrap();
    let runner = InProcessRunner::start(config, dir.path()).await;
    let url = runner.webhook(FLOW);
    let body = shopify_order(77, "MUG-WHT", "2026-11-27T10:00:00-05:00");
    let sign = |secret: &str| {
        Some(entrepot::source::signature::sign(SignatureScheme::ShopifyHmacSha256, secret.as_bytes(), &body))
    };
    assert_eq!(post_webhook(&url, &body, "current", sign(WEBHOOK_SECRET)).await.status(), 200);
    assert_eq!(post_webhook(&url, &body, "previous", sign(ERP_TOKEN)).await.status(), 200);
    assert_eq!(post_webhook(&url, &body, "unknown", sign("never-configured")).await.status(), 401);
    runner.stop().await;
}
