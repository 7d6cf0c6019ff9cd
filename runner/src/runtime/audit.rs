//! The audit trail's side of the admin API: who a protected request comes from and why
//! (a replay, discard or injection without a reason is refused with 400), and
//! `GET /v1/audit?flow=&action=&since=&limit=`: the entries, oldest first (the latest
//! `limit`, default 100), as JSON.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::json;

use super::{
    Runtime,
    admin_auth::{self, Authenticated},
};
use crate::queue::{AuditAction, AuditFilter, Caller, ReasonError, now_ms, parse_instant};

/// A listing's size when the request gives none, and the most it may ask for.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

/// Who asks (as the token guard authenticated them, and the name the client gave) and
/// why; a missing or empty `why` is an error naming the field.
pub(super) fn caller(
    authenticated: Option<Extension<Authenticated>>,
    headers: &HeaderMap,
    why: Option<&str>,
) -> Result<Caller, ReasonError> {
    // The guard always runs before these routes; without it the caller is unknown.
    let identity = authenticated.map_or_else(|| "unauthenticated".to_string(), |Extension(a)| a.0);
    Caller::new(identity, admin_auth::requested_by(headers), why)
}

/// The answer to a request without a reason.
pub(super) fn refuse_without_reason(e: &ReasonError) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": e.to_string() }))).into_response()
}

/// The query of `GET /v1/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    flow: Option<String>,
    action: Option<AuditAction>,
    /// RFC 3339, a date, or a duration ago (`7d`).
    since: Option<String>,
    limit: Option<usize>,
}

pub(super) fn routes() -> Router<Arc<Runtime>> {
    Router::new().route("/v1/audit", get(history))
}

async fn history(State(rt): State<Arc<Runtime>>, query: Result<Query<HistoryQuery>, QueryRejection>) -> Response {
    let bad = |message: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response();
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return bad(e.body_text()),
    };
    if let Some(flow) = &query.flow
        && rt.flow(flow).is_none()
    {
        let message = format!("no flow named {flow} in this runner");
        return (StatusCode::NOT_FOUND, Json(json!({ "error": message }))).into_response();
    }
    let since_ms = match query.since.as_deref().map(|s| parse_instant("since", s, now_ms())).transpose() {
        Ok(since) => since,
        Err(e) => return bad(e.to_string()),
    };
    let filter = AuditFilter {
        flow: query.flow,
        action: query.action,
        since_ms,
        limit: Some(query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)),
    };
    match rt.queue.off_thread(move |q| q.audit_trail(&filter)).await {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": e.to_string() }))).into_response(),
    }
}
