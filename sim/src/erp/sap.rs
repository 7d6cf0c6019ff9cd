//! The SAP S/4HANA OData v2 flavour (external-API reference §9), served under `/sap` on
//! the same ledger as the NetSuite flavour:
//!
//! - CSRF: a `GET` with `X-CSRF-Token: Fetch` answers the token in `X-CSRF-Token` and a
//!   session cookie; every write must send both back, else `403` + `X-CSRF-Token:
//!   Required`. A token serves a number of writes (a knob) and then expires, as a session
//!   times out, so a client's refetch is exercised ([`super::ErpHandle::expire_csrf_tokens`]
//!   expires them all at once);
//! - entity set `salesOrders`, keyed by external id: `GET` pages `{"d": {"results": [...],
//!   "__next": ...}}` with an opaque `$skiptoken` (also `$top`/`$skip`), each entity with
//!   `__metadata.etag`; `POST` creates (`201`); `PUT`/`PATCH salesOrders('A-1')`
//!   update and need `If-Match` (`428` without, `412` when stale);
//! - repeatable requests (OASIS): a write with `Repeatability-Request-ID` and
//!   `Repeatability-First-Sent` is answered once; sent again, the original answer comes
//!   back with `Repeatability-Result: accepted` and nothing is written twice. Only
//!   successful answers are remembered, so a rejected record fixed and sent again under
//!   the same id is processed (the reference marks support as varying by service (U));
//! - errors in the OData v2 shape `{"error": {"code", "message": {"lang", "value"}}}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on};
use rand::RngExt;
use serde_json::{Value, json};

use super::ledger::{Precondition, Refused, Written};
use super::odata::{self, IfMatch, Key, Reply};
use super::{Outcome, Shared, lock, sales_order};

const ENTITY_SET: &str = "salesOrders";
const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");
const SESSION_COOKIE: &str = "SAP_SESSIONID_SIM";
const REQUEST_ID: HeaderName = HeaderName::from_static("repeatability-request-id");
const FIRST_SENT: HeaderName = HeaderName::from_static("repeatability-first-sent");
const RESULT: HeaderName = HeaderName::from_static("repeatability-result");

/// How the SAP flavour behaves.
#[derive(Debug, Clone)]
pub struct SapKnobs {
    /// Writes one CSRF token serves before it expires; `None`: it never does.
    pub csrf_token_uses: Option<u32>,
    /// Entities per page when the client sends no `$top`.
    pub page_size: usize,
}

impl Default for SapKnobs {
    fn default() -> Self {
        Self { csrf_token_uses: None, page_size: 100 }
    }
}

#[derive(Debug)]
struct Session {
    token: String,
    uses_left: Option<u32>,
}

/// CSRF sessions and the answers of repeatable requests.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_cookie: HashMap<String, Session>,
    repeatable: HashMap<String, Reply>,
}

impl Sessions {
    pub(crate) fn expire_all(&mut self) {
        for session in self.by_cookie.values_mut() {
            session.uses_left = Some(0);
        }
    }

    /// Spends one use of the session's token; false when it does not match or expired.
    fn spend(&mut self, cookie: Option<&str>, token: Option<&str>) -> bool {
        let (Some(cookie), Some(token)) = (cookie, token) else {
            return false;
        };
        let Some(session) = self.by_cookie.get_mut(cookie) else {
            return false;
        };
        if session.token != token || session.uses_left == Some(0) {
            return false;
        }
        if let Some(uses) = &mut session.uses_left {
            *uses -= 1;
        }
        true
    }
}

pub(super) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    let update = MethodFilter::PUT.or(MethodFilter::PATCH);
    Router::new()
        .route("/sap", get(service_document))
        .route("/sap/", get(service_document))
        .route("/sap/salesOrders", get(list).post(create_route))
        .route("/sap/{segment}", get(read_route).merge(on(update, update_route)))
        .route_layer(from_fn_with_state(shared, csrf))
}

/// `GET /sap/`: the service document, where clients usually fetch their CSRF token.
async fn service_document() -> Reply {
    Reply::new(StatusCode::OK, Outcome::Read, Some(json!({"d": {"EntitySets": [ENTITY_SET]}})))
}

fn error(status: StatusCode, outcome: Outcome, code: &str, message: impl Into<String>) -> Reply {
    let message: String = message.into();
    Reply::new(status, outcome, Some(json!({"error": {"code": code, "message": {"lang": "en", "value": message}}})))
}

