//! Per-key ordering without head-of-line blocking, and the stale-update guard.

use std::time::Duration;

use entrepot_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn external_ids(target: &ScriptedTarget) -> Vec<String> {
    target.received().iter().map(|r| r.body["externalId"].as_str().unwrap_or("").to_string()).collect()
}

#[tokio::test]
async fn a_retrying_order_holds_back_only_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    // The ERP fails order 1 three times (say, a locked record); everything else goes.
    target.fail_matching(r#""shopify:1""#, 503, 3);
    let mut config = quickstart_config(&target.url);
    config.flows[0].spec.delivery.retry.initial_backoff = Duration::from_millis(300).into();
    config.flows[0].spec.delivery.retry.max_backoff = Duration::from_millis(300).into();
    let runner = InProcessRunner::start(config, dir.path()).await;
    let url = runner.webhook(FLOW);

    post_webhook(&url, &shopify_order(1, "SKU-1", "2026-11-27T10:00:00-05:00"), "d-1a", None).await;
    // A later revision of order 1 must wait for the first; other orders must not.
    post_webhook(&url, &shopify_order(1, "SKU-2", "2026-11-27T10:01:00-05:00"), "d-1b", None).await;
    for id in 2..=6 {
        post_webhook(&url, &shopify_order(id, "SKU-1", "2026-11-27T10:00:00-05:00"), &format!("d-{id}"), None).await;
    }
    eventually(WAIT, "all seven records delivered", || async {
        status(&runner.admin_url).await.flows[0].delivered == 7
    })
    .await;

    let received = target.received();
    let delivered: Vec<&Value> = received.iter().map(|r| &r.body).collect();
    let first_success_of_1 = 3; // three 503s, then the fourth request for order 1 succeeds
    let attempts_of_1: Vec<usize> =
        delivered.iter().enumerate().filter(|(_, b)| b["externalId"] == "shopify:1").map(|(i, _)| i).collect();
    assert_eq!(attempts_of_1.len(), first_success_of_1 + 2, "{:?}", external_ids(&target));
    let others: Vec<usize> =
        delivered.iter().enumerate().filter(|(_, b)| b["externalId"] != "shopify:1").map(|(i, _)| i).collect();
    assert!(
        others.iter().all(|i| *i < attempts_of_1[first_success_of_1]),
        "orders 2-6 went while order 1 was retrying: {:?}",
        external_ids(&target)
    );
    // Order 1's two revisions arrived in order, the second only after the first succeeded.
    let revisions: Vec<&str> =
        attempts_of_1.iter().map(|i| delivered[*i]["items"][0]["item"].as_str().unwrap()).collect();
    assert_eq!(revisions, ["SKU-1", "SKU-1", "SKU-1", "SKU-1", "SKU-2"]);
    runner.stop().await;
}

#[tokio::test]
async fn an_older_revision_arriving_late_is_not_delivered() {
    older_revision_is_stale(Some(".sourceVersion")).await;
}

#[tokio::test]
async fn the_stale_guard_reads_the_canonical_source_version_by_default() {
    // The quickstart's Mapping produces canonical SalesOrder v1, which carries sourceVersion.
    older_revision_is_stale(None).await;
}

async fn older_revision_is_stale(version_key: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    let mut config = quickstart_config(&target.url);
    config.flows[0].spec.delivery.version_key = version_key.map(String::from);
    let runner = InProcessRunner::start(config, dir.path()).await;
    let url = runner.webhook(FLOW);

    post_webhook(&url, &shopify_order(7, "SKU-NEW", "2026-11-27T10:05:00-05:00"), "d-new", None).await;
    eventually(WAIT, "the newer revision delivered", || async {
        status(&runner.admin_url).await.flows[0].delivered == 1
    })
    .await;
    // Shopify retries an older delivery after the newer one went through.
    post_webhook(&url, &shopify_order(7, "SKU-OLD", "2026-11-27T10:00:00-05:00"), "d-old", None).await;
    eventually(WAIT, "the older revision counted as stale", || async {
        status(&runner.admin_url).await.flows[0].stale == 1
    })
    .await;

    let s = status(&runner.admin_url).await;
    assert_eq!((s.flows[0].delivered, s.flows[0].pending, s.flows[0].dead_lettered), (1, 0, 0));
    let items: Vec<String> =
        target.received().iter().map(|r| r.body["items"][0]["item"].as_str().unwrap().to_string()).collect();
    assert_eq!(items, ["SKU-NEW"]);
    let metrics = reqwest::get(format!("{}/metrics", runner.admin_url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(
            r#"entrepot_records_stale_total{connector="erp-demo",flow="shopify-orders-to-erp",target="erp-demo"} 1"#
        ),
        "{metrics}"
    );
    runner.stop().await;
}
