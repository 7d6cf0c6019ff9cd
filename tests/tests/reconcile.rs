//! `entrepot reconcile` end to end (examples/orders-reconciliation): the simulated
//! storefront's Admin API and ERP on loopback, the flow's runner in its own process, and
//! drift made on purpose: two orders whose webhooks never came, an ERP order whose total
//! was edited by hand, an ERP order the storefront never had, and an old order outside
//! the window. A report counts each; a repair sends the missing and different orders
//! through the runner, after which the ERP holds each exactly once and only what repair
//! cannot fix (the ERP-only order) is left.

use std::{path::Path, time::Duration};

use entrepot::reconcile::ReconcileSummary;
use entrepot_e2e::*;
use entrepot_sim::{
    erp::{self, ErpConfig},
    storefront::{AdminApi, Order, OrderGenerator},
};
use jiff::{Timestamp, ToSpan, tz::Offset};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const FLOW: &str = "shopify-orders-to-erp";
const ADMIN_TOKEN: &str = "demo-shopify-admin-token";
const WAIT: Duration = Duration::from_secs(60);

async fn reconcile(dir: &Path, extra: &[&str]) -> (ReconcileSummary, String) {
    let termination = dir.join("termination-log");
    let dir_arg = dir.join("manifests");
    let mut args = vec!["reconcile", "--dir", dir_arg.to_str().unwrap(), "--schedule", "orders-hourly"];
    args.extend(["--termination-log", termination.to_str().unwrap()]);
    args.extend(extra);
    let run = run_cli(&args).await;
    assert!(run.success, "entrepot reconcile failed:\n{}\n{}", run.stdout, run.stderr);
    let line = run.stdout.trim().to_string();
    let summary = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(std::fs::read_to_string(&termination).unwrap(), line, "the termination message is the summary");
    (summary, line)
}

fn counts(s: &ReconcileSummary) -> [u64; 6] {
    [s.compared, s.matched, s.missing_in_target, s.missing_in_source, s.mismatched, s.repaired]
}

fn external_id(order: &Order) -> String {
    format!("shopify:{}", order.id)
}

