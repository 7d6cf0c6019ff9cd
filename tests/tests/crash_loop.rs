//! A runner under a steady webhook load is killed with SIGKILL at random moments, 20
//! times, and restarted on the same data directory. At the end every acknowledged
//! revision has reached the target (once, counting by idempotency key, as a target that
//! honours the key does) and the revisions of each order arrived in order.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use entrepot_e2e::*;
use rand::RngExt;

const KILLS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_under_load_lose_nothing_and_keep_order() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    let manifests = dir.path().join("manifests");
    write_quickstart(&manifests, &target.url);
    let data = dir.path().join("data");
    let runner = RunnerProcess::start(&manifests, &data).await;

    // The storefront: each order as revision 1, then (one order later) revision 2, each
    // delivery retried until acknowledged, as Shopify does.
    let url = Arc::new(Mutex::new(runner.webhook(FLOW)));
    let acked: Arc<Mutex<Vec<(u64, u8)>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load = tokio::spawn({
        let (url, acked) = (url.clone(), acked.clone());
        async move {
            let mut n = 0u64;
            while !*stop_rx.borrow() {
                n += 1;
                let mut sends = vec![(n, 1u8)];
                if n > 1 {
                    sends.push((n - 1, 2));
                }
                for (order, rev) in sends {
                    let body = shopify_order(order, &format!("REV-{rev}"), &format!("2026-11-27T10:0{rev}:00-05:00"));
                    loop {
                        let to = url.lock().unwrap().clone();
                        match tokio::time::timeout(
                            Duration::from_secs(5),
                            post_webhook_raw(&to, &body, &format!("d-{order}-{rev}")),
                        )
                        .await
                        {
                            Ok(Ok(200)) => break,
                            _ => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                    acked.lock().unwrap().push((order, rev));
                }
            }
        }
    });

    let mut runner = Some(runner);
    for _ in 0..KILLS {
        let pause = rand::rng().random_range(100..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        runner.take().unwrap().kill9();
        let next = RunnerProcess::start(&manifests, &data).await;
        *url.lock().unwrap() = next.webhook(FLOW);
        runner = Some(next);
    }
    let _ = stop_tx.send(true);
    load.await.unwrap();
    let runner = runner.unwrap();
    eventually(Duration::from_secs(60), "the queue drained", || async {
        status(&runner.admin_url).await.flows[0].pending == 0
    })
    .await;

    // What the target applied: each idempotency key once, in first-arrival order.
    let mut applied: Vec<(String, String)> = Vec::new();
    let mut keys = BTreeSet::new();
    for r in target.received() {
        let key = r.headers["idempotency-key"].to_str().unwrap().to_string();
        if keys.insert(key) {
            applied.push((
                r.body["externalId"].as_str().unwrap().to_string(),
                r.body["items"][0]["item"].as_str().unwrap().to_string(),
            ));
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 2 * KILLS, "the load kept going through the kills: {} acknowledged", acked.len());
    let mut per_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (order, sku) in &applied {
        per_order.entry(order.clone()).or_default().push(sku.clone());
    }
    for (order, rev) in &acked {
        let revs = per_order.get(&format!("shopify:{order}")).unwrap_or_else(|| panic!("order {order} never arrived"));
        assert!(
            revs.contains(&format!("REV-{rev}")),
            "order {order} revision {rev} acknowledged but not applied: {revs:?}"
        );
    }
    for (order, revs) in &per_order {
        assert!(revs == &["REV-1"] || revs == &["REV-1", "REV-2"], "order {order} applied as {revs:?}");
    }
    let s = status(&runner.admin_url).await;
    assert_eq!(s.flows[0].dead_lettered, 0);
}
