//! The HTTP routes of the simulated ERP.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::admission::{ExternalId, admit};
use super::error_body::{ApiError, ErrorDetail, code};
use super::ledger::{Refused, Written};
use super::sales_order::{self, StoredOrder};
use super::{Outcome, Shared};
use super::{dynamics, netsuite_async, sap};

/// Marks an answer replayed from an earlier request with the same idempotency key.
pub(super) const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotency-replayed");

/// NetSuite's page size for record collections.
const DEFAULT_PAGE_SIZE: usize = 1000;

/// The prefix that makes a record path segment an external id (`eid:shopify-1042`).
const EXTERNAL_ID_PREFIX: &str = "eid:";

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/salesOrders", post(create).get(list))
        .route("/salesOrders/{id}", get(fetch).put(upsert))
        .route("/async/v1/job/{id}", get(netsuite_async::status))
        .route("/async/v1/job/{id}/task/{task}/result", get(netsuite_async::result))
        .merge(dynamics::router(Arc::clone(&shared)))
        .merge(sap::router(Arc::clone(&shared)))
        .fallback(unknown_path)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(Arc::clone(&shared), admit))
        .with_state(shared)
}

/// `POST /salesOrders`; with `Prefer: respond-async`, as an asynchronous job.
async fn create(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let key = idempotency_key(&shared, &headers)?;
    let write = |key: Option<&str>| {
        let order = sales_order::parse(&body, None, shared.config.known_skus.as_ref()).map_err(ApiError::business)?;
        let external_id = order.external_id.clone();
        let written = shared.ledger().create(order, key);
        answer_write(written, external_id)
    };
    if netsuite_async::wanted(&headers) {
        // The key names the job, not the write.
        return Ok(netsuite_async::submit(&shared, &headers, key, || write(None)));
    }
    write(key)
}

/// `PUT /salesOrders/eid:{externalId}`: NetSuite's upsert by external id.
async fn upsert(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(external_id) = id.strip_prefix(EXTERNAL_ID_PREFIX) else {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Outcome::Unsupported,
            vec![ErrorDetail::general(
                code::METHOD_NOT_ALLOWED,
                format!(
                    "PUT /salesOrders/{id} is not supported: PUT is an upsert by external id, \
                     use PUT /salesOrders/eid:{{externalId}}."
                ),
            )],
        ));
    };
    if external_id.is_empty() {
        return Err(ApiError::business(vec![ErrorDetail::general(
            code::INVALID_KEY_OR_REF,
            "The URL names an empty external id: use PUT /salesOrders/eid:{externalId}.",
        )]));
    }
    let key = idempotency_key(&shared, &headers)?;
    let write = |key: Option<&str>| {
        let order = sales_order::parse(&body, Some(external_id), shared.config.known_skus.as_ref())
            .map_err(ApiError::business)?;
        let written = shared.ledger().upsert(order, key);
        answer_write(written, external_id.to_owned())
    };
    if netsuite_async::wanted(&headers) {
        return Ok(netsuite_async::submit(&shared, &headers, key, || write(None)));
    }
    write(key)
}

/// Reads the idempotency key (the configured header, else NetSuite's
/// `X-NetSuite-Idempotency-Key`); a header that is present but unusable is a client bug.
fn idempotency_key<'h>(shared: &Shared, headers: &'h HeaderMap) -> Result<Option<&'h str>, ApiError> {
    let configured = &shared.config.idempotency_header;
    let netsuite = HeaderName::from_static(netsuite_async::KEY_HEADER);
    let (name, value) = match (headers.get(configured), headers.get(&netsuite)) {
        (Some(value), _) => (configured.clone(), value),
        (None, Some(value)) => (netsuite, value),
        (None, None) => return Ok(None),
    };
    match value.to_str() {
        Ok(key) if !key.trim().is_empty() => Ok(Some(key)),
        _ => Err(ApiError::business(vec![ErrorDetail::at(
            code::INVALID_FLD_VALUE,
            name.as_str(),
            format!("Invalid value for header {name}: expected a non-empty ASCII key."),
        )])),
    }
}