#[tokio::test]
async fn reconcile_reports_each_kind_of_drift_and_repair_fixes_what_it_can() {
    let erp = erp::bind(ErpConfig { bearer_token: Some(ERP_TOKEN.into()), ..ErpConfig::default() }, "127.0.0.1:0")
        .await
        .unwrap();
    let shop = AdminApi::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), ADMIN_TOKEN).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let manifests = work.path().join("manifests");
    write_reconciliation_example(&manifests, &shop.base_url(), &erp.base_url());
    let runner = RunnerProcess::start(&manifests, &work.path().join("data")).await;

    let skus = vec!["TSHIRT-BLK-M".to_string(), "MUG-WHT".to_string()];
    let mut generator =
        OrderGenerator::new(7, skus).unwrap().starting_at(Timestamp::now() - 2.hours(), Offset::constant(-5));
    let [delivered, edited, lost_a, lost_b] = std::array::from_fn(|_| generator.next_order());
    let mut old = generator.next_order();
    let three_days_ago = (Timestamp::now() - 72.hours()).strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    (old.created_at, old.updated_at) = (three_days_ago.clone(), three_days_ago);
    for order in [&delivered, &edited, &lost_a, &lost_b, &old] {
        shop.put(order.clone());
    }
    // Two orders arrive by webhook; the other three never do.
    for order in [&delivered, &edited] {
        let response =
            post_webhook(&runner.webhook(FLOW), &serde_json::to_vec(order).unwrap(), &format!("wh-{}", order.id), None)
                .await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    eventually(WAIT, "the delivered orders in the ERP", || async { erp.orders().len() == 2 }).await;
    // Someone edits one order's total in the ERP, and keys in an order of their own.
    let http = reqwest::Client::new();
    let stored = erp.order_by_external_id(&external_id(&edited)).unwrap();
    let mut changed = stored.body.clone();
    changed["total"] = json!(stored.total.unwrap() + 100);
    let put = http
        .put(format!("{}/eid:{}", erp.sales_orders_url(), external_id(&edited)))
        .bearer_auth(ERP_TOKEN)
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let erp_only = json!({"externalId": "manual:1", "customer": {"email": "desk@example.com"},
                         "items": [{"item": "MUG-WHT", "quantity": 1, "rate": 1249}], "total": 1249});
    let post = http.post(erp.sales_orders_url()).bearer_auth(ERP_TOKEN).json(&erp_only).send().await.unwrap();
    assert!(post.status().is_success(), "{}", post.status());

    // A report counts, and changes nothing.
    let (report, _) = reconcile(work.path(), &["--action", "report"]).await;
    // compared: 4 storefront orders in the window + 1 ERP-only; the old order is outside.
    assert_eq!(counts(&report), [5, 1, 2, 1, 1, 0], "{report:?}");
    let mut lost = vec![external_id(&lost_a), external_id(&lost_b)];
    lost.sort();
    assert_eq!(report.samples.missing_in_target, lost);
    assert_eq!(report.samples.missing_in_source, ["manual:1"]);
    assert_eq!(report.samples.mismatched, [external_id(&edited)]);
    assert_eq!((report.flow.as_str(), report.unreadable), (FLOW, 0));
    assert_eq!(erp.orders().len(), 3);

    // A repair sends the two lost orders and the edited one through the runner.
    let (repair, _) = reconcile(work.path(), &["--action", "repair", "--runner", &runner.admin_url]).await;
    assert_eq!(counts(&repair), [5, 1, 2, 1, 1, 3], "{repair:?}");
    let fixed = |o: &Order| erp.order_by_external_id(&external_id(o)).is_some_and(|s| s.total == o.total_price_minor());
    eventually(WAIT, "the repaired orders in the ERP", || async {
        [&lost_a, &lost_b, &edited].iter().all(|o| fixed(o))
    })
    .await;
    let mut ids: Vec<String> = erp.orders().into_iter().map(|o| o.external_id).collect();
    ids.sort();
    let mut expected: Vec<String> = [&delivered, &edited, &lost_a, &lost_b]
        .iter()
        .map(|o| external_id(o))
        .chain(["manual:1".to_string()])
        .collect();
    expected.sort();
    assert_eq!(ids, expected, "each order exactly once, the old one not touched");

    // The same records handed over again are duplicates of the repair's deliveries.
    let again = repeat_delivery(&runner.admin_url, &lost_a).await;
    assert_eq!((again["queued"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(1)), "{again}");

    // Nothing left to repair; the ERP-only order stays reported (a repair never deletes).
    let (after, _) = reconcile(work.path(), &["--action", "report"]).await;
    assert_eq!(counts(&after), [5, 4, 0, 1, 0, 0], "{after:?}");
    assert_eq!(status(&runner.admin_url).await.flows[0].dead_lettered, 0);
}

/// Posts `order` to the runner's records endpoint under the delivery id a repair gives it.
async fn repeat_delivery(admin_url: &str, order: &Order) -> Value {
    let payload = serde_json::to_value(order).unwrap();
    let id = format!("reconcile:{}", entrepot::source::poll::content_digest(&payload));
    let body =
        json!({"records": [{"deliveryId": id, "payload": payload}], "why": "repair", "schedule": "orders-daily"});
    let response =
        reqwest::Client::new().post(format!("{admin_url}/v1/flows/{FLOW}/records")).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_run_that_cannot_list_fails_and_says_why_in_the_termination_message() {
    let work = tempfile::tempdir().unwrap();
    let manifests = work.path().join("manifests");
    // Nothing listens on port 1.
    write_reconciliation_example(&manifests, "http://127.0.0.1:1", "http://127.0.0.1:1");
    let flow = manifests.join("syncflow.yaml");
    let text = std::fs::read_to_string(&flow).unwrap().replace("maxAttempts: 8", "maxAttempts: 1");
    std::fs::write(&flow, text).unwrap();
    let termination = work.path().join("termination-log");
    let run = run_cli(&[
        "reconcile",
        "--dir",
        manifests.to_str().unwrap(),
        "--action",
        "report",
        "--termination-log",
        termination.to_str().unwrap(),
    ])
    .await;
    assert!(!run.success, "{}", run.stdout);
    let message: Value = serde_json::from_str(&std::fs::read_to_string(&termination).unwrap()).unwrap();
    let error = message["error"].as_str().unwrap();
    assert!(error.contains("ReconcileSchedule orders-hourly: listing spec."), "{error}");
    assert!(run.stderr.contains("Connector"), "{}", run.stderr);

    // Repair without a runner to send through is refused before anything is listed.
    let run = run_cli(&["reconcile", "--dir", manifests.to_str().unwrap(), "--action", "repair"]).await;
    assert!(!run.success);
    assert!(run.stderr.contains("--runner"), "{}", run.stderr);
}
