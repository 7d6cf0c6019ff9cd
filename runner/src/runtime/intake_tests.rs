//! A webhook of a flow that needs nothing else from the inbox is mapped at intake and
//! placed in the outbox (or the dead letters) by the commit that acknowledges it; a flow
//! that refetches thin webhooks still goes through the inbox. No workers run here, so
//! what the queue holds is exactly what the acknowledged commit wrote.

use std::path::Path;

use super::*;
use crate::{manifest::Manifests, queue::DeadLetterReason, secrets::Secrets, source::signature::sign};
use entrepot_api::resource::{Refetch, SignatureScheme};

pub(super) const FLOW: &str = "shopify-orders-to-erp";
pub(super) const TARGET: &str = "erp-demo";

/// The quickstart runtime (changed by `edit`), its intake writer running and its webhook
/// router served, but no flow workers; and the webhook signing secret.
pub(super) async fn intake_only(dir: &Path, edit: impl FnOnce(&mut RunnerConfig)) -> (Arc<Runtime>, String, Vec<u8>) {
    let manifests = Manifests::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")).unwrap();
    let mut config = manifests.runner_config().unwrap();
    edit(&mut config);
    let rt = Runtime::new(config, &Secrets::with_manifests(manifests.secrets.clone()), dir).unwrap();
    tokio::spawn(rt.intake.task(rt.queue.clone()).unwrap());
    let url = crate::test_support::serve(rt.webhook_router()).await;
    let secret = manifests.secrets.values().find_map(|s| s.get("client-secret")).unwrap().as_bytes().to_vec();
    (rt, format!("{url}/webhooks/{FLOW}"), secret)
}

pub(super) async fn post(url: &str, secret: &[u8], body: &[u8], delivery: &str) -> u16 {
    let signature = sign(SignatureScheme::ShopifyHmacSha256, secret, body);
    let response = reqwest::Client::new()
        .post(url)
        .header("x-shopify-hmac-sha256", signature)
        .header("x-shopify-webhook-id", delivery)
        .header("x-shopify-topic", "orders/create")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

pub(super) fn fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/shopify-order.json")).unwrap()
}

#[tokio::test]
async fn an_acknowledged_webhook_is_already_in_the_outbox_and_a_repeat_of_its_key_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, url, secret) = intake_only(dir.path(), |_| ()).await;
    assert_eq!(post(&url, &secret, &fixture(), "d-1").await, 200);
    assert!(rt.queue.inbox(FLOW, 10).unwrap().is_empty(), "nothing left for the prepare worker");
    let outbox = rt.queue.outbox(FLOW, TARGET, 10).unwrap();
    assert_eq!(outbox.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&outbox[0].1.body).unwrap();
    assert_eq!(body["externalId"], "shopify:5678901234567", "mapped for the target: {body}");
    assert_eq!(outbox[0].1.envelope.payload, fixture(), "the record as received is kept with it");

    // Another delivery of the same revision: a new delivery id and body (a body-only
    // signature scheme deduplicates by the body), the same idempotency key.
    let mut resent = fixture();
    resent.push(b'\n');
    assert_eq!(post(&url, &secret, &resent, "d-2").await, 200);
    assert_eq!(rt.queue.outbox(FLOW, TARGET, 10).unwrap().len(), 1);
    let counts = rt.metrics.flow_counts(FLOW);
    assert_eq!((counts.received, counts.deduplicated), (2, 1));
}

#[tokio::test]
async fn an_unmappable_webhook_is_acknowledged_and_dead_lettered_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, url, secret) = intake_only(dir.path(), |_| ()).await;
    assert_eq!(post(&url, &secret, b"this is not json", "d-1").await, 200);
    assert!(rt.queue.inbox(FLOW, 10).unwrap().is_empty());
    assert!(rt.queue.outbox(FLOW, TARGET, 10).unwrap().is_empty());
    let letters = rt.queue.dead_letters(FLOW).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1.reason, DeadLetterReason::Mapping);
    assert!(letters[0].1.message.contains("source payload"), "{}", letters[0].1.message);
    assert_eq!(letters[0].1.envelope.payload, b"this is not json");
    assert_eq!(rt.metrics.flow_counts(FLOW).dead_lettered, 1);
}

#[tokio::test]
async fn a_flow_that_refetches_thin_webhooks_still_queues_them_in_the_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, url, secret) = intake_only(dir.path(), |config| {
        let flow = &mut config.flows[0];
        flow.connectors.get_mut("shopify-demo").unwrap().endpoint = Some("http://127.0.0.1:9".into());
        let webhook = flow.spec.source.trigger.webhook.as_mut().unwrap();
        webhook.refetch = Some(Refetch { path: "/orders/{id}.json".into(), id: ".id".into() });
    })
    .await;
    assert_eq!(post(&url, &secret, &fixture(), "d-1").await, 200);
    assert_eq!(rt.queue.inbox(FLOW, 10).unwrap().len(), 1, "the prepare worker refetches it first");
    assert!(rt.queue.outbox(FLOW, TARGET, 10).unwrap().is_empty());
}

#[tokio::test]
async fn past_the_byte_budget_a_webhook_is_refused_with_retry_after_dead_letters_included() {
    let dir = tempfile::tempdir().unwrap();
    let budget = fixture().len() as u64 * 3 / 2;
    let (rt, url, secret) = intake_only(dir.path(), |c| c.flows[0].spec.runner.queue.max_bytes = budget).await;
    // A dead letter takes most of the budget: what it holds counts.
    let unmappable = vec![b'x'; fixture().len()];
    assert_eq!(post(&url, &secret, &unmappable, "d-1").await, 200);
    assert_eq!(rt.queue.dead_letters(FLOW).unwrap().len(), 1);
    assert!(rt.queue.held_bytes() > fixture().len() as u64, "{}", rt.queue.held_bytes());
    assert_eq!(post(&url, &secret, &fixture(), "d-2").await, 503);
    assert!(rt.queue.outbox(FLOW, TARGET, 10).unwrap().is_empty(), "nothing queued past the budget");
    // Room again once the dead letter is discarded.
    let all = crate::queue::DeadLetterFilter::default();
    rt.queue.discard_dead_letters(&all, &crate::queue::Caller::new("test", None, Some("test")).unwrap()).unwrap();
    assert_eq!(rt.queue.held_bytes(), 0);
    assert_eq!(post(&url, &secret, &fixture(), "d-3").await, 200);
}
