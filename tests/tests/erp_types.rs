//! The ERP Connector types (`netsuite`, `dynamics365`, `sap-odata`) end to end against
//! the simulated ERP's three flavours, over real HTTP on loopback: the quickstart's
//! Shopify-order flow with its ERP Connector switched to each type (delivery, replays of
//! a repeated key or request id, throttling, ETag conflicts and CSRF sessions, a business
//! rejection dead-lettered with its reason), and a poll of the ERP's sales orders across
//! pages with nothing but the type to say where records and next pages are.

use std::{path::Path, time::Duration};

use entrepot::{manifest::Manifests, secrets::Secrets};

use entrepot_api::{
    config::RunnerConfig,
    resource::{ConnectorLimits, ConnectorType, Operation},
};
use entrepot_e2e::*;
use entrepot_sim::erp::{
    self, ErpConfig, ErpHandle, NetSuiteKnobs, ThrottleShape, dynamics::DynamicsKnobs, sap::SapKnobs,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const KNOWN: [&str; 2] = ["MUG-WHT", "TSHIRT-BLK-M"];

async fn start_erp(config: ErpConfig) -> ErpHandle {
    let config = ErpConfig {
        known_skus: Some(KNOWN.iter().map(|s| s.to_string()).collect()),
        bearer_token: Some(ERP_TOKEN.into()),
        ..config
    };
    erp::bind(config, "127.0.0.1:0").await.unwrap()
}

/// The quickstart flow, its ERP Connector of type `kind` at `endpoint`, writing with
/// `operation`, the manifest naming no idempotency header (the type's own is used).
fn flow_config(kind: ConnectorType, endpoint: &str, operation: Operation) -> RunnerConfig {
    let mut config = quickstart_config(endpoint);
    let flow = &mut config.flows[0];
    let erp = flow.connectors.get_mut("erp-demo").unwrap();
    erp.kind = kind;
    erp.idempotency_header = None;
    flow.spec.targets[0].operation = operation;
    config
}

/// Sends Shopify order `id` (one line of `sku`, revision `minute`) to the flow's webhook.
async fn send_order(runner: &InProcessRunner, id: u64, sku: &str, minute: u32) {
    let body = shopify_order(id, sku, &format!("2026-11-27T11:{minute:02}:00-05:00"));
    let response = post_webhook(&runner.webhook(FLOW), &body, &format!("wh-{id}-{minute}"), None).await;
    assert_eq!(response.status(), 200);
}

/// Waits until `delivered` records are delivered and `dead` dead-lettered, nothing pending.
async fn settled(runner: &InProcessRunner, delivered: u64, dead: u64) {
    eventually(WAIT, &format!("{delivered} delivered and {dead} dead-lettered"), || async {
        let s = status(&runner.admin_url).await;
        let f = &s.flows[0];
        f.delivered == delivered && f.dead_lettered == dead && f.pending == 0
    })
    .await;
}

async fn dead_letters(runner: &InProcessRunner) -> Vec<Value> {
    reqwest::get(format!("{}/v1/deadletters", runner.admin_url)).await.unwrap().json().await.unwrap()
}

async fn throttled_metric(runner: &InProcessRunner) -> f64 {
    let text = reqwest::get(format!("{}/metrics", runner.admin_url)).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("entrepot_target_throttled_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Asserts one dead letter, for order `id`, whose message contains `reason`.
async fn rejected_with(runner: &InProcessRunner, id: u64, reason: &str) {
    let letters = dead_letters(runner).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let message = letters[0]["message"].as_str().unwrap();
    assert!(message.contains(reason), "the ERP's reason is kept: {message}");
    assert_eq!(letters[0]["reason"], "rejected");
    assert!(letters[0]["envelope"].to_string().contains(&id.to_string()), "{}", letters[0]);
}

#[tokio::test]
async fn netsuite_upserts_by_external_id_through_async_jobs_a_repeated_key_is_not_a_second_write() {
    // Each job is still running when first read: the next attempt repeats the key, is
    // answered IDEMPOTENCY_ERROR with the job, and follows it to its outcome.
    let erp = start_erp(ErpConfig {
        netsuite: NetSuiteKnobs { async_pending_polls: 1, ..Default::default() },
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let runner =
        InProcessRunner::start(flow_config(ConnectorType::NetSuite, &erp.base_url(), Operation::Upsert), dir.path())
            .await;
    send_order(&runner, 1, "MUG-WHT", 0).await;
    send_order(&runner, 2, "NOT-A-SKU", 0).await;
    settled(&runner, 1, 1).await;
    rejected_with(&runner, 2, "Invalid item reference key NOT-A-SKU").await;

    send_order(&runner, 1, "TSHIRT-BLK-M", 5).await;
    settled(&runner, 2, 1).await;
    let stored = erp.order_by_external_id("shopify:1").expect("upserted by external id");
    assert_eq!((stored.writes, stored.items[0].item.as_str()), (2, "TSHIRT-BLK-M"));
    let stats = erp.stats();
    assert_eq!((stats.created, stats.updated), (1, 1));
    assert!(stats.idempotent_replays >= 3, "every retry repeated its key: {stats:?}");
    let key = stored.idempotency_key.is_none();
    assert!(key, "asynchronous writes keep the key with the job, not the record");
    runner.stop().await;
}

#[tokio::test]
async fn netsuite_concurrency_refusals_in_the_restlet_shape_are_throttling_not_rejections() {
    let erp = start_erp(ErpConfig {
        max_concurrency: 1,
        latency: Duration::from_millis(50),
        netsuite: NetSuiteKnobs { throttle_shape: ThrottleShape::RestletRequestLimit, ..Default::default() },
        ..Default::default()
    })
    .await;
    let mut config = flow_config(ConnectorType::NetSuite, &erp.base_url(), Operation::Create);
    config.flows[0].connectors.get_mut("erp-demo").unwrap().limits =
        Some(ConnectorLimits { concurrency: Some(4), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let runner = InProcessRunner::start(config, dir.path()).await;
    for id in 1..=6 {
        send_order(&runner, id, "MUG-WHT", 0).await;
    }
    settled(&runner, 6, 0).await;
    assert_eq!(erp.orders().len(), 6);
    assert!(erp.orders().iter().all(|o| o.writes == 1));
    assert!(erp.stats().throttled > 0, "four senders against one slot: {:?}", erp.stats());
    assert!(throttled_metric(&runner).await > 0.0, "the quota governor heard of it");
    // The governor holds to the one request in flight the ERP grants, and says so.
    let s = status(&runner.admin_url).await;
    let quota = s.connectors.iter().find(|c| c.name == "erp-demo").and_then(|c| c.quota.clone()).expect("a quota");
    assert_eq!((quota.declared_concurrency, quota.concurrency), (4, 1), "{quota:?}");
    let metrics = reqwest::get(format!("{}/metrics", runner.admin_url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"entrepot_connector_concurrency_limit{connector="erp-demo"} 1"#), "{metrics}");
    runner.stop().await;
}

#[tokio::test]
async fn dynamics_upserts_patch_under_if_match_and_read_again_after_a_412() {
    // Seed 3: half the conditional writes meet someone else's edit in between.
    let erp = start_erp(ErpConfig { seed: 3, concurrent_edit_ratio: 0.5, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let runner = InProcessRunner::start(
        flow_config(ConnectorType::Dynamics365, &erp.dynamics_url(), Operation::Upsert),
        dir.path(),
    )
    .await;
    send_order(&runner, 1, "MUG-WHT", 0).await;
    settled(&runner, 1, 0).await;
    for minute in 1..=5 {
        send_order(&runner, 1, "MUG-WHT", minute).await;
        settled(&runner, 1 + u64::from(minute), 0).await;
    }
    let stored = erp.order_by_external_id("shopify:1").unwrap();
    assert_eq!(stored.writes, 6, "created once, patched five times");
    let stats = erp.stats();
    assert_eq!((stats.created, stats.updated), (1, 5));
    assert!(stats.conflicts >= 1, "seed 3 makes a PATCH meet a changed ETag: {stats:?}");
    // A 412 is read again and patched within the attempt: only a second one in a row
    // costs a retry.
    let retried = status(&runner.admin_url).await.flows[0].targets[0].retried;
    assert!(retried < stats.conflicts, "{retried} retries for {} conflicts", stats.conflicts);

    send_order(&runner, 2, "NOT-A-SKU", 0).await;
    settled(&runner, 6, 1).await;
    rejected_with(&runner, 2, "items[0].item").await;
    runner.stop().await;
}

#[tokio::test]
async fn dynamics_429_waits_for_its_retry_after() {
    let erp = start_erp(ErpConfig {
        dynamics: DynamicsKnobs { requests_per_window: 2, window: Duration::from_secs(2), ..Default::default() },
        ..Default::default()
    })
    .await;
    let mut config = flow_config(ConnectorType::Dynamics365, &erp.dynamics_url(), Operation::Create);
    config.flows[0].connectors.get_mut("erp-demo").unwrap().limits =
        Some(ConnectorLimits { concurrency: Some(1), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let runner = InProcessRunner::start(config, dir.path()).await;
    for id in 1..=4 {
        send_order(&runner, id, "MUG-WHT", 0).await;
    }
    settled(&runner, 4, 0).await;
    assert_eq!(erp.orders().len(), 4);
    let throttled = erp.stats().throttled;
    // Retried on the runner's own backoff (20 ms to 200 ms) instead of the 1-2 s the
    // window asks for, the four would have met many more 429s.
    assert!((1..=3).contains(&throttled), "one 429 per window, then the wait: {throttled}");
    runner.stop().await;
}

#[tokio::test]
async fn sap_fetches_a_csrf_token_reuses_it_and_fetches_again_when_it_expires() {
    let erp =
        start_erp(ErpConfig { sap: SapKnobs { csrf_token_uses: Some(2), ..Default::default() }, ..Default::default() })
            .await;
    let mut config = flow_config(ConnectorType::SapOdata, &erp.sap_url(), Operation::Create);
    config.flows[0].connectors.get_mut("erp-demo").unwrap().limits =
        Some(ConnectorLimits { concurrency: Some(1), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let runner = InProcessRunner::start(config, dir.path()).await;
    for id in 1..=5 {
        send_order(&runner, id, "MUG-WHT", 0).await;
    }
    send_order(&runner, 6, "NOT-A-SKU", 0).await;
    settled(&runner, 5, 1).await;
    rejected_with(&runner, 6, "items[0].item").await;
    assert!(erp.orders().iter().all(|o| o.writes == 1));
    // Two writes per token: refused after each second one, fetched again, sent again.
    assert!(erp.stats().csrf_refused >= 2, "{:?}", erp.stats());
    // Each refusal was answered with a fresh token within the same attempt.
    assert_eq!(status(&runner.admin_url).await.flows[0].targets[0].retried, 0);
    runner.stop().await;
}

#[tokio::test]
async fn sap_repeats_the_request_id_after_a_lost_answer_and_upserts_under_if_match() {
    // Seed 5: some answers are lost at the gateway after the write, some conditional
    // writes meet someone else's edit.
    let erp =
        start_erp(ErpConfig { seed: 5, lost_answer_ratio: 0.3, concurrent_edit_ratio: 0.3, ..Default::default() })
            .await;
    let dir = tempfile::tempdir().unwrap();
    // One request at a time, so the seeded faults fall on the same requests in every run.
    let mut config = flow_config(ConnectorType::SapOdata, &erp.sap_url(), Operation::Upsert);
    config.flows[0].connectors.get_mut("erp-demo").unwrap().limits =
        Some(ConnectorLimits { concurrency: Some(1), ..Default::default() });
    let runner = InProcessRunner::start(config, dir.path()).await;
    for id in 1..=4 {
        send_order(&runner, id, "MUG-WHT", 0).await;
    }
    settled(&runner, 4, 0).await;
    for id in 1..=4 {
        send_order(&runner, id, "TSHIRT-BLK-M", 1).await;
    }
    settled(&runner, 8, 0).await;
    for order in erp.orders() {
        assert_eq!(order.writes, 2, "created once and updated once, however often sent: {order:?}");
        assert_eq!(order.items[0].item, "TSHIRT-BLK-M");
    }
    let stats = erp.stats();
    assert!(stats.idempotent_replays >= 1, "a lost answer's retry was answered from the first: {stats:?}");
    runner.stop().await;
}

/// A poll of the ERP's sales orders (type `kind` at `endpoint`) into a scripted sink;
/// the trigger names only the path (and the page size, where the API takes it from the
/// client).
fn poll_manifests(kind: &str, endpoint: &str, query: &str, sink: &str) -> Manifests {
    let yaml = format!(
        r#"
apiVersion: entrepot.io/v1alpha1
kind: Connector
metadata: {{name: erp}}
spec:
  type: {kind}
  endpoint: {endpoint}
  # The simulated ERP wants the quickstart's ERP token.
  auth: {{bearer: {{secretRef: {{name: erp-demo, key: token}}}}}}
---
apiVersion: entrepot.io/v1alpha1
kind: Connector
metadata: {{name: sink}}
spec: {{type: rest, endpoint: "{sink}"}}
---
apiVersion: entrepot.io/v1alpha1
kind: SyncFlow
metadata: {{name: erp-orders}}
spec:
  source:
    connectorRef: erp
    entity: salesOrders
    trigger:
      poll: {{interval: 1h, path: /salesOrders, query: {query}}}
  targets:
    - {{connectorRef: sink, entity: salesOrder, path: /orders, operation: create}}
  delivery:
    idempotencyKey: .externalId
    retry: {{maxAttempts: 3, initialBackoff: 20ms, maxBackoff: 100ms}}
"#
    );
    let mut manifests = Manifests::default();
    manifests.add_text(Path::new("poll.yaml"), &yaml).unwrap();
    manifests
}

async fn polls_every_page(kind: &str, erp: ErpHandle, endpoint: &str, query: &str) {
    let create = reqwest::Client::new();
    for n in 0..5 {
        let order = json!({"externalId": format!("erp-{n}"), "customer": {"email": "a@example.com"}, "items": [{"item": "MUG-WHT", "quantity": 1}]});
        let created = create.post(erp.sales_orders_url()).bearer_auth(ERP_TOKEN).json(&order).send().await.unwrap();
        assert_eq!(created.status(), 204);
    }
    let sink = ScriptedTarget::start().await;
    let manifests = poll_manifests(kind, endpoint, query, &sink.url);
    let config = manifests.runner_config().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runner = InProcessRunner::start_with(config, &Secrets::with_manifests(quickstart().secrets), dir.path()).await;
    eventually(WAIT, "every order of every page delivered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == 5 && s.flows[0].pending == 0
    })
    .await;
    let mut ids: Vec<String> =
        sink.received().iter().map(|r| r.body["externalId"].as_str().unwrap().to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["erp-0", "erp-1", "erp-2", "erp-3", "erp-4"], "{kind}");
    runner.stop().await;
}

#[tokio::test]
async fn netsuite_polls_follow_links_rel_next() {
    let erp = start_erp(ErpConfig::default()).await;
    let endpoint = erp.base_url();
    polls_every_page("netsuite", erp, &endpoint, r#"{limit: "2"}"#).await;
}

#[tokio::test]
async fn dynamics_polls_follow_odata_next_links() {
    let erp =
        start_erp(ErpConfig { dynamics: DynamicsKnobs { page_size: 2, ..Default::default() }, ..Default::default() })
            .await;
    let endpoint = erp.dynamics_url();
    polls_every_page("dynamics365", erp, &endpoint, "{}").await;
}

#[tokio::test]
async fn sap_polls_follow_next() {
    let erp = start_erp(ErpConfig { sap: SapKnobs { page_size: 2, ..Default::default() }, ..Default::default() }).await;
    let endpoint = erp.sap_url();
    polls_every_page("sap-odata", erp, &endpoint, "{}").await;
}

#[tokio::test]
async fn the_delivered_log_line_names_where_netsuite_put_the_record() {
    let erp = start_erp(ErpConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    write_quickstart(&manifests, &erp.base_url());
    let connectors = manifests.join("connectors.yaml");
    let text = std::fs::read_to_string(&connectors).unwrap().replace("type: rest", "type: netsuite");
    let text: String = text.lines().filter(|l| !l.contains("idempotencyHeader")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&connectors, text).unwrap();
    let log = dir.path().join("runner.log");
    let data = dir.path().join("data").display().to_string();
    let args = ["--log-format", "json", "run", &manifests.display().to_string(), "--data-dir", &data]
        .map(String::from)
        .to_vec();
    let runner = RunnerProcess::spawn_logged(args, vec![("ENTREPOT_LOG".into(), "info".into())], &log).await;
    let body = shopify_order(9, "MUG-WHT", "2026-11-27T10:05:00-05:00");
    assert_eq!(post_webhook(&runner.webhook(FLOW), &body, "delivery-9", None).await.status(), 200);
    eventually(WAIT, "the order in the ERP", || async { erp.order_by_external_id("shopify:9").is_some() }).await;
    eventually(WAIT, "the delivery logged", || async {
        std::fs::read_to_string(&log).unwrap().lines().any(|l| l.contains("\"delivered\""))
    })
    .await;
    drop(runner);
    let delivered = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "delivered")
        .expect("a delivered line");
    let id = erp.order_by_external_id("shopify:9").unwrap().id;
    assert_eq!(delivered["location"], format!("/salesOrders/{id}"), "{delivered}");
}
