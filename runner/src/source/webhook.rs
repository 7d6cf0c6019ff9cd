//! The webhook source: `POST /webhooks/<flow>`. A delivery is verified over its raw body,
//! durably queued, and only then acknowledged with 2xx; a bad or missing signature gets
//! 401 and nothing is queued; a store failure gets 503 so the sender retries.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Request, State},
    http::{HeaderMap, StatusCode, header::RETRY_AFTER},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::json;
use tokio::sync::Semaphore;
use tracing::{Instrument, Span, debug, field::Empty, info, info_span, warn};

use super::signature::{DEFAULT_TOLERANCE, signature_header, signs_body_only, verify_delivery};
use crate::{
    flow::{Flow, report_prepared},
    metrics::Metrics,
    queue::{Accepted, Envelope, Prepared, now_ms},
    telemetry::{TRACEPARENT, continue_trace, traceparent, valid_traceparent},
};
use entrepot_api::{mapping::check_depth, resource::SignatureScheme};

/// The largest body a webhook may have (axum's default body limit, which this source
/// had before it read the body itself).
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// What the webhook source needs from the runner that serves it (the runtime): its
/// flows, the metrics, and a durable queue write. A trait, so this source does not
/// depend on the runtime that depends on it.
pub trait WebhookHost: Send + Sync + 'static {
    /// The flow named `name`.
    fn flow(&self, name: &str) -> Option<&Arc<Flow>>;
    /// The metrics.
    fn metrics(&self) -> &Metrics;
    /// Durably queues `envelope` for `flow` (see `QueueBackend::accept_within`), with
    /// the record already mapped when `prepared` is given (see `Offer::prepared`); the
    /// error is the store's message.
    fn accept(
        &self,
        flow: &str,
        envelope: Envelope,
        prepared: Option<Prepared>,
        delivery_expires_ms: i64,
        max_pending: u64,
    ) -> impl Future<Output = Result<Accepted, String>> + Send;
}

/// What one webhook server takes at most: requests in flight, and time per request
/// (from its head to the answer, the body read included).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Requests handled at once; more get 503 at once rather than wait.
    pub in_flight: usize,
    /// How long a request may take once its head is read; longer gets 408.
    pub request_time: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self { in_flight: 512, request_time: Duration::from_secs(30) }
    }
}

/// `POST /webhooks/{flow}`, served for `host` within the default [`Bounds`].
pub fn router<H: WebhookHost>(host: Arc<H>) -> Router {
    router_within(host, Bounds::default())
}

/// `POST /webhooks/{flow}`, served for `host` within `bounds`.
pub fn router_within<H: WebhookHost>(host: Arc<H>, bounds: Bounds) -> Router {
    let slots = Arc::new(Semaphore::new(bounds.in_flight));
    Router::new()
        .route("/webhooks/{flow}", post(receive::<H>))
        .with_state(host)
        .layer(axum::middleware::from_fn(move |request, next| bounded(slots.clone(), bounds, request, next)))
}

/// Refuses a request beyond the in-flight limit, and stops one that takes too long
/// (a body sent a byte at a time). A stopped request may have been queued already: the
/// sender's retry is then a duplicate delivery, answered 2xx.
async fn bounded(slots: Arc<Semaphore>, bounds: Bounds, request: Request, next: Next) -> Response {
    let Ok(_slot) = slots.try_acquire_owned() else {
        let error = format!("more than {} webhook requests in flight; retry later", bounds.in_flight);
        return (StatusCode::SERVICE_UNAVAILABLE, [(RETRY_AFTER, "1")], Json(json!({"error": error}))).into_response();
    };
    match tokio::time::timeout(bounds.request_time, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let error =
                format!("the request took longer than {:?} (its body included); send it again", bounds.request_time);
            (StatusCode::REQUEST_TIMEOUT, Json(json!({"error": error}))).into_response()
        }
    }
}

/// Source headers for a signature scheme: delivery id, event id, topic. Senders with a
/// scheme of their own name the delivery id header in the Connector, and have no other.
fn id_headers(
    scheme: SignatureScheme,
    delivery_id_header: Option<&str>,
) -> (String, Option<&'static str>, Option<&'static str>) {
    match scheme {
        SignatureScheme::ShopifyHmacSha256 => {
            ("x-shopify-webhook-id".into(), Some("x-shopify-event-id"), Some("x-shopify-topic"))
        }
        SignatureScheme::StandardWebhooks => ("webhook-id".into(), Some("webhook-id"), Some("webhook-topic")),
        SignatureScheme::HmacSha256 | SignatureScheme::ApiKey => {
            (delivery_id_header.unwrap_or_default().to_ascii_lowercase(), None, None)
        }
    }
}