fn answer_write(written: Result<Written, Refused>, external_id: String) -> Result<Response, ApiError> {
    let (internal_id, outcome) = match written {
        Ok(Written::Created(id)) => (id, Outcome::Created),
        Ok(Written::Updated(id)) => (id, Outcome::Updated),
        Ok(Written::Replayed(id)) => (id, Outcome::Replayed),
        Err(refused) => {
            let (code, path) = match &refused {
                Refused::DuplicateExternalId { .. } => (code::DUPLICATE_EXTERNAL_ID, "externalId"),
                Refused::KeyReused { .. } => (code::IDEMPOTENCY_ERROR, "externalId"),
            };
            return Err(ApiError::business(vec![ErrorDetail::at(code, path, refused.to_string())]));
        }
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let location = format!("/salesOrders/{internal_id}");
    // An integer path is always a valid header value.
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if outcome == Outcome::Replayed {
        response.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response.extensions_mut().insert(outcome);
    response.extensions_mut().insert(ExternalId(external_id));
    Ok(response)
}

/// Paging parameters of `GET /salesOrders`, as NetSuite names them.
#[derive(Debug, Deserialize)]
struct Page {
    limit: Option<usize>,
    offset: Option<usize>,
}

/// A NetSuite-style collection page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Collection {
    links: Vec<Link>,
    count: usize,
    has_more: bool,
    items: Vec<StoredOrder>,
    offset: usize,
    total_results: usize,
}

/// A NetSuite collection link (`self`, `next`).
#[derive(Debug, Serialize)]
struct Link {
    rel: &'static str,
    href: String,
}

/// `GET /salesOrders?limit=&offset=`: records by internal id, with `links` to this page
/// and, while `hasMore`, the next.
async fn list(State(shared): State<Arc<Shared>>, Query(page): Query<Page>, headers: HeaderMap) -> Response {
    let orders = shared.ledger().orders();
    let total_results = orders.len();
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, DEFAULT_PAGE_SIZE);
    let items: Vec<StoredOrder> = orders.into_iter().skip(offset).take(limit).collect();
    let has_more = offset.saturating_add(items.len()) < total_results;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let href = |offset: usize| format!("http://{host}/salesOrders?limit={limit}&offset={offset}");
    let mut links = vec![Link { rel: "self", href: href(offset) }];
    if has_more {
        links.push(Link { rel: "next", href: href(offset + items.len()) });
    }
    let collection = Collection { links, count: items.len(), has_more, items, offset, total_results };
    let mut response = axum::Json(collection).into_response();
    response.extensions_mut().insert(Outcome::Read);
    response
}

/// `GET /salesOrders/{internalId}` or `GET /salesOrders/eid:{externalId}`.
async fn fetch(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let found = {
        let ledger = shared.ledger();
        match id.strip_prefix(EXTERNAL_ID_PREFIX) {
            Some(external_id) => ledger.orders().into_iter().find(|order| order.external_id == external_id),
            None => id.parse::<u64>().ok().and_then(|internal_id| ledger.get(internal_id).cloned()),
        }
    };
    let Some(order) = found else {
        return Err(ApiError::not_found(format!(
            "No sales order with id {id}: use an internal id from a Location header or eid:{{externalId}}."
        )));
    };
    let mut response = axum::Json(order).into_response();
    response.extensions_mut().insert(Outcome::Read);
    Ok(response)
}

async fn unknown_path() -> ApiError {
    ApiError::not_found("Unknown path: this simulator serves /salesOrders only.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Outcome::Unsupported,
        vec![ErrorDetail::general(
            code::METHOD_NOT_ALLOWED,
            "Method not allowed on this path: POST/GET /salesOrders, GET/PUT /salesOrders/{id}.",
        )],
    )
}