/// Issues tokens on `Fetch`; refuses writes without a live token and its session cookie.
async fn csrf(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let wants_token =
        headers.get(&CSRF_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("fetch"));
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if reads {
        let mut response = next.run(request).await;
        if wants_token {
            let (cookie, token) = issue(&shared);
            if let (Ok(token), Ok(cookie)) =
                (token.parse(), format!("{SESSION_COOKIE}={cookie}; Path=/; HttpOnly").parse())
            {
                response.headers_mut().insert(CSRF_HEADER, token);
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
        }
        return response;
    }
    let cookie = session_cookie(headers);
    let token = headers.get(&CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !lock(&shared.sessions).spend(cookie.as_deref(), token) {
        return error(
            StatusCode::FORBIDDEN,
            Outcome::CsrfRequired,
            "/IWFND/CM_BEC/026",
            "CSRF token validation failed: fetch a token (GET with X-CSRF-Token: Fetch) and send it with the session cookie.",
        )
        .header(CSRF_HEADER, "Required")
        .into_response();
    }
    next.run(request).await
}

fn issue(shared: &Shared) -> (String, String) {
    let (cookie, token) = {
        let mut rng = lock(&shared.rng);
        (format!("{:032x}", rng.random::<u128>()), format!("{:032x}", rng.random::<u128>()))
    };
    let uses_left = shared.config.sap.csrf_token_uses;
    lock(&shared.sessions).by_cookie.insert(cookie.clone(), Session { token: token.clone(), uses_left });
    (cookie, token)
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SESSION_COOKIE).then(|| value.to_owned())
    })
}

fn entity(order: &sales_order::StoredOrder, origin: &str) -> Value {
    let mut value = serde_json::to_value(order).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "__metadata".into(),
            json!({
                "uri": format!("{origin}/sap/{ENTITY_SET}('{}')", order.external_id.replace('\'', "''")),
                "type": "SIM_SALES_ORDER_SRV.SalesOrder",
                "etag": odata::etag(order),
            }),
        );
    }
    value
}

fn found(order: &sales_order::StoredOrder, status: StatusCode, outcome: Outcome, origin: &str) -> Reply {
    Reply::new(status, outcome, Some(json!({"d": entity(order, origin)})))
        .header(header::ETAG, odata::etag(order))
        .about(&order.external_id)
}

fn not_found(what: &str) -> Reply {
    error(StatusCode::NOT_FOUND, Outcome::NotFound, "/IWBEP/CM_MGW_RT/020", format!("Resource {what} not found."))
}

/// `GET salesOrders?$top=&$skip=&$skiptoken=`.
async fn list(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Reply {
    let origin = odata::origin(&headers);
    let after = match query.get("$skiptoken").map(|t| odata::read_skip_token(t)) {
        None => 0,
        Some(Some(after)) => after,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                Outcome::Rejected,
                "/IWBEP/CM_MGW_RT/004",
                "Invalid $skiptoken: send __next back as it is.",
            );
        }
    };
    let number = |name: &str| query.get(name).and_then(|v| v.parse::<usize>().ok());
    let page_size = number("$top").unwrap_or(shared.config.sap.page_size).max(1);
    let orders: Vec<_> =
        shared.ledger().orders().into_iter().filter(|o| o.id > after).skip(number("$skip").unwrap_or(0)).collect();
    let page: Vec<Value> = orders.iter().take(page_size).map(|o| entity(o, &origin)).collect();
    let mut d = json!({"results": page});
    // With `$top` the client pages itself; server-driven paging only without it.
    if !query.contains_key("$top")
        && orders.len() > page_size
        && let Some(last) = orders.get(page_size - 1)
    {
        d["__next"] = Value::String(format!("{origin}/sap/{ENTITY_SET}?$skiptoken={}", odata::skip_token(last.id)));
    }
    Reply::new(StatusCode::OK, Outcome::Read, Some(json!({"d": d})))
}

async fn read_route(State(shared): State<Arc<Shared>>, Path(segment): Path<String>, headers: HeaderMap) -> Reply {
    let Some(key) = odata::parse_key(&segment, ENTITY_SET) else {
        return not_found(&segment);
    };
    let order = odata::find(&shared.ledger(), &key);
    match order {
        Some(order) => found(&order, StatusCode::OK, Outcome::Read, &odata::origin(&headers)),
        None => not_found(&segment),
    }
}

