//! `POST /v1/flows/{flow}/records`: raw source records handed to a flow as if its source
//! had sent them. `entrepot reconcile --action repair` sends the records a target lacks
//! through here, so they take the flow's whole path: mapping, ordering, the stale guard,
//! the idempotency key, retries and dead letters.
//!
//! Records are queued durably (one transaction for the request) before the answer, each
//! with the delivery id the caller gives: a record sent again under the same id within the
//! flow's dedup window is acknowledged as a duplicate and not queued twice. Like a
//! dead-letter replay, a record handed over here passes the flow's idempotency-key check
//! (its revision may have been delivered before, and since lost or changed at the
//! target), and goes to the target under `<idempotency key>:<delivery id>`, so the
//! target does not answer it from its own idempotency store either. Like the dead-letter
//! routes it needs the admin token (`admin_auth.rs`), and a reason (`why`): each request
//! is kept in the audit trail, as an injection, or as a repair when it names the
//! ReconcileSchedule it comes from. A well-formed W3C `traceparent` header (a repair
//! sends its `reconcile` span's) is kept with each record, so the records' `prepare` and
//! `deliver` spans join the caller's trace, as a webhook's do (`docs/tracing.md`).

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::info;

use super::{Runtime, admin_auth::Authenticated, audit};
use crate::{
    queue::{AuditAction, AuditEntry, Envelope, Intake, Replay, now_ms},
    telemetry::{TRACEPARENT, valid_traceparent},
};

/// The most records one request may carry.
pub const MAX_RECORDS: usize = 1000;

/// The body of `POST /v1/flows/{flow}/records`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnqueueRequest {
    /// The records, as the source system gives them.
    pub records: Vec<RawRecord>,
    /// The one target (index in the flow's `spec.targets`) the records go to; default
    /// every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    /// Why the records are handed over: required, kept in the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The ReconcileSchedule whose repair this is (`namespace/name` or a name): the
    /// audit trail then records a `repair` rather than an `inject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// One source record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRecord {
    /// Identifies this delivery of the record; a second delivery under the same id
    /// within the dedup window is dropped.
    pub delivery_id: String,
    /// The record, as the source's list or webhook carries it.
    pub payload: Value,
}

/// The answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnqueueReport {
    /// Records queued.
    pub queued: u64,
    /// Records dropped because their delivery id was already taken.
    pub duplicates: u64,
}

pub(super) fn routes() -> Router<Arc<Runtime>> {
    Router::new().route("/v1/flows/{flow}/records", post(enqueue))
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn enqueue(
    State(rt): State<Arc<Runtime>>,
    Path(flow_name): Path<String>,
    who: Option<Extension<Authenticated>>,
    headers: HeaderMap,
    body: Result<Json<EnqueueRequest>, JsonRejection>,
) -> Response {
    let Some(flow) = rt.flow(&flow_name).cloned() else {
        return refuse(StatusCode::NOT_FOUND, format!("no flow named {flow_name} in this runner"));
    };
    let request = match body {
        Ok(Json(r)) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let caller = match audit::caller(who, &headers, request.why.as_deref()) {
        Ok(c) => c,
        Err(e) => return audit::refuse_without_reason(&e),
    };
    if request.records.len() > MAX_RECORDS {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("at most {MAX_RECORDS} records per request"));
    }
    if let Some(i) = request.records.iter().position(|r| r.delivery_id.trim().is_empty()) {
        return refuse(StatusCode::BAD_REQUEST, format!("records[{i}].deliveryId is empty"));
    }
    if let Some(t) = request.target.filter(|t| *t as usize >= flow.targets.len()) {
        return refuse(StatusCode::BAD_REQUEST, format!("target {t}: the flow has {} target(s)", flow.targets.len()));
    }
    // Resolved now, against the flow as it runs: the queued records name the target.
    let target = request.target.map(|t| flow.targets[t as usize].name.clone());
    // Bounded (the identity, the client's name and nothing else): it is copied into
    // each of up to MAX_RECORDS envelopes.
    let requested_by = caller.requested_by();
    let received = now_ms();
    let action = if request.schedule.is_some() { AuditAction::Repair } else { AuditAction::Inject };
    let mut entry = AuditEntry::new(&flow_name, action, &caller, received);
    entry.target = target.clone();
    entry.schedule = request.schedule.as_deref().map(|s| s.chars().take(253).collect());
    let expires = received.saturating_add(flow.config.spec.delivery.dedup_window.get().as_millis() as i64);
    // The caller's trace, when it sent one: every record of the request joins it.
    let trace_parent = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(valid_traceparent);
    let items: Vec<Intake> = request
        .records
        .iter()
        .map(|r| {
            let id = uuid::Uuid::now_v7().to_string();
            Intake::Record(Envelope {
                correlation_id: id.clone(),
                trace_parent: trace_parent.clone(),
                id,
                delivery_id: Some(r.delivery_id.clone()),
                source_delivery_id: None,
                event_id: None,
                topic: None,
                received_at_ms: received,
                payload: serde_json::to_vec(&r.payload).expect("a JSON value always serializes"),
                // Past the idempotency-key dedup, like a replay: the point is to send a
                // revision again. A repeated repair is still dropped by its delivery id.
                replay: Some(Box::new(Replay {
                    dead_letter_id: None,
                    count: 1,
                    target: target.clone(),
                    requested_by: requested_by.clone(),
                    replayed_at_ms: received,
                    history: Vec::new(),
                })),
            })
        })
        .collect();
    let name = flow_name.clone();
    let outcome = rt.queue.off_thread(move |q| q.inject(&name, &items, expires, entry)).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    rt.metrics.count_received(&flow_name, outcome.queued);
    rt.metrics.count_duplicates(&flow_name, "delivery_id", outcome.duplicates);
    if outcome.queued > 0 {
        flow.wake.notify_one();
    }
    info!(flow = %flow_name, action = action.as_str(), requested_by = %requested_by, why = %caller.why, queued = outcome.queued,
          duplicates = outcome.duplicates, "records enqueued");
    Json(EnqueueReport { queued: outcome.queued, duplicates: outcome.duplicates }).into_response()
}
