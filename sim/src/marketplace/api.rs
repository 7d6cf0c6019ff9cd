//! The HTTP routes of the simulated SP-API: LWA tokens, the gate every operation passes
//! (access token, then the operation's token bucket), Orders v0 and Listings Items.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::sp_error::{RATE_LIMIT_HEADER, SpError, patched_quantity};
use super::tokens::TokenRefusal;
use super::{AmazonOrder, ListingCause, Operation, Shared, feeds};
use crate::server::constant_time_eq;

/// The header carrying the LWA access token.
pub(super) const ACCESS_TOKEN_HEADER: &str = "x-amz-access-token";

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/auth/o2/token", post(token))
        .route("/orders/v0/orders", get(get_orders))
        .route("/orders/v0/orders/{order_id}", get(get_order))
        .route("/orders/v0/orders/{order_id}/orderItems", get(get_order_items))
        .route("/listings/2021-08-01/items/{seller_id}/{sku}", get(get_listings_item).patch(patch_listings_item))
        .merge(feeds::routes())
        .fallback(|| async { SpError::new(StatusCode::NOT_FOUND, "NotFound", "Resource not found.", None) })
        .with_state(shared)
}

impl Shared {
    /// Checks the access token, then takes a token from `operation`'s bucket.
    pub(super) fn admit(&self, operation: Operation, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let refuse =
            |status, code, message: &str| Box::new(self.fail(SpError::new(status, code, message, Some(operation))));
        let token = headers.get(ACCESS_TOKEN_HEADER).and_then(|value| value.to_str().ok());
        let mut market = self.market();
        if let Err(refusal) = market.tokens.check(token) {
            market.stats.unauthorized += 1;
            let message = match refusal {
                TokenRefusal::Unknown => "Access to requested resource is denied.",
                TokenRefusal::Expired => "The access token you provided has expired.",
            };
            tracing::info!(operation = operation.name(), "marketplace call refused: access token");
            drop(market);
            return Err(refuse(StatusCode::FORBIDDEN, "Unauthorized", message));
        }
        let taken = market.buckets.get_mut(&operation).map(super::bucket::Bucket::take);
        if taken.is_some_and(|taken| !taken.granted) {
            *market.stats.throttled.entry(operation.name()).or_default() += 1;
            tracing::info!(operation = operation.name(), "marketplace call throttled");
            drop(market);
            return Err(refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "QuotaExceeded",
                "You exceeded your quota for the requested resource.",
            ));
        }
        Ok(())
    }

    /// An error answer carrying the operation's configured rate.
    pub(super) fn fail(&self, mut error: SpError) -> Response {
        error.rate = error.operation.map(|operation| self.config.limit(operation).rate);
        error.into_response()
    }

    /// A JSON answer carrying the operation's rate and a request id.
    pub(super) fn answer(&self, operation: Operation, status: StatusCode, body: &impl Serialize) -> Response {
        let mut response = (status, axum::Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&self.config.limit(operation).rate.to_string()) {
            response.headers_mut().insert(RATE_LIMIT_HEADER, value);
        }
        let request_id = format!("{:08x}-sim", self.next_request_id());
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-amzn-requestid", value);
        }
        response
    }
}

/// Query parameters in order, decoded.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

fn param<'q>(pairs: &'q [(String, String)], name: &str) -> Option<&'q str> {
    pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// `POST /auth/o2/token`: Login with Amazon's refresh-token grant.
async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let form = query_pairs(std::str::from_utf8(&body).ok());
    let oauth_error = |status: StatusCode, error: &str, description: &str| {
        (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
    };
    let config = &shared.config;
    let mut market = shared.market();
    if param(&form, "grant_type") != Some("refresh_token") {
        market.stats.token_refusals += 1;
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type must be refresh_token");
    }
    let client_ok =
        constant_time_eq(param(&form, "client_id").unwrap_or_default().as_bytes(), config.client_id.as_bytes())
            & constant_time_eq(
                param(&form, "client_secret").unwrap_or_default().as_bytes(),
                config.client_secret.as_bytes(),
            );
    if !client_ok {
        market.stats.token_refusals += 1;
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication failed");
    }
    if !constant_time_eq(param(&form, "refresh_token").unwrap_or_default().as_bytes(), config.refresh_token.as_bytes())
    {
        market.stats.token_refusals += 1;
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The request has an invalid grant parameter : refresh_token",
        );
    }
    let access_token = market.tokens.issue("Atza|", config.token_lifetime);
    market.stats.tokens_issued += 1;
    tracing::info!("marketplace issued an access token");
    axum::Json(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": config.token_lifetime.as_secs(),
        "refresh_token": config.refresh_token,
    }))
    .into_response()
}

