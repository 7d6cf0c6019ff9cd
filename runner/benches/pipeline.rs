//! The durable pipeline's stages on the quickstart flow and the 4 KB fixture order, each
//! on a redb queue on disk (every commit fsync'd):
//! - `intake`: the webhook intake's queue write, 64 records per commit (group commit),
//!   to the inbox, and already mapped to the outbox (the path of a flow without refetch);
//! - `prepare`: the mapping of one record (jq, validation, keys, the target's body), and
//!   a batch of 64 moved inbox → outbox with it;
//! - `delivery`: 64 outbox items read, sent through the flow's target (16 at a time) to
//!   a loopback HTTP target answering 204, and acknowledged in one commit.
//!
//! `cargo bench -p entrepot --bench pipeline` (figures in docs/benchmarks.md).

use std::path::Path;

use axum::{Router, http::StatusCode, routing::post};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use entrepot::{
    flow::Flow,
    manifest::Manifests,
    queue::{Envelope, Offer, Prepared, Queue, RedbQueue, now_ms},
    secrets::Secrets,
};
use futures::{StreamExt, stream};

const FLOW: &str = "shopify-orders-to-erp";
const TARGET: &str = "erp-demo";
const GROUP: usize = 64;
const FAR: i64 = i64::MAX / 2;

/// The quickstart flow, its target at `target_url`.
fn flow(target_url: &str) -> Flow {
    let manifests = Manifests::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")).unwrap();
    let mut config = manifests.runner_config().unwrap();
    config.flows[0].connectors.get_mut(TARGET).unwrap().endpoint = Some(target_url.into());
    Flow::new(config.flows.remove(0), &Secrets::with_manifests(manifests.secrets.clone())).unwrap()
}

/// Distinct orders: the fixture with its own id, and a delivery id of their own.
struct Orders {
    fixture: serde_json::Value,
    next: u64,
}

impl Orders {
    fn new() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/shopify-order.json");
        Self { fixture: serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap(), next: 1 }
    }

    fn envelope(&mut self) -> Envelope {
        let id = self.next;
        self.next += 1;
        let mut v = self.fixture.clone();
        v["id"] = id.into();
        v["name"] = format!("#{id}").into();
        Envelope {
            id: format!("e{id}"),
            delivery_id: Some(format!("w-{id}")),
            source_delivery_id: None,
            event_id: None,
            topic: Some("orders/create".into()),
            correlation_id: format!("c{id}"),
            trace_parent: None,
            received_at_ms: now_ms(),
            payload: serde_json::to_vec_pretty(&v).unwrap(),
            replay: None,
        }
    }

    fn group(&mut self, flow: &Flow, mapped: bool) -> Vec<(Envelope, Option<Prepared>)> {
        (0..GROUP)
            .map(|_| {
                let e = self.envelope();
                let p = mapped.then(|| flow.prepare_at_intake(&e).unwrap());
                (e, p)
            })
            .collect()
    }
}

fn accept(queue: &Queue, group: &[(Envelope, Option<Prepared>)]) {
    let offers: Vec<Offer<'_>> = group
        .iter()
        .map(|(envelope, prepared)| Offer {
            flow: FLOW,
            envelope,
            delivery_expires_ms: FAR,
            max_pending: u64::MAX,
            max_bytes: u64::MAX,
            prepared: prepared.as_ref(),
        })
        .collect();
    queue.accept_group(&offers).unwrap();
}

/// A queue on disk (kept while the directory lives), the flow sending to `target_url`,
/// and orders.
fn stage(target_url: &str) -> (tempfile::TempDir, Queue, Flow, Orders) {
    let dir = tempfile::tempdir().unwrap();
    let queue = RedbQueue::open(&dir.path().join("queue.redb")).unwrap();
    (dir, queue, flow(target_url), Orders::new())
}

fn intake(c: &mut Criterion) {
    let mut g = c.benchmark_group("intake");
    g.throughput(Throughput::Elements(GROUP as u64));
    for (name, mapped) in [("to the inbox, 64 per commit", false), ("mapped, to the outbox, 64 per commit", true)] {
        // A queue of its own: behind records left in the inbox, mapped ones go there too.
        let (_dir, queue, flow, mut orders) = stage("http://127.0.0.1:9");
        g.bench_function(name, |b| {
            b.iter_batched(|| orders.group(&flow, mapped), |group| accept(&queue, &group), BatchSize::PerIteration)
        });
    }
    g.finish();
}

fn prepare(c: &mut Criterion) {
    let (_dir, queue, flow, mut orders) = stage("http://127.0.0.1:9");
    let mut g = c.benchmark_group("prepare");
    g.throughput(Throughput::Elements(1));
    let one = orders.envelope();
    g.bench_function("map one record", |b| b.iter(|| flow.prepare_at_intake(&one).unwrap()));
    g.throughput(Throughput::Elements(GROUP as u64));
    g.bench_function("inbox to outbox, 64 per commit, mapping included", |b| {
        b.iter_batched(
            || accept(&queue, &orders.group(&flow, false)),
            |()| {
                let batch = queue.inbox(FLOW, GROUP).unwrap();
                let prepared = batch.iter().map(|(seq, e)| (*seq, flow.prepare_at_intake(e).unwrap())).collect();
                queue.prepare_batch(FLOW, prepared).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn delivery(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target_url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route("/salesOrders", post(|| async { StatusCode::NO_CONTENT }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    });
    let (_dir, queue, flow, mut orders) = rt.block_on(async { stage(&target_url) });
    let mut g = c.benchmark_group("delivery");
    g.throughput(Throughput::Elements(GROUP as u64));
    g.bench_function("outbox read, send to a 204 target 16 at a time, acknowledge, 64 per commit", |b| {
        b.iter_batched(
            || accept(&queue, &orders.group(&flow, true)),
            |()| {
                let items = queue.outbox(FLOW, TARGET, GROUP).unwrap();
                let sink = &flow.targets[0].sink;
                rt.block_on(stream::iter(&items).for_each_concurrent(16, |(_, item)| async move {
                    let answer = sink.send(item).await;
                    assert!(matches!(sink.verdict(&answer), entrepot::protocol::Verdict::Delivered), "{answer:?}");
                }));
                let acks: Vec<(u64, Option<(&str, &str)>)> =
                    items.iter().map(|(seq, i)| (*seq, i.ordering_key.as_deref().zip(i.version.as_deref()))).collect();
                queue.delivered_batch(FLOW, TARGET, &acks).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // Each sample commits (fsyncs) at least once: fewer, shorter samples than the default.
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = intake, prepare, delivery
}
criterion_main!(benches);
