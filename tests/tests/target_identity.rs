//! Queued records name their target, not its position in `spec.targets`: reorder a
//! flow's targets while records are queued for both, restart the runner, and each
//! target's system receives exactly its own records (in the shape its mapping gave them).

use std::time::Duration;

use entrepot_api::config::RunnerConfig;
use entrepot_e2e::*;

const WAIT: Duration = Duration::from_secs(20);
const ORDERS: u64 = 3;

/// The quickstart with a second target, `erp-mirror` at `mirror_url`, that is sent the
/// canonical record (no target mapping) where the ERP is sent a sales order; both are
/// retried for as long as the test needs.
fn two_targets(erp_url: &str, mirror_url: &str) -> RunnerConfig {
    let mut config = quickstart_config(erp_url);
    let flow = &mut config.flows[0];
    let mut mirror = flow.spec.targets[0].clone();
    mirror.connector_ref = "erp-mirror".into();
    mirror.mapping_ref = None;
    mirror.path = Some("/mirror".into());
    let mut connector = flow.connectors["erp-demo"].clone();
    connector.endpoint = Some(mirror_url.to_string());
    flow.connectors.insert(mirror.connector_ref.clone(), connector);
    flow.spec.targets.push(mirror);
    flow.spec.delivery.retry.max_attempts = 100_000;
    config
}

/// The order ids in the bodies a target received, as `field` names them.
fn order_ids(received: &[Received], field: &str) -> Vec<String> {
    let mut ids: Vec<String> = received
        .iter()
        .map(|r| r.body[field].as_str().unwrap_or_else(|| panic!("no {field}: {}", r.body)).into())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn reordering_targets_with_records_queued_still_sends_each_record_to_its_own_target() {
    let dir = tempfile::tempdir().unwrap();
    let (erp, mirror) = (ScriptedTarget::start().await, ScriptedTarget::start().await);
    // Both targets are down: every record stays queued for each.
    erp.fail_matching("", 503, usize::MAX);
    mirror.fail_matching("", 503, usize::MAX);
    let config = two_targets(&erp.url, &mirror.url);
    let runner = InProcessRunner::start(config.clone(), dir.path()).await;
    for id in 1..=ORDERS {
        let order = shopify_order(id, "SKU-1", "2026-11-27T10:05:00-05:00");
        assert_eq!(post_webhook(&runner.webhook(FLOW), &order, &format!("delivery-{id}"), None).await.status(), 200);
    }
    eventually(WAIT, "one item per order and target queued", || async {
        status(&runner.admin_url).await.flows[0].pending == 2 * ORDERS
    })
    .await;
    runner.stop().await;
    let (erp_before, mirror_before) = (erp.received().len(), mirror.received().len());

    // The flow is edited: its targets in the other order. The systems are back.
    let mut reordered = config;
    reordered.flows[0].spec.targets.reverse();
    erp.recover();
    mirror.recover();
    let runner = InProcessRunner::start(reordered, dir.path()).await;
    eventually(WAIT, "everything delivered", || async { status(&runner.admin_url).await.flows[0].pending == 0 }).await;
    runner.stop().await;

    let expected: Vec<String> = (1..=ORDERS).map(|id| format!("shopify:{id}")).collect();
    let erp_got = &erp.received()[erp_before..];
    let mirror_got = &mirror.received()[mirror_before..];
    assert_eq!(order_ids(erp_got, "externalId"), expected, "the ERP gets its sales orders, once each");
    assert_eq!(order_ids(mirror_got, "orderId"), expected, "the mirror gets the canonical orders, once each");
}
