//! After a target's outage, its backlog drains at the rate the target grants: the first
//! success after a run of target-wide failures sends every retry that was waiting out its
//! backoff at once (within the quota), instead of each waiting its full backoff.

use std::time::Duration;

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
