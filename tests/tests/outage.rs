//! After a target's outage, its backlog drains at the rate the target grants: the first
//! success after a run of target-wide failures sends every retry that was waiting out its
//! backoff at once (within the quota), instead of each waiting its full backoff.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use entrepot_e2e::*;

/// Far longer than the test waits: a record that waits out this backoff fails the test.
const BACKOFF: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_first_success_after_an_outage_releases_the_waiting_retries() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    // The ERP is down: the first attempt of each of the first orders gets a 503.
    target.fail_matching("shopify:", 503, 4);
    let mut config = quickstart_config(&target.url);
    let retry = &mut config.flows[0].spec.delivery.retry;
    retry.initial_backoff = BACKOFF.into();
    retry.max_backoff = BACKOFF.into();
    let runner = InProcessRunner::start(config, dir.path()).await;
    let url = runner.webhook(FLOW);
    let send = |id: u64| {
        let url = url.clone();
        async move {
            let body = shopify_order(id, "MUG-WHT", "2026-11-27T10:00:00-05:00");
            assert_eq!(post_webhook(&url, &body, &format!("wh-{id}"), None).await.status(), 200);
        }
    };
    for id in 1..=4 {
        send(id).await;
    }
    eventually(WAIT, "four failed attempts", || async { target.received().len() == 4 }).await;
    let s = status(&runner.admin_url).await;
    assert_eq!((s.flows[0].delivered, s.flows[0].pending), (0, 4), "all four wait out their backoff");

    // The ERP is back: a new order goes through, and the four waiting follow at once.
    send(5).await;
    eventually(WAIT, "all five delivered", || async { status(&runner.admin_url).await.flows[0].delivered == 5 }).await;
    let ids: Vec<String> = target.received().iter().map(|r| r.body["externalId"].to_string()).collect();
    assert_eq!(ids.len(), 9, "each failed once and was delivered once, after order 5: {ids:?}");
    runner.stop().await;
}

/// A backlog of large orders after an outage waits on disk, not in memory: a target's
/// worker holds at most `runner.queue.maxHeldBytes` of delivery items (or one item), so
/// while the first few fail and retry, the rest are not even read.
#[tokio::test]
async fn a_backlog_of_large_orders_is_held_in_memory_only_up_to_the_byte_budget() {
    const ORDERS: u64 = 20;
    const NOTE: usize = 250_000;
    const BUDGET: u64 = 1024 * 1024;
    const FAILURES: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    target.fail_matching("shopify:", 503, FAILURES);
    let mut config = quickstart_config(&target.url);
    let spec = &mut config.flows[0].spec;
    spec.runner.queue.max_held_bytes = BUDGET;
    spec.delivery.retry.max_attempts = 20;
    spec.delivery.retry.initial_backoff = Duration::from_millis(100).into();
    spec.delivery.retry.max_backoff = Duration::from_millis(400).into();
    // The target is down while the orders arrive: the backlog of an outage.
    let runner = InProcessRunner::start(config, dir.path()).await;
    let url = runner.webhook(FLOW);
    for id in 1..=ORDERS {
        let mut order: serde_json::Value =
            serde_json::from_slice(&shopify_order(id, "MUG-WHT", "2026-11-27T10:00:00-05:00")).unwrap();
        order["note"] = "x".repeat(NOTE).into();
        let body = serde_json::to_vec(&order).unwrap();
        assert_eq!(post_webhook(&url, &body, &format!("wh-{id}"), None).await.status(), 200);
    }
    let held = |metrics: &str| -> Option<u64> {
        metrics.lines().find(|l| l.starts_with("entrepot_delivery_held_bytes{"))?.rsplit(' ').next()?.parse().ok()
    };
    let most = std::sync::Arc::new(AtomicU64::new(0));
    eventually(WAIT, "every order delivered", || {
        let (admin, most) = (runner.admin_url.clone(), most.clone());
        async move {
            let metrics = reqwest::get(format!("{admin}/metrics")).await.unwrap().text().await.unwrap();
            most.fetch_max(held(&metrics).expect("the held-bytes gauge is exported"), Ordering::Relaxed);
            status(&admin).await.flows[0].delivered == ORDERS
        }
    })
    .await;
    let most = most.load(Ordering::Relaxed);
    // An item holds the order as received (~250 KB) and as mapped: four fit under the
    // budget, the fifth reaches it.
    assert!(most <= BUDGET + NOTE as u64 * 2, "held {most} bytes, over the budget of {BUDGET} plus one item");
    let first: std::collections::BTreeSet<String> =
        target.received()[..FAILURES].iter().map(|r| r.body["externalId"].to_string()).collect();
    assert!(
        first.len() <= 5,
        "only the orders held are tried before the target answers again, not all {ORDERS}: {first:?}"
    );
    let metrics = reqwest::get(format!("{}/metrics", runner.admin_url)).await.unwrap().text().await.unwrap();
    assert_eq!(held(&metrics), Some(0), "nothing held once all are delivered");
    runner.stop().await;
}
