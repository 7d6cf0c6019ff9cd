//! The WMS's HTTP API.
//!
//! - `POST /movements`: apply one movement (`201` + the movement; `400` naming the field;
//!   `409 INSUFFICIENT_STOCK` with the numbers). An `Idempotency-Key` header makes a retry
//!   answer the first outcome again (`Idempotency-Replayed: true`).
//! - `GET /inventory?updatedSince=&cursor=&limit=`: the (SKU, location) records changed
//!   since a time, oldest change first, in pages; `nextCursor` (opaque) while more remain.
//! - `GET /inventory/{sku}`: one SKU's records, version and shippable quantity.
//! - `GET /availability?updatedSince=&cursor=&limit=`: per SKU, the shippable quantity
//!   over every location (what a channel may show), paged the same way.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Shared;
use super::stock::{MovementRequest, Refusal};
use crate::server::constant_time_eq;

/// Largest snapshot page.
const MAX_PAGE: usize = 1000;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/movements", post(create_movement))
        .route("/inventory", get(snapshot))
        .route("/inventory/{sku}", get(one_sku))
        .route("/availability", get(availability))
        .layer(from_fn_with_state(Arc::clone(&shared), authenticate))
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>, field: Option<&str>) -> Response {
    let message = message.into();
    (status, Json(json!({"error": {"code": code, "message": message, "field": field}}))).into_response()
}

async fn authenticate(State(shared): State<Arc<Shared>>, request: axum::extract::Request, next: Next) -> Response {
    if let Some(expected) = &shared.config.bearer_token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(presented.trim().as_bytes(), expected.as_bytes()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "send the configured token as Authorization: Bearer <token>",
                None,
            );
        }
    }
    next.run(request).await
}

/// `POST /movements`.
async fn create_movement(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let request: MovementRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(parse) => {
            return error(StatusCode::BAD_REQUEST, "INVALID", format!("the body is not a movement: {parse}"), None);
        }
    };
    let key = headers.get("idempotency-key").and_then(|value| value.to_str().ok());
    let (answer, replayed) = shared.apply(request, key);
    let mut response = match answer {
        Ok(movement) => {
            tracing::info!(sequence = movement.sequence, sku = movement.request.sku, kind = ?movement.request.kind, replayed, "wms movement");
            (StatusCode::CREATED, Json(movement)).into_response()
        }
        Err(refusal @ Refusal::Invalid { field, .. }) => {
            error(StatusCode::BAD_REQUEST, "INVALID", refusal.to_string(), Some(field))
        }
        Err(refusal @ Refusal::Insufficient { .. }) => {
            error(StatusCode::CONFLICT, "INSUFFICIENT_STOCK", refusal.to_string(), Some("quantity"))
        }
    };
    if replayed {
        response.headers_mut().insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// What a snapshot cursor carries; opaque to callers.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    /// The (movement sequence, location or SKU) of the last record returned: records of
    /// one movement (a transfer's two) may be split across pages without one being skipped.
    after: (u64, String),
    since: Option<Timestamp>,
    limit: usize,
}

/// `GET /inventory?updatedSince=&cursor=&limit=`.
async fn snapshot(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    paged(&shared, raw.as_deref(), |stock, after, since| {
        stock
            .changed_since(after, since)
            .into_iter()
            .map(|level| (level.sequence, level.location.clone(), json!(level)))
            .collect()
    })
}

/// `GET /availability?updatedSince=&cursor=&limit=`.
async fn availability(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    paged(&shared, raw.as_deref(), |stock, after, since| {
        stock
            .availability_since(after, since)
            .into_iter()
            .map(|row| (row.sequence, row.sku.clone(), json!(row)))
            .collect()
    })
}

/// Rows as (movement sequence, tie-break key, JSON), oldest change first.
type Rows = Vec<(u64, String, serde_json::Value)>;

/// A page of `rows` after the cursor (or from `updatedSince`), with `nextCursor` while
/// more remain.
fn paged(
    shared: &Shared,
    raw: Option<&str>,
    rows: impl Fn(&super::stock::Stock, (u64, &str), Option<Timestamp>) -> Rows,
) -> Response {
    let pairs = crate::marketplace::query_pairs(raw);
    let param = |name: &str| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let cursor = match param("cursor") {
        Some(token) => match URL_SAFE_NO_PAD
            .decode(token.trim())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Cursor>(&bytes).ok())
        {
            Some(cursor) => cursor,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID",
                    "cursor is not one this API issued: pass nextCursor unchanged",
                    Some("cursor"),
                );
            }
        },
        None => {
            let since = match param("updatedSince").map(str::parse::<Timestamp>) {
                None => None,
                Some(Ok(since)) => Some(since),
                Some(Err(_)) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID",
                        "updatedSince must be an RFC 3339 time, e.g. 2026-11-28T10:00:00Z",
                        Some("updatedSince"),
                    );
                }
            };
            let limit = match param("limit").map(str::parse::<usize>) {
                None => shared.config.page_size,
                Some(Ok(limit @ 1..=MAX_PAGE)) => limit,
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID",
                        format!("limit must be between 1 and {MAX_PAGE}"),
                        Some("limit"),
                    );
                }
            };
            Cursor { after: (0, String::new()), since, limit }
        }
    };
    let mut items = rows(&shared.ledger().stock, (cursor.after.0, &cursor.after.1), cursor.since);
    let more = items.len() > cursor.limit;
    items.truncate(cursor.limit);
    let last = items.last().map(|(sequence, key, _)| (*sequence, key.clone()));
    let mut body = json!({"items": items.into_iter().map(|(_, _, row)| row).collect::<Vec<_>>()});
    if more && let Some(after) = last {
        let next = Cursor { after, since: cursor.since, limit: cursor.limit };
        body["nextCursor"] = json!(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&next).unwrap_or_default()));
    }
    Json(body).into_response()
}

/// `GET /inventory/{sku}`.
async fn one_sku(State(shared): State<Arc<Shared>>, Path(sku): Path<String>) -> Response {
    let ledger = shared.ledger();
    let levels: Vec<_> = ledger.stock.levels().filter(|level| level.sku == sku).cloned().collect();
    if levels.is_empty() {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", format!("no stock record for SKU {sku}"), Some("sku"));
    }
    let version = levels.iter().map(|level| level.version).max().unwrap_or(0);
    Json(json!({"sku": sku, "shippable": ledger.stock.shippable(&sku), "version": version, "levels": levels}))
        .into_response()
}