/// The dedup key of a body-only signature scheme: the SHA-256 of the signed body.
fn body_digest(body: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("body-sha256:{hex}")
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(String::from)
}

/// Handles one delivery, in a `webhook` span that carries the flow, the delivery id and
/// the correlation id into every log line written while it is handled.
pub async fn receive<H: WebhookHost>(
    State(rt): State<Arc<H>>,
    Path(flow_name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = info_span!("webhook", flow = %flow_name, delivery_id = Empty, correlation_id = Empty);
    // The sender's trace, when it sent one: the record's spans join it.
    let sent_trace = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(valid_traceparent);
    continue_trace(&span, sent_trace.as_deref());
    handle(rt, flow_name, headers, body, sent_trace).instrument(span).await
}

/// A refusal: status, metric label and the reason told to the sender.
fn refuse<H: WebhookHost>(rt: &H, flow: &str, status: StatusCode, label: &str, error: String) -> Response {
    rt.metrics().webhook_refused.with_label_values(&[flow, label]).inc();
    warn!(flow = %flow, reason = label, "webhook refused");
    (status, Json(json!({"error": error}))).into_response()
}

async fn handle<H: WebhookHost>(
    rt: Arc<H>,
    flow_name: String,
    headers: HeaderMap,
    body: Body,
    sent_trace: Option<String>,
) -> Response {
    // The flow and its signature header are checked before the body is read, so an
    // unknown flow or an unsigned request costs no 2 MiB read.
    let Some((flow, keys)) = rt.flow(&flow_name).and_then(|f| Some((f, f.webhook_keys.as_ref()?))) else {
        rt.metrics().webhook_refused.with_label_values(&["", "unknown_flow"]).inc();
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no flow with a webhook trigger has this name"})))
            .into_response();
    };
    let name = flow.name();
    let source = flow.config.connector(&flow.config.spec.source.connector_ref);
    let verification = source.webhook.as_ref();
    let custom_header = verification.and_then(|w| w.header.as_deref());
    let scheme = keys.scheme;
    if !headers.contains_key(signature_header(scheme, custom_header).as_str()) {
        return refuse(&*rt, name, StatusCode::UNAUTHORIZED, "signature_missing", "invalid signature".into());
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            let error = format!("the body is larger than {MAX_BODY} bytes, or was not received whole");
            return refuse(&*rt, name, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", error);
        }
    };
    let tolerance = source.webhook.as_ref().and_then(|w| w.tolerance).map_or(DEFAULT_TOLERANCE, |t| t.get());
    let now = jiff::Timestamp::now().as_second();
    let keys_now = keys.keys();
    let secrets: Vec<&[u8]> = keys_now.iter().map(Vec::as_slice).collect();
    if let Err(e) = verify_delivery(scheme, custom_header, &secrets, &body, &headers, tolerance, now) {
        return refuse(&*rt, name, StatusCode::UNAUTHORIZED, e.as_str(), "invalid signature".into());
    }
    // Before any recursive JSON reader (jaq's) sees it, here and at every later start.
    if let Err(e) = check_depth(&body) {
        return refuse(&*rt, name, StatusCode::BAD_REQUEST, "too_deep", e.to_string());
    }

    let (delivery_header, event_header, topic_header) =
        id_headers(scheme, verification.and_then(|w| w.delivery_id_header.as_deref()));
    // The Connector's type may read them from the payload (BigCommerce: `hash`, `scope`).
    let fields = crate::protocol::system(source.kind).webhook_fields(&body);
    let topic = fields.topic.or_else(|| topic_header.and_then(|h| header(&headers, h)));
    let topics = flow.config.spec.source.trigger.webhook.as_ref().map(|w| w.topics.as_slice()).unwrap_or_default();
    if !topics.is_empty() && !topic.as_ref().is_some_and(|t| topics.contains(t)) {
        rt.metrics().ignored.with_label_values(&[name]).inc();
        debug!(flow = %name, topic = topic.as_deref().unwrap_or(""), "topic not taken by this flow; ignored");
        return (StatusCode::OK, Json(json!({"status": "ignored"}))).into_response();
    }

    let sent_id = Some(delivery_header.as_str()).filter(|h| !h.is_empty()).and_then(|h| header(&headers, h));
    let (delivery_id, source_delivery_id) = match fields.delivery_id {
        Some(id) => (Some(id), None),
        // The sender's delivery id is not signed: a captured body re-sent under a fresh
        // id would be a second record. The body is signed, so it is the key; the sender's
        // id is kept beside it, to find the delivery in the sender's logs.
        None if signs_body_only(scheme) => (Some(body_digest(&body)), sent_id),
        None => (sent_id, None),
    };
    let id = uuid::Uuid::now_v7().to_string();
    let envelope = Envelope {
        correlation_id: header(&headers, "x-correlation-id").unwrap_or_else(|| id.clone()),
        // Kept with the record, so its prepare and delivery spans, later and maybe in
        // another process, join this trace.
        trace_parent: traceparent(&Span::current(), sent_trace.as_deref()),
        id,
        delivery_id,
        source_delivery_id,
        event_id: event_header.and_then(|h| header(&headers, h)),
        topic,
        received_at_ms: now_ms(),
        payload: body.to_vec(),
        replay: None,
    };
    let span = Span::current();
    span.record("correlation_id", envelope.correlation_id.as_str());
    // The sender's own id, for tracing it back, whatever the dedup key is.
    let sender_id = Some(delivery_header.as_str()).filter(|h| !h.is_empty()).and_then(|h| header(&headers, h));
    span.record("delivery_id", sender_id.as_deref().or(envelope.delivery_id.as_deref()).unwrap_or(""));
    let window = flow.config.spec.delivery.dedup_window.get().as_millis() as i64;
    let expires = envelope.received_at_ms.saturating_add(window);
    let max_pending = flow.config.spec.runner.queue.max_pending;
    // Mapped here, where the payload is at hand, so one commit takes it to the outbox.
    let prepared = flow.prepare_at_intake(&envelope);
    let reason = match &prepared {
        Some(Prepared::DeadLetter(dead)) => Some(dead.reason),
        _ => None,
    };
    let (id, correlation_id, delivery_id) =
        (envelope.id.clone(), envelope.correlation_id.clone(), envelope.delivery_id.clone().unwrap_or_default());
    // Committed together with the other webhooks arriving meanwhile (group commit).
    let accepted = rt.accept(name, envelope, prepared, expires, max_pending).await;
    match accepted {
        Ok(outcome @ (Accepted::Queued(_) | Accepted::Prepared { .. })) => {
            rt.metrics().count_received(name, 1);
            match outcome {
                Accepted::Prepared { outcome, .. } => {
                    report_prepared(rt.metrics(), name, &correlation_id, outcome, reason);
                    flow.targets.iter().for_each(|t| t.wake.notify_one());
                }
                _ => flow.wake.notify_one(),
            }
            info!(flow = %name, correlation_id = %correlation_id, delivery_id = %delivery_id, "webhook queued");
            (StatusCode::OK, Json(json!({"status": "queued", "id": id}))).into_response()
        }
        Ok(Accepted::DuplicateDelivery) => {
            rt.metrics().count_duplicates(name, "delivery_id", 1);
            info!(flow = %name, delivery_id = %delivery_id, "duplicate delivery acknowledged");
            (StatusCode::OK, Json(json!({"status": "duplicate"}))).into_response()
        }
        Ok(Accepted::Full) => {
            // Backpressure: refuse what cannot be kept rather than acknowledge and risk it;
            // the sender retries (Shopify: 8 times over 4 hours).
            rt.metrics().webhook_refused.with_label_values(&[name, "backpressure"]).inc();
            warn!(flow = %name, max_pending, "queue full; webhook refused with 503");
            (StatusCode::SERVICE_UNAVAILABLE, [(RETRY_AFTER, "30")], Json(json!({"error": "queue full, retry later"})))
                .into_response()
        }
        Err(e) => {
            rt.metrics().webhook_refused.with_label_values(&[name, "store"]).inc();
            warn!(flow = %name, error = %e, "cannot queue a webhook; the sender will retry");
            (StatusCode::SERVICE_UNAVAILABLE, [(RETRY_AFTER, "5")], Json(json!({"error": "queue unavailable"})))
                .into_response()
        }
    }
}
