//! The Connector controller (the real kube-runtime `Controller`) against the in-memory
//! API of [`crate::test_support::fake_api`]. The runners' reports are written into the
//! SyncFlows' status by the test, as the SyncFlow controller would.

use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::{CONTROLLER, run, status::REACHABLE};
use crate::{
    resources::{
        Connector, ConnectorStatus, SyncFlow,
        conditions::{READY, STALLED, find},
    },
    test_support::{Observed, create, events_about, eventually, fixtures},
};

const NS: &str = "retail";

async fn start() -> Observed {
    Observed::start(|ctx, shutdown| async move { run(ctx, None, shutdown).await }).await
}

fn connectors(h: &Observed) -> Api<Connector> {
    h.api(NS)
}

/// The Connector's status once `check` holds.
async fn status_when(
    h: &Observed,
    name: &str,
    what: &str,
    check: impl Fn(&ConnectorStatus) -> bool,
) -> ConnectorStatus {
    eventually(what, || async { connectors(h).get(name).await.ok()?.status.filter(|s| check(s)) }).await
}

/// What the SyncFlow controller writes from the runners' `/v1/status`.
async fn runners_report(h: &Observed, flow: &str, reports: serde_json::Value) {
    let patch = json!({"status": {"connectors": reports}});
    h.api::<SyncFlow>(NS).patch_status(flow, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

fn condition(status: &ConnectorStatus, type_: &str) -> (String, String) {
    let c = find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition in {status:?}"));
    (c.status.clone(), c.reason.clone())
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_connector_is_ready_and_lists_the_flows_using_it() {
    let h = start().await;
    h.create_all(fixtures::orders()).await;

    let status = status_when(&h, "erp", "usedBy orders", |s| s.used_by == ["orders"]).await;
    assert_eq!(condition(&status, READY), pair("True", "Valid"));
    assert_eq!(condition(&status, STALLED), pair("False", "Valid"));
    assert_eq!(condition(&status, REACHABLE), pair("Unknown", "NotReported"));
    assert_eq!(status.observed_generation, 1);

    // A second flow sending to the same ERP.
    let mut returns = fixtures::orders().flow().clone();
    returns.metadata.name = Some("returns".into());
    create(&h.cluster.client, returns).await;
    status_when(&h, "erp", "usedBy orders and returns", |s| s.used_by == ["orders", "returns"]).await;
    // The shop Connector is the source of both.
    status_when(&h, "shop", "shop usedBy both", |s| s.used_by == ["orders", "returns"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_connector_is_stalled_naming_the_field_until_fixed() {
    let h = start().await;
    let mut erp = fixtures::orders().connector("erp").clone();
    erp.spec.0.endpoint = Some("erp.example.com/api".into());
    create(&h.cluster.client, erp).await;

    let status = status_when(&h, "erp", "Stalled", |s| find(&s.conditions, STALLED).is_some()).await;
    assert_eq!(condition(&status, READY), pair("False", "InvalidSpec"));
    assert_eq!(condition(&status, STALLED), pair("True", "InvalidSpec"));
    let message = &find(&status.conditions, READY).unwrap().message;
    assert!(message.contains("spec.endpoint") && message.contains("erp.example.com/api"), "{message}");
    let published = events_about(&h.cluster.client, NS, "erp", "InvalidSpec").await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].type_.as_deref(), Some("Warning"));
    assert_eq!(published[0].reporting_controller.as_deref(), Some("entrepot-operator"));

    let fix = json!({"spec": {"endpoint": "https://erp.example.com/api"}});
    connectors(&h).patch("erp", &PatchParams::default(), &Patch::Merge(fix)).await.unwrap();
    let status = status_when(&h, "erp", "Ready", |s| s.observed_generation == 2).await;
    assert_eq!(condition(&status, READY), pair("True", "Valid"));
    assert_eq!(condition(&status, STALLED), pair("False", "Valid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reachable_follows_the_runners_reports_and_an_auth_failure_is_announced_once() {
    let h = start().await;
    h.create_all(fixtures::orders()).await;
    status_when(&h, "erp", "the first status", |s| s.used_by == ["orders"]).await;

    let failing = |at: &str, message: &str| {
        json!([{
            "name": "erp", "lastErrorCategory": "auth", "lastErrorTime": at,
            "lastErrorMessage": message, "lastSuccessTime": "2026-11-27T09:00:00Z",
        }])
    };
    runners_report(&h, "orders", failing("2026-11-27T10:00:00Z", "401 token revoked")).await;
    let reachable_is = |s: &ConnectorStatus| find(&s.conditions, REACHABLE).is_some_and(|c| c.status == "False");
    let status = status_when(&h, "erp", "Reachable=False", reachable_is).await;
    assert_eq!(condition(&status, REACHABLE), pair("False", "AuthFailing"));
    let message = &find(&status.conditions, REACHABLE).unwrap().message;
    assert!(message.contains("auth failure at 2026-11-27T10:00:00Z"), "{message}");
    assert!(message.contains("SyncFlow orders") && message.contains("401 token revoked"), "{message}");
    assert_eq!(condition(&status, READY), pair("True", "Valid"), "Reachable does not make Ready false");

    // Still failing, a later report: the status follows, no second Event.
    runners_report(&h, "orders", failing("2026-11-27T10:05:00Z", "401 still revoked")).await;
    status_when(&h, "erp", "the later report", |s| {
        find(&s.conditions, REACHABLE).is_some_and(|c| c.message.contains("still revoked"))
    })
    .await;
    let published = events_about(&h.cluster.client, NS, "erp", "AuthFailing").await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].series, None, "published once, not repeated");
    let note = published[0].note.as_deref().unwrap_or_default();
    assert!(note.starts_with("target auth failing: auth failure at 2026-11-27T10:00:00Z"), "{note}");

    // The runner gets through again.
    let recovered = json!([{
        "name": "erp", "lastErrorCategory": "auth", "lastErrorTime": "2026-11-27T10:05:00Z",
        "lastErrorMessage": "401 still revoked", "lastSuccessTime": "2026-11-27T10:06:00Z",
    }]);
    runners_report(&h, "orders", recovered).await;
    let reachable_is = |s: &ConnectorStatus| find(&s.conditions, REACHABLE).is_some_and(|c| c.status == "True");
    let status = status_when(&h, "erp", "Reachable=True", reachable_is).await;
    assert_eq!(condition(&status, REACHABLE), pair("True", "Answering"));
    assert_eq!(events_about(&h.cluster.client, NS, "erp", "AuthFailing").await.len(), 1);
    // Only the shop Connector's reports matter for shop: none.
    let shop = status_when(&h, "shop", "shop's status", |s| !s.used_by.is_empty()).await;
    assert_eq!(condition(&shop, REACHABLE), pair("Unknown", "NotReported"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_reconcile_writes_nothing() {
    let h = start().await;
    h.create_all(fixtures::orders()).await;
    let before = status_when(&h, "erp", "the first status", |s| s.used_by == ["orders"]).await;
    // Every status this test starts from is written before the counts are taken.
    status_when(&h, "shop", "shop's first status", |s| s.used_by == ["orders"]).await;
    let resource_version = connectors(&h).get("erp").await.unwrap().metadata.resource_version;
    let reconciles = h.ctx.metrics.reconciles(CONTROLLER);
    let status_updates = h.cluster.status_updates_sent();

    // Touching a flow that uses it wakes it (the in-memory store moves a generation on
    // any write, so the Connector itself is left alone).
    let touch = json!({"metadata": {"annotations": {"example.com/touched": "yes"}}});
    h.api::<SyncFlow>(NS).patch("orders", &PatchParams::default(), &Patch::Merge(touch)).await.unwrap();
    eventually("another reconcile", || async { (h.ctx.metrics.reconciles(CONTROLLER) > reconciles).then_some(()) })
        .await;
    assert_eq!(h.cluster.status_updates_sent(), status_updates, "an unchanged status is not sent");
    let after = connectors(&h).get("erp").await.unwrap();
    assert_eq!(after.metadata.resource_version, resource_version);
    assert_eq!(after.status, Some(before));
}
