//! The Dynamics 365 Business Central flavour (external-API reference §8), served under
//! `/d365` on the same ledger as the NetSuite flavour:
//!
//! - entity set `salesOrders`: `GET` answers `{"value": [...]}` with `@odata.etag` on every
//!   entity and, while more remain, an `@odata.nextLink` carrying an opaque `$skiptoken`
//!   (page size: a knob, or the client's `Prefer: odata.maxpagesize=N` when smaller);
//! - `POST salesOrders` creates (`201` + the entity + `Location`); `GET`/`PATCH
//!   salesOrders(42)` or `salesOrders(externalId='A-1')` reads and updates. `PATCH`
//!   requires `If-Match` (`428` without, `412 Request_EntityChanged` when the ETag is
//!   stale);
//! - a sliding-window request limit per user (Business Central: 6,000 per 5 minutes):
//!   over it, `429` + `Retry-After` (the seconds until the oldest request in the window
//!   leaves it);
//! - `POST $batch` in the JSON batch format, `{"requests": [...]}` of at most 100
//!   operations, answered `{"responses": [...]}` one per operation;
//! - errors in the OData shape `{"error": {"code", "message"}}`.
//!
//! The record's fields are the simulator's one sales-order shape (`externalId`,
//! `customer.email`, `items[]`, see [`super::sales_order`]); only the protocol is flavoured.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::ledger::{Precondition, Refused, Written};
use super::odata::{self, IfMatch, Key, Reply};
use super::{Outcome, Shared, lock, sales_order};

/// The entity set this flavour serves.
const ENTITY_SET: &str = "salesOrders";

/// How the Dynamics 365 flavour behaves.
#[derive(Debug, Clone)]
pub struct DynamicsKnobs {
    /// Requests one user may make within `window` (Business Central: 6,000).
    pub requests_per_window: u32,
    /// The sliding window (Business Central: 5 minutes).
    pub window: Duration,
    /// Entities per page (Business Central: 20,000).
    pub page_size: usize,
    /// Operations allowed in one `$batch` (Business Central: 100).
    pub max_batch_operations: usize,
}

impl Default for DynamicsKnobs {
    fn default() -> Self {
        Self {
            requests_per_window: 6_000,
            window: Duration::from_secs(300),
            page_size: 20_000,
            max_batch_operations: 100,
        }
    }
}

/// When each user's recent requests arrived.
#[derive(Debug, Default)]
pub(crate) struct Window {
    arrivals: HashMap<String, VecDeque<Instant>>,
}

impl Window {
    /// Admits a request of `user` now, or says how long until one would be admitted.
    fn admit(&mut self, user: &str, knobs: &DynamicsKnobs, now: Instant) -> Result<(), Duration> {
        let arrivals = self.arrivals.entry(user.to_owned()).or_default();
        while arrivals.front().is_some_and(|&first| now.duration_since(first) >= knobs.window) {
            arrivals.pop_front();
        }
        if arrivals.len() < knobs.requests_per_window as usize {
            arrivals.push_back(now);
            return Ok(());
        }
        let oldest = arrivals.front().copied().unwrap_or(now);
        Err(knobs.window.saturating_sub(now.duration_since(oldest)))
    }
}

pub(super) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/d365/salesOrders", get(list).post(create_route))
        .route("/d365/{segment}", get(read_route).patch(patch_route).post(batch_route))
        .route_layer(from_fn_with_state(shared, limit))
}

/// The sliding-window limit, per user (the `Authorization` header; anonymous callers
/// share one window).
async fn limit(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned();
    let admitted = lock(&shared.window).admit(&user, &shared.config.dynamics, Instant::now());
    match admitted {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            error(
                StatusCode::TOO_MANY_REQUESTS,
                Outcome::Throttled,
                "Application_TooManyRequests",
                format!(
                    "Too many requests: at most {} per {} s per user. Retry after {seconds} s.",
                    shared.config.dynamics.requests_per_window,
                    shared.config.dynamics.window.as_secs()
                ),
            )
            .header(header::RETRY_AFTER, seconds.to_string())
            .into_response()
        }
    }
}

fn error(status: StatusCode, outcome: Outcome, code: &str, message: impl Into<String>) -> Reply {
    let message: String = message.into();
    Reply::new(status, outcome, Some(json!({"error": {"code": code, "message": message}})))
}

fn entity(order: &sales_order::StoredOrder, origin: &str) -> Value {
    let mut value = serde_json::to_value(order).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert("@odata.etag".into(), Value::String(odata::etag(order)));
        object.insert("@odata.id".into(), Value::String(format!("{origin}/d365/{ENTITY_SET}({})", order.id)));
    }
    value
}

fn found(order: &sales_order::StoredOrder, status: StatusCode, outcome: Outcome, origin: &str) -> Reply {
    Reply::new(status, outcome, Some(entity(order, origin)))
        .header(header::ETAG, odata::etag(order))
        .about(&order.external_id)
}

