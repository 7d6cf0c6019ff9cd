//! One order is one trace from the storefront's webhook to the ERP: a runner process
//! exporting over OTLP/HTTP to a receiver in this test takes the webhook's `traceparent`
//! as the parent of its intake span; the prepare span and each delivery attempt (the
//! failed one and its retry) join that trace; each request to the ERP carries the
//! attempt's own context; and the spans still buffered are flushed when the runner stops.
//! A reconcile run is a trace too, and the order its repair sends again is delivered in
//! it, though by another process.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use entrepot::reconcile::ReconcileSummary;
use entrepot_e2e::*;
use entrepot_sim::{
    erp::{self, ErpConfig},
    storefront::{AdminApi, OrderGenerator},
};
use jiff::{Timestamp, ToSpan, tz::Offset};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, any_value},
};
use prost::Message as _;
use tokio::net::TcpListener;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";
const CORRELATION_ID: &str = "order-trace-4711";

/// One span as the receiver got it.
#[derive(Clone, Debug)]
struct Seen {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// The attributes with a string value.
    attributes: BTreeMap<String, String>,
}

impl Seen {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Whether `ancestor` is this span's parent, or its parent's, and so on.
    fn descends_from(&self, ancestor: &Seen, all: &[Seen]) -> bool {
        let mut parent = &self.parent_span_id;
        while let Some(span) = all.iter().find(|s| &s.span_id == parent && s.trace_id == self.trace_id) {
            if span.span_id == ancestor.span_id {
                return true;
            }
            parent = &span.parent_span_id;
        }
        false
    }
}

type Spans = Arc<Mutex<Vec<Seen>>>;

/// An OTLP/HTTP trace receiver (protobuf) on loopback: its base URL and what it got.
async fn otlp_receiver() -> (String, Spans) {
    let spans = Spans::default();
    let app = Router::new().route("/v1/traces", post(receive)).with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

async fn receive(State(spans): State<Spans>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else { return StatusCode::BAD_REQUEST };
    let mut seen = spans.lock().unwrap();
    for span in request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
        let attributes = span
            .attributes
            .iter()
            .filter_map(|a| match &a.value {
                Some(AnyValue { value: Some(any_value::Value::StringValue(v)) }) => Some((a.key.clone(), v.clone())),
                _ => None,
            })
            .collect();
        seen.push(Seen {
            name: span.name.clone(),
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: hex(&span.parent_span_id),
            attributes,
        });
    }
    StatusCode::OK
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn one_order_is_one_trace_from_the_webhook_to_the_erp_retries_included() {
    let dir = tempfile::tempdir().unwrap();
    let (otlp, spans) = otlp_receiver().await;
    let erp = ScriptedTarget::start().await;
    // The first attempt fails with a 503: the retry is a second attempt span.
    erp.fail_matching("shopify:", 503, 1);
    let manifests = dir.path().join("manifests");
    write_quickstart(&manifests, &erp.url);
    let args = vec![
        "run".into(),
        manifests.display().to_string(),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
    ];
    let env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), otlp.clone()),
        // Far longer than the test: what arrives before the runner stops came from the
        // batch filling up or the flush at shutdown.
        ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "600000".to_string()),
    ];
    let runner = RunnerProcess::spawn(args, env).await;

    let body = shopify_order(4711, "MUG-WHT", "2026-11-27T10:00:00-05:00");
    let sent = signed_request(&runner.webhook(FLOW), &body, "wh-trace-1", None)
        .header("traceparent", format!("00-{TRACE_ID}-{SENDER_SPAN}-01"))
        .header("x-correlation-id", CORRELATION_ID)
        .send()
        .await
        .expect("the runner answers");
    assert_eq!(sent.status(), 200);
    eventually(Duration::from_secs(60), "the failed attempt and its retry at the ERP", || async {
        erp.received().len() == 2 && status(&runner.admin_url).await.flows[0].delivered == 1
    })
    .await;
    runner.stop().await;

    // Each request to the ERP carried the record's trace, with a parent span of its own.
    let sent_parents: Vec<String> = erp
        .received()
        .iter()
        .map(|r| r.headers.get("traceparent").expect("a traceparent header").to_str().unwrap().to_string())
        .map(|tp| {
            let parts: Vec<&str> = tp.split('-').collect();
            assert_eq!((parts.len(), parts[0], parts[1], parts[3]), (4, "00", TRACE_ID, "01"), "{tp}");
            parts[2].to_string()
        })
        .collect();
    assert_eq!(
        sent_parents.iter().collect::<BTreeSet<_>>().len(),
        2,
        "each attempt sends its own span: {sent_parents:?}"
    );

    eventually(Duration::from_secs(30), "the order's spans at the receiver", || async {
        let seen = spans.lock().unwrap();
        ["webhook", "prepare", "deliver"].iter().all(|n| seen.iter().any(|s| s.name == *n))
    })
    .await;
    let seen = spans.lock().unwrap().clone();
    let of = |name: &str| seen.iter().filter(|s| s.name == name).cloned().collect::<Vec<_>>();
    let (webhook, prepare, deliver) = (of("webhook"), of("prepare"), of("deliver"));
    assert_eq!(webhook.len(), 1, "{seen:#?}");
    assert_eq!(prepare.len(), 1, "{seen:#?}");
    assert_eq!(deliver.len(), 2, "one span per attempt: {seen:#?}");
    for span in webhook.iter().chain(&prepare).chain(&deliver) {
        assert_eq!(span.trace_id, TRACE_ID, "one trace, the sender's: {span:?}");
        assert_eq!(span.attribute("correlation_id"), Some(CORRELATION_ID), "{span:?}");
    }
    assert_eq!(webhook[0].parent_span_id, SENDER_SPAN, "the intake span is a child of the sender's");
    assert_eq!(prepare[0].parent_span_id, webhook[0].span_id, "prepared within the intake");
    for attempt in &deliver {
        assert_eq!(attempt.parent_span_id, webhook[0].span_id, "each attempt continues the record's trace");
    }
    let attempt_spans: BTreeSet<&String> = deliver.iter().map(|s| &s.span_id).collect();
    assert_eq!(attempt_spans, sent_parents.iter().collect(), "the ERP saw each attempt's own span as its parent");
}