async fn create_route(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Reply {
    repeatable(&shared, &headers, || {
        let origin = odata::origin(&headers);
        let order = match sales_order::parse(&body, None, shared.config.known_skus.as_ref()) {
            Ok(order) => order,
            Err(details) => return rejected(&details),
        };
        let external_id = order.external_id.clone();
        let written = shared.ledger().create(order, None);
        match written {
            Ok(Written::Created(id) | Written::Updated(id) | Written::Replayed(id)) => {
                let stored = shared.ledger().get(id).cloned();
                match stored {
                    Some(stored) => found(&stored, StatusCode::CREATED, Outcome::Created, &origin).header(
                        header::LOCATION,
                        format!("{origin}/sap/{ENTITY_SET}('{}')", external_id.replace('\'', "''")),
                    ),
                    None => not_found(&external_id),
                }
            }
            Err(refused @ (Refused::DuplicateExternalId { .. } | Refused::KeyReused { .. })) => {
                error(StatusCode::BAD_REQUEST, Outcome::Rejected, "SALES_ORDER/001", refused.to_string())
                    .about(&external_id)
            }
        }
    })
}

fn rejected(details: &[super::ErrorDetail]) -> Reply {
    error(StatusCode::BAD_REQUEST, Outcome::Rejected, "SALES_ORDER/010", odata::describe(details))
}

/// `PUT` replaces, `PATCH` merges; both under `If-Match`.
async fn update_route(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    repeatable(&shared, &headers, || {
        let Some(Key::External(external_id)) = odata::parse_key(&segment, ENTITY_SET) else {
            return not_found(&segment);
        };
        let Some(current) = shared.ledger().by_external_id(&external_id).cloned() else {
            return not_found(&segment);
        };
        let expected = match odata::if_match(&headers) {
            IfMatch::Absent => {
                return error(
                    StatusCode::PRECONDITION_REQUIRED,
                    Outcome::Rejected,
                    "/IWBEP/CM_MGW_RT/021",
                    "If-Match is required: send the entity's ETag.",
                )
                .about(&external_id);
            }
            IfMatch::Any => None,
            IfMatch::Revision { id, revision } if id == current.id => Some(revision),
            IfMatch::Revision { .. } | IfMatch::Unknown => Some(0),
        };
        if expected.is_some() && shared.edited_elsewhere() {
            shared.ledger().edit_elsewhere(&external_id);
        }
        let given: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let record = if method == Method::PUT { Some(given) } else { odata::merge(&current.body, &given) };
        let record = serde_json::to_vec(&record.unwrap_or(Value::Null)).unwrap_or_default();
        let order = match sales_order::parse(&record, Some(&external_id), shared.config.known_skus.as_ref()) {
            Ok(order) => order,
            Err(details) => return rejected(&details).about(&external_id),
        };
        let updated = shared.ledger().update_if(order, expected);
        match updated {
            Ok(_) => Reply::new(StatusCode::NO_CONTENT, Outcome::Updated, None)
                .header(header::ETAG, shared.ledger().by_external_id(&external_id).map(odata::etag).unwrap_or_default())
                .about(&external_id),
            Err(Precondition::Missing) => not_found(&segment),
            Err(Precondition::Stale { .. }) => error(
                StatusCode::PRECONDITION_FAILED,
                Outcome::Conflict,
                "/IWBEP/CM_MGW_RT/022",
                "The entity was changed by another user: read it again for its current ETag.",
            )
            .about(&external_id),
        }
    })
}

/// Answers a write once per `Repeatability-Request-ID`: a repeat gets the first answer.
fn repeatable(shared: &Shared, headers: &HeaderMap, write: impl FnOnce() -> Reply) -> Reply {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let Some(request_id) = text(&REQUEST_ID) else {
        return write();
    };
    let first_sent_valid = text(&FIRST_SENT).is_some_and(|sent| jiff::fmt::rfc2822::parse(sent).is_ok());
    if request_id.is_empty() || !first_sent_valid {
        return error(
            StatusCode::BAD_REQUEST,
            Outcome::Rejected,
            "/IWBEP/CM_MGW_RT/030",
            "Repeatability-Request-ID needs Repeatability-First-Sent, an IMF-fixdate of the first attempt.",
        );
    }
    if let Some(original) = lock(&shared.sessions).repeatable.get(request_id) {
        let mut replay = original.clone();
        replay.outcome = Outcome::Replayed;
        return replay;
    }
    let reply = write().header(RESULT, "accepted");
    if reply.status.is_success() {
        lock(&shared.sessions).repeatable.insert(request_id.to_owned(), reply.clone());
    }
    reply
}
