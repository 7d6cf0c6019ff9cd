//! Kill -9 the runner between acknowledging webhooks and delivering them, restart it,
//! and check that every acknowledged order reaches the ERP exactly once.

use std::time::Duration;

use entrepot_e2e::*;
use entrepot_sim::erp::{self, ErpConfig};

#[tokio::test]
async fn acknowledged_orders_survive_sigkill_and_reach_the_erp_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let erp = erp::bind(
        ErpConfig { bearer_token: Some(ERP_TOKEN.into()), latency: Duration::from_millis(20), ..ErpConfig::default() },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let manifests = dir.path().join("manifests");
    write_quickstart(&manifests, &erp.base_url());
    let data = dir.path().join("data");

    // The ERP is down while the storefront delivers: everything acknowledged is queued.
    erp.set_down(true);
    let runner = RunnerProcess::start(&manifests, &data).await;
    const ORDERS: u64 = 30;
    for id in 1..=ORDERS {
        let body = shopify_order(id, "SKU-1", "2026-11-27T10:05:00-05:00");
        let answer = post_webhook(&runner.webhook(FLOW), &body, &format!("delivery-{id}"), None).await;
        assert_eq!(answer.status(), 200, "order {id} acknowledged");
    }
    // The ERP comes back; kill the runner while it is delivering.
    erp.set_down(false);
    eventually(Duration::from_secs(30), "some orders delivered", || async { erp.orders().len() >= 5 }).await;
    runner.kill9();
    let before_restart = erp.orders().len() as u64;

    let runner = RunnerProcess::start(&manifests, &data).await;
    // Shopify re-sends a few deliveries it never saw acknowledged: they must not post twice.
    for id in [1, ORDERS] {
        let body = shopify_order(id, "SKU-1", "2026-11-27T10:05:00-05:00");
        assert_eq!(post_webhook(&runner.webhook(FLOW), &body, &format!("delivery-{id}"), None).await.status(), 200);
    }
    eventually(Duration::from_secs(60), "every acknowledged order in the ERP", || async {
        erp.orders().len() as u64 == ORDERS && status(&runner.admin_url).await.flows[0].pending == 0
    })
    .await;

    let mut ids: Vec<String> = erp.orders().into_iter().map(|o| o.external_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, ORDERS, "each order stored once");
    assert_eq!(erp.stats().created, ORDERS, "no order created twice");
    assert!(before_restart < ORDERS, "the kill happened with work pending ({before_restart} of {ORDERS} delivered)");
    drop(runner);
}