/// What a `NextToken` carries: the filter and the last order returned. Opaque to callers
/// (base64url JSON); a caller must never build one.
#[derive(Debug, Serialize, Deserialize)]
struct PageToken {
    /// `true`: filter and order by `LastUpdateDate`; `false`: by `PurchaseDate`.
    updated: bool,
    after: Timestamp,
    last: Option<(Timestamp, String)>,
    size: usize,
}

impl PageToken {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn key(&self, order: &AmazonOrder) -> (Timestamp, String) {
        let at = if self.updated { order.last_update_date } else { order.purchase_date };
        (at, order.amazon_order_id.clone())
    }
}

fn parse_time(operation: Operation, name: &str, value: &str) -> Result<Timestamp, SpError> {
    value.parse().map_err(|_| {
        SpError::invalid(operation, format!("{name} {value:?} is not an ISO 8601 date-time, e.g. 2026-11-28T10:00:00Z"))
    })
}

fn page_request(shared: &Shared, pairs: &[(String, String)]) -> Result<PageToken, SpError> {
    let op = Operation::GetOrders;
    if let Some(token) = param(pairs, "NextToken") {
        return PageToken::decode(token).ok_or_else(|| {
            SpError::invalid(op, "Invalid NextToken: pass the NextToken of the previous page unchanged.")
        });
    }
    match param(pairs, "MarketplaceIds") {
        Some(ids) if ids.split(',').any(|id| id.trim() == shared.config.marketplace_id) => {}
        Some(ids) => {
            return Err(SpError::invalid(op, format!("MarketplaceIds {ids:?} names no marketplace of this seller")));
        }
        None => return Err(SpError::invalid(op, "MarketplaceIds is required.")),
    }
    let created = param(pairs, "CreatedAfter");
    let updated = param(pairs, "LastUpdatedAfter");
    let (updated, after) = match (created, updated) {
        (Some(value), None) => (false, parse_time(op, "CreatedAfter", value)?),
        (None, Some(value)) => (true, parse_time(op, "LastUpdatedAfter", value)?),
        _ => {
            return Err(SpError::invalid(op, "Exactly one of CreatedAfter and LastUpdatedAfter must be specified."));
        }
    };
    let size = match param(pairs, "MaxResultsPerPage") {
        None => shared.config.page_size,
        Some(value) => match value.parse::<usize>() {
            Ok(size @ 1..=100) => size,
            _ => return Err(SpError::invalid(op, format!("MaxResultsPerPage {value:?} must be between 1 and 100."))),
        },
    };
    Ok(PageToken { updated, after, last: None, size: size.max(1) })
}

/// `GET /orders/v0/orders`.
async fn get_orders(State(shared): State<Arc<Shared>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let op = Operation::GetOrders;
    if let Err(refused) = shared.admit(op, &headers) {
        return *refused;
    }
    let pairs = query_pairs(raw.as_deref());
    let mut page = match page_request(&shared, &pairs) {
        Ok(page) => page,
        Err(error) => return shared.fail(error),
    };
    let mut matching: Vec<AmazonOrder> = shared
        .market()
        .orders
        .iter()
        .filter(|order| page.key(order).0 > page.after)
        .filter(|order| page.last.as_ref().is_none_or(|last| page.key(order) > *last))
        .cloned()
        .collect();
    matching.sort_by_key(|order| page.key(order));
    let more = matching.len() > page.size;
    matching.truncate(page.size);
    let mut payload = json!({"Orders": matching});
    if more {
        page.last = matching.last().map(|order| page.key(order));
        payload["NextToken"] = Value::String(page.encode());
    }
    let before = if page.updated { "LastUpdatedBefore" } else { "CreatedBefore" };
    payload[before] = json!(Timestamp::now());
    shared.answer(op, StatusCode::OK, &json!({"payload": payload}))
}