#[tokio::test]
async fn the_order_a_repair_sends_again_is_delivered_in_the_reconcile_run_s_trace() {
    let (otlp, spans) = otlp_receiver().await;
    let erp = erp::bind(ErpConfig { bearer_token: Some(ERP_TOKEN.into()), ..ErpConfig::default() }, "127.0.0.1:0")
        .await
        .unwrap();
    let shop =
        AdminApi::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), "demo-shopify-admin-token").await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let manifests = work.path().join("manifests");
    write_reconciliation_example(&manifests, &shop.base_url(), &erp.base_url());
    let exporting = [("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "600000")];
    let args = vec![
        "run".into(),
        manifests.display().to_string(),
        "--data-dir".into(),
        work.path().join("data").display().to_string(),
    ];
    let env = exporting.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let runner = RunnerProcess::spawn(args, env).await;
    // An order whose webhooks never came: the ERP lacks it.
    let mut orders = OrderGenerator::new(11, vec!["MUG-WHT".into()])
        .unwrap()
        .starting_at(Timestamp::now() - 1.hours(), Offset::constant(-5));
    let lost = orders.next_order();
    shop.put(lost.clone());

    let termination = work.path().join("termination-log");
    let run = run_cli_with(
        &[
            "reconcile",
            "--dir",
            manifests.to_str().unwrap(),
            "--schedule",
            "orders-hourly",
            "--action",
            "repair",
            "--runner",
            &runner.admin_url,
            "--termination-log",
            termination.to_str().unwrap(),
        ],
        &exporting,
    )
    .await;
    let summary: ReconcileSummary = serde_json::from_str(run.expect_ok("entrepot reconcile").trim()).unwrap();
    assert_eq!((summary.missing_in_target, summary.repaired), (1, 1), "{summary:?}");
    let external_id = format!("shopify:{}", lost.id);
    eventually(Duration::from_secs(60), "the repaired order in the ERP", || async {
        erp.order_by_external_id(&external_id).is_some()
    })
    .await;
    // The runner's spans are flushed as it stops; the reconcile run's were as it exited.
    runner.stop().await;

    eventually(Duration::from_secs(30), "the run's and the order's spans at the receiver", || async {
        let seen = spans.lock().unwrap();
        ["reconcile", "prepare", "deliver"].iter().all(|n| seen.iter().any(|s| s.name == *n))
    })
    .await;
    let seen = spans.lock().unwrap().clone();
    let reconcile: Vec<&Seen> = seen.iter().filter(|s| s.name == "reconcile").collect();
    assert_eq!(reconcile.len(), 1, "{seen:#?}");
    let run = reconcile[0];
    assert_eq!(run.parent_span_id, "", "a run starts a trace of its own: {run:?}");
    assert_eq!(run.attribute("schedule"), Some("orders-hourly"), "{run:?}");
    assert_eq!(run.attribute("flow"), Some(FLOW), "{run:?}");
    assert_eq!(run.attribute("action"), Some("Repair"), "{run:?}");
    let correlation = run.attribute("correlation_id").unwrap_or_default();
    assert_eq!((correlation.len(), correlation.matches('-').count()), (36, 4), "the run's id, a UUID: {run:?}");
    for name in ["prepare", "deliver"] {
        let of_order: Vec<&Seen> = seen.iter().filter(|s| s.name == name).collect();
        assert_eq!(of_order.len(), 1, "the one repaired order's {name}: {seen:#?}");
        let span = of_order[0];
        assert_eq!(span.trace_id, run.trace_id, "{name} is in the run's trace: {span:?}");
        assert!(span.descends_from(run, &seen), "{name} hangs under the reconcile span: {seen:#?}");
    }
}
