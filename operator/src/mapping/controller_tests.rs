//! The Mapping controller (the real kube-runtime `Controller`) against the in-memory
//! API of [`crate::test_support::fake_api`].

use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::{CONTROLLER, run, status::MAX_DIFF};
use crate::{
    resources::{
        Mapping, MappingStatus, ProducedEntity,
        conditions::{READY, find},
    },
    test_support::{Observed, events_about, eventually, fixtures},
};

const NS: &str = "retail";
const CANONICAL: &str = "shopify-order-to-canonical";

async fn start() -> Observed {
    Observed::start(|ctx, shutdown| async move { run(ctx, None, shutdown).await }).await
}

/// The fixture's Mappings (the canonical one with `program` when given) and its flow.
async fn create_orders(h: &Observed, program: Option<&str>) {
    let mut f = fixtures::orders();
    f.connectors.clear();
    for m in &mut f.mappings {
        if let Some(program) = program.filter(|_| m.metadata.name.as_deref() == Some(CANONICAL)) {
            m.spec.0.program = program.into();
        }
    }
    h.create_all(f).await;
}

fn mappings(h: &Observed) -> Api<Mapping> {
    h.api(NS)
}

async fn status_when(h: &Observed, name: &str, what: &str, check: impl Fn(&MappingStatus) -> bool) -> MappingStatus {
    eventually(what, || async { mappings(h).get(name).await.ok()?.status.filter(|s| check(s)) }).await
}

/// Changes the canonical Mapping's program; returns its new generation.
async fn set_program(h: &Observed, program: &str) -> i64 {
    let patch = json!({"spec": {"program": program}});
    let patched = mappings(h).patch(CANONICAL, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    patched.metadata.generation.unwrap()
}

fn ready(status: &MappingStatus) -> (String, String) {
    let c = find(&status.conditions, READY).unwrap_or_else(|| panic!("no Ready condition in {status:?}"));
    (c.status.clone(), c.reason.clone())
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}

/// Compiles, and gives a `total` the fixture's test does not expect: 19 long field
/// names more than expected, so the diff is longer than the status keeps.
fn failing_program() -> String {
    let extra: Vec<String> = (0..19).map(|i| format!("k{i}{}: 1", "x".repeat(200))).collect();
    format!("{} + {{{}}}", fixtures::canonical_program("0"), extra.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_whose_tests_pass_is_ready_and_says_what_it_produces() {
    let h = start().await;
    create_orders(&h, None).await;

    let status = status_when(&h, CANONICAL, "usedBy orders", |s| s.used_by == ["orders"]).await;
    assert_eq!(ready(&status), pair("True", "TestsPassed"));
    assert_eq!(status.observed_generation, 1);
    let tests = status.tests.unwrap();
    assert_eq!((tests.passed, tests.failed, tests.summary.as_str()), (1, 0, "1 passed, 0 failed"));
    assert_eq!(status.produces, Some(ProducedEntity { entity: "SalesOrder".into(), version: "v1".into() }));

    // A Mapping to a system's payload produces no canonical entity and may have no tests.
    let status = status_when(&h, "canonical-to-erp", "usedBy orders", |s| s.used_by == ["orders"]).await;
    assert_eq!(ready(&status), pair("True", "TestsPassed"));
    assert_eq!(status.produces, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_does_not_compile_is_reported_with_its_position() {
    let h = start().await;
    create_orders(&h, Some("{orderId: .id,\n  total: (.total_price |}")).await;

    let status = status_when(&h, CANONICAL, "CompileFailed", |s| find(&s.conditions, READY).is_some()).await;
    assert_eq!(ready(&status), pair("False", "CompileFailed"));
    let message = &find(&status.conditions, READY).unwrap().message;
    assert!(message.contains("spec.program") && message.contains("at 2:"), "{message}");
    assert_eq!(status.tests, None);
    assert_eq!(events_about(&h.cluster.client, NS, CANONICAL, "MappingTestsFailing").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_test_is_reported_bounded_and_announced_once_per_transition() {
    let h = start().await;
    create_orders(&h, None).await;
    status_when(&h, CANONICAL, "Ready", |s| s.used_by == ["orders"] && find(&s.conditions, READY).is_some()).await;

    let generation = set_program(&h, &failing_program()).await;
    let status = status_when(&h, CANONICAL, "TestsFailing", |s| s.observed_generation == generation).await;
    assert_eq!(ready(&status), pair("False", "TestsFailing"));
    let tests = status.tests.clone().unwrap();
    assert_eq!((tests.passed, tests.failed), (0, 1));
    let first = tests.first_failure.unwrap();
    assert_eq!(first.name, "a minimal order");
    assert!(first.diff.len() <= MAX_DIFF, "{} bytes", first.diff.len());
    assert!(first.diff.ends_with("… (cut)"), "{}", first.diff);
    let message = &find(&status.conditions, READY).unwrap().message;
    assert!(message.contains("first failing test `a minimal order`"), "{message}");

    // Announced on the Mapping and on the flow using it.
    let on_mapping = events_about(&h.cluster.client, NS, CANONICAL, "MappingTestsFailing").await;
    assert_eq!(on_mapping.len(), 1, "{on_mapping:?}");
    assert_eq!(on_mapping[0].type_.as_deref(), Some("Warning"));
    assert!(on_mapping[0].note.as_deref().unwrap_or_default().starts_with("mapping tests failed: "));
    let on_flow = events_about(&h.cluster.client, NS, "orders", "MappingTestsFailing").await;
    assert_eq!(on_flow.len(), 1, "{on_flow:?}");
    assert_eq!(on_flow[0].regarding.as_ref().and_then(|r| r.kind.as_deref()), Some("SyncFlow"));

    // Reconciled again while still failing: nothing more is published.
    let reconciles = h.ctx.metrics.reconciles(CONTROLLER);
    let touch = json!({"metadata": {"annotations": {"example.com/touched": "yes"}}});
    mappings(&h).patch(CANONICAL, &PatchParams::default(), &Patch::Merge(touch)).await.unwrap();
    eventually("another reconcile", || async { (h.ctx.metrics.reconciles(CONTROLLER) > reconciles).then_some(()) })
        .await;
    let on_mapping = events_about(&h.cluster.client, NS, CANONICAL, "MappingTestsFailing").await;
    assert_eq!(on_mapping.len(), 1);
    assert_eq!(on_mapping[0].series, None, "published once, not repeated");

    // Fixed: Ready again, and the recovery is announced once.
    let generation = set_program(&h, &fixtures::orders().mappings[0].spec.program).await;
    let status = status_when(&h, CANONICAL, "Ready again", |s| s.observed_generation == generation).await;
    assert_eq!(ready(&status), pair("True", "TestsPassed"));
    assert_eq!(status.tests.unwrap().first_failure, None);
    assert_eq!(events_about(&h.cluster.client, NS, CANONICAL, "MappingTestsPassing").await.len(), 1);
    assert_eq!(events_about(&h.cluster.client, NS, CANONICAL, "MappingTestsFailing").await.len(), 1);
}