fn find_order(shared: &Shared, operation: Operation, order_id: &str) -> Result<AmazonOrder, SpError> {
    shared
        .market()
        .orders
        .iter()
        .find(|order| order.amazon_order_id == order_id)
        .cloned()
        .ok_or_else(|| SpError::not_found(operation, format!("No order with AmazonOrderId {order_id}.")))
}

/// `GET /orders/v0/orders/{orderId}`.
async fn get_order(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(order_id): Path<String>) -> Response {
    let op = Operation::GetOrder;
    if let Err(refused) = shared.admit(op, &headers) {
        return *refused;
    }
    match find_order(&shared, op, &order_id) {
        Ok(order) => shared.answer(op, StatusCode::OK, &json!({"payload": order})),
        Err(error) => shared.fail(error),
    }
}

/// `GET /orders/v0/orders/{orderId}/orderItems`.
async fn get_order_items(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(order_id): Path<String>,
) -> Response {
    let op = Operation::GetOrderItems;
    if let Err(refused) = shared.admit(op, &headers) {
        return *refused;
    }
    match find_order(&shared, op, &order_id) {
        Ok(order) => shared.answer(
            op,
            StatusCode::OK,
            &json!({"payload": {"AmazonOrderId": order.amazon_order_id, "OrderItems": order.items}}),
        ),
        Err(error) => shared.fail(error),
    }
}

fn check_listing_path(shared: &Shared, op: Operation, seller_id: &str, raw: Option<&str>) -> Result<(), SpError> {
    if seller_id != shared.config.seller_id {
        return Err(SpError::invalid(op, format!("sellerId {seller_id:?} is not the authorised selling partner.")));
    }
    let pairs = query_pairs(raw);
    match param(&pairs, "marketplaceIds") {
        Some(ids) if ids.split(',').any(|id| id.trim() == shared.config.marketplace_id) => Ok(()),
        Some(ids) => Err(SpError::invalid(op, format!("marketplaceIds {ids:?} names no marketplace of this seller."))),
        None => Err(SpError::invalid(op, "marketplaceIds is required.")),
    }
}

/// `GET /listings/2021-08-01/items/{sellerId}/{sku}`.
async fn get_listings_item(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((seller_id, sku)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let op = Operation::GetListingsItem;
    if let Err(refused) = shared.admit(op, &headers) {
        return *refused;
    }
    if let Err(error) = check_listing_path(&shared, op, &seller_id, raw.as_deref()) {
        return shared.fail(error);
    }
    let Some(quantity) = shared.market().quantity(&sku) else {
        return shared.fail(SpError::not_found(op, format!("SKU {sku} is not listed.")));
    };
    shared.answer(
        op,
        StatusCode::OK,
        &json!({
            "sku": sku,
            "attributes": {"fulfillment_availability": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}]},
        }),
    )
}

/// `PATCH /listings/2021-08-01/items/{sellerId}/{sku}`.
async fn patch_listings_item(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((seller_id, sku)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let op = Operation::PatchListingsItem;
    if let Err(refused) = shared.admit(op, &headers) {
        return *refused;
    }
    if let Err(error) = check_listing_path(&shared, op, &seller_id, raw.as_deref()) {
        return shared.fail(error);
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return shared.fail(SpError::invalid(op, format!("The body is not JSON: {error}"))),
    };
    if request["productType"].as_str().is_none_or(str::is_empty) {
        return shared.fail(SpError::invalid(op, "productType is required."));
    }
    let quantity = match patched_quantity(&request["patches"], "") {
        Ok(quantity) => quantity,
        // The real API answers an unusable patch with status INVALID and issues; a 400
        // makes the refusal impossible to mistake for a delivery.
        Err(message) => return shared.fail(SpError::invalid(op, message)),
    };
    if let Some(quantity) = quantity {
        shared.market().set_quantity(&sku, quantity, ListingCause::Patch);
        tracing::info!(sku, quantity, "marketplace listing quantity patched");
    }
    let submission_id = format!("{:032x}", rand::random::<u128>());
    shared.answer(
        op,
        StatusCode::OK,
        &json!({"sku": sku, "status": "ACCEPTED", "submissionId": submission_id, "issues": []}),
    )
}