/// `GET salesOrders`: one page, by internal id.
async fn list(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Reply {
    let origin = odata::origin(&headers);
    let after = match query.get("$skiptoken") {
        None => 0,
        Some(token) => match odata::read_skip_token(token) {
            Some(after) => after,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    Outcome::Rejected,
                    "BadRequest_InvalidToken",
                    "The $skiptoken is not one this service gave: send @odata.nextLink back as it is.",
                );
            }
        },
    };
    let page_size = preferred_page_size(&headers)
        .map_or(shared.config.dynamics.page_size, |p| p.min(shared.config.dynamics.page_size))
        .max(1);
    let orders: Vec<_> = shared.ledger().orders().into_iter().filter(|order| order.id > after).collect();
    let more = orders.len() > page_size;
    let page: Vec<Value> = orders.iter().take(page_size).map(|o| entity(o, &origin)).collect();
    let mut body = json!({"@odata.context": format!("{origin}/d365/$metadata#{ENTITY_SET}"), "value": page});
    if more && let Some(last) = orders.get(page_size - 1) {
        body["@odata.nextLink"] =
            Value::String(format!("{origin}/d365/{ENTITY_SET}?$skiptoken={}", odata::skip_token(last.id)));
    }
    Reply::new(StatusCode::OK, Outcome::Read, Some(body))
}

/// `Prefer: odata.maxpagesize=N`.
fn preferred_page_size(headers: &HeaderMap) -> Option<usize> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| preference.trim().strip_prefix("odata.maxpagesize=")?.parse().ok())
}

async fn create_route(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Reply {
    create(&shared, &body, &odata::origin(&headers))
}

fn create(shared: &Shared, body: &[u8], origin: &str) -> Reply {
    let order = match sales_order::parse(body, None, shared.config.known_skus.as_ref()) {
        Ok(order) => order,
        Err(details) => return rejected(&details),
    };
    let external_id = order.external_id.clone();
    let written = shared.ledger().create(order, None);
    match written {
        Ok(Written::Created(id) | Written::Updated(id) | Written::Replayed(id)) => {
            let stored = shared.ledger().get(id).cloned();
            match stored {
                Some(stored) => found(&stored, StatusCode::CREATED, Outcome::Created, origin)
                    .header(header::LOCATION, format!("{origin}/d365/{ENTITY_SET}({id})")),
                None => not_found(&external_id),
            }
        }
        Err(refused @ Refused::DuplicateExternalId { .. }) | Err(refused @ Refused::KeyReused { .. }) => {
            error(StatusCode::BAD_REQUEST, Outcome::Rejected, "Internal_EntityWithSameKeyExists", refused.to_string())
                .about(&external_id)
        }
    }
}

fn rejected(details: &[super::ErrorDetail]) -> Reply {
    error(StatusCode::BAD_REQUEST, Outcome::Rejected, "Application_FieldValidationException", odata::describe(details))
}

fn not_found(key: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        Outcome::NotFound,
        "Internal_RecordNotFound",
        format!("The sales order {key} does not exist."),
    )
}

fn key_of(segment: &str) -> Result<Key, Reply> {
    odata::parse_key(segment, ENTITY_SET).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            Outcome::NotFound,
            "BadRequest_NotFound",
            format!("No resource {segment}: use salesOrders(<id>) or salesOrders(externalId='<id>')."),
        )
    })
}

async fn read_route(State(shared): State<Arc<Shared>>, Path(segment): Path<String>, headers: HeaderMap) -> Reply {
    read(&shared, &segment, &odata::origin(&headers))
}

fn read(shared: &Shared, segment: &str, origin: &str) -> Reply {
    let key = match key_of(segment) {
        Ok(key) => key,
        Err(reply) => return reply,
    };
    let stored = odata::find(&shared.ledger(), &key);
    match stored {
        Some(order) => found(&order, StatusCode::OK, Outcome::Read, origin),
        None => not_found(segment),
    }
}

async fn patch_route(
    State(shared): State<Arc<Shared>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    patch(&shared, &segment, odata::if_match(&headers), &body, &odata::origin(&headers))
}

/// `PATCH salesOrders(...)`: merges the body into the stored record when `If-Match`
/// names its current version.
fn patch(shared: &Shared, segment: &str, if_match: IfMatch, body: &[u8], origin: &str) -> Reply {
    let key = match key_of(segment) {
        Ok(key) => key,
        Err(reply) => return reply,
    };
    let Some(current) = odata::find(&shared.ledger(), &key) else {
        return not_found(segment);
    };
    let expected = match if_match {
        IfMatch::Absent => {
            return error(
                StatusCode::PRECONDITION_REQUIRED,
                Outcome::Rejected,
                "Request_IfMatchRequired",
                "PATCH needs an If-Match header: send the entity's @odata.etag (or * to overwrite).",
            )
            .about(&current.external_id);
        }
        IfMatch::Any => None,
        IfMatch::Revision { id, revision } if id == current.id => Some(revision),
        // An ETag of another record, or none of ours, can never match.
        IfMatch::Revision { .. } | IfMatch::Unknown => Some(0),
    };
    if expected.is_some() && shared.edited_elsewhere() {
        shared.ledger().edit_elsewhere(&current.external_id);
    }
    let patch_value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, Outcome::Rejected, "BadRequest_InvalidRequestBody", e.to_string());
        }
    };
    let Some(merged) = odata::merge(&current.body, &patch_value) else {
        return error(
            StatusCode::BAD_REQUEST,
            Outcome::Rejected,
            "BadRequest_InvalidRequestBody",
            "The body must be a JSON object of the fields to change.",
        );
    };
    let merged = serde_json::to_vec(&merged).unwrap_or_default();
    let order = match sales_order::parse(&merged, Some(&current.external_id), shared.config.known_skus.as_ref()) {
        Ok(order) => order,
        Err(details) => return rejected(&details).about(&current.external_id),
    };
    let updated = shared.ledger().update_if(order, expected);
    match updated {
        Ok(id) => match shared.ledger().get(id).cloned() {
            Some(stored) => found(&stored, StatusCode::OK, Outcome::Updated, origin),
            None => not_found(segment),
        },
        Err(Precondition::Missing) => not_found(segment),
        Err(Precondition::Stale { .. }) => error(
            StatusCode::PRECONDITION_FAILED,
            Outcome::Conflict,
            "Request_EntityChanged",
            "Another user has already changed the record: read it again for its current @odata.etag.",
        )
        .about(&current.external_id),
    }
}

/// `POST $batch` (JSON batch format). Each operation is counted on its own.
async fn batch_route(
    State(shared): State<Arc<Shared>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if segment != "$batch" {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            Outcome::Unsupported,
            "BadRequest_MethodNotAllowed",
            format!("POST {segment} is not supported: POST salesOrders creates, POST $batch batches."),
        )
        .into_response();
    }
    let origin = odata::origin(&headers);
    let requests = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut batch)) => match batch.remove("requests") {
            Some(Value::Array(requests)) => requests,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let max = shared.config.dynamics.max_batch_operations;
    if requests.is_empty() || requests.len() > max {
        return error(
            StatusCode::BAD_REQUEST,
            Outcome::Rejected,
            "BadRequest_BatchSize",
            format!(
                "A $batch body is {{\"requests\": [...]}} with 1 to {max} operations; this one has {}.",
                requests.len()
            ),
        )
        .into_response();
    }
    let responses: Vec<Value> = requests
        .iter()
        .map(|operation| {
            let reply = operation_reply(&shared, operation, &origin);
            shared.counters.count(reply.outcome);
            let headers: serde_json::Map<String, Value> = reply
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), Value::String(value.clone())))
                .collect();
            json!({
                "id": operation.get("id").cloned().unwrap_or(Value::Null),
                "status": reply.status.as_u16(),
                "headers": headers,
                "body": reply.body,
            })
        })
        .collect();
    Reply::new(StatusCode::OK, Outcome::Read, Some(json!({"responses": responses}))).into_response()
}

/// One operation of a batch: `{id, method, url, headers, body}`; `url` is relative to
/// the service root (`salesOrders`, `salesOrders(7)`), a leading `/d365/` is accepted.
fn operation_reply(shared: &Shared, operation: &Value, origin: &str) -> Reply {
    let method = operation["method"].as_str().unwrap_or_default().to_ascii_uppercase();
    let url = operation["url"].as_str().unwrap_or_default();
    let segment = url.trim_start_matches('/').trim_start_matches("d365/");
    let body = serde_json::to_vec(&operation["body"]).unwrap_or_default();
    let header = |name: &str| {
        operation["headers"]
            .as_object()
            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_str())
    };
    let if_match = match header("if-match") {
        None => IfMatch::Absent,
        Some(value) => {
            let mut headers = HeaderMap::new();
            if let Ok(value) = value.parse() {
                headers.insert(header::IF_MATCH, value);
            }
            odata::if_match(&headers)
        }
    };
    match (Method::from_bytes(method.as_bytes()), segment) {
        (Ok(Method::POST), ENTITY_SET) => create(shared, &body, origin),
        (Ok(Method::GET), segment) if segment != ENTITY_SET => read(shared, segment, origin),
        (Ok(Method::PATCH), segment) => patch(shared, segment, if_match, &body, origin),
        _ => error(
            StatusCode::BAD_REQUEST,
            Outcome::Unsupported,
            "BadRequest_MethodNotAllowed",
            format!("{method} {url} is not supported in a batch: POST salesOrders, GET or PATCH salesOrders(<key>)."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides() {
        let knobs = DynamicsKnobs { requests_per_window: 2, window: Duration::from_secs(10), ..Default::default() };
        let mut window = Window::default();
        let start = Instant::now();
        assert_eq!(window.admit("u", &knobs, start), Ok(()));
        assert_eq!(window.admit("u", &knobs, start + Duration::from_secs(4)), Ok(()));
        assert_eq!(window.admit("u", &knobs, start + Duration::from_secs(6)), Err(Duration::from_secs(4)));
        assert_eq!(window.admit("other", &knobs, start + Duration::from_secs(6)), Ok(()));
        assert_eq!(window.admit("u", &knobs, start + Duration::from_secs(10)), Ok(()));
    }
}
