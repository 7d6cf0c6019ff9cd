//! A small Walmart Marketplace flavour (external-API reference §6).
//!
//! - `POST /v3/token`: client credentials in `Authorization: Basic`, `grant_type=client_credentials`;
//!   tokens live 15 minutes.
//! - Every call must send `WM_SEC.ACCESS_TOKEN`, `WM_QOS.CORRELATION_ID` and `WM_SVC.NAME`
//!   (the token call the last two): `400` without them, `401` with a dead token.
//! - One token bucket per API (inventory, orders); every answer carries
//!   `X-Current-Token-Count` and `X-Next-Replenishment-Time` (epoch milliseconds); an empty
//!   bucket answers `429`.
//! - `PUT /v3/inventory?sku=` / `GET /v3/inventory?sku=`; `GET /v3/orders` paged by
//!   `nextCursor`, which, as Walmart's, is a query string (`?limit=..&hasMoreElements=true&cursor=..`)
//!   to append to `/v3/orders` for the next page.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::bucket::{Bucket, Limit};
use super::tokens::TokenStore;
use super::{ListingCause, ListingChange, Listings, MarketplaceError, query_pairs};
use crate::server::{Server, constant_time_eq};

/// The headers every Walmart call must carry.
pub const ACCESS_TOKEN_HEADER: &str = "wm_sec.access_token";
/// A UUID per request, echoed in logs on both sides.
pub const CORRELATION_ID_HEADER: &str = "wm_qos.correlation_id";
/// The calling service's name.
pub const SERVICE_NAME_HEADER: &str = "wm_svc.name";

/// How the simulated Walmart marketplace behaves.
#[derive(Clone)]
pub struct WalmartConfig {
    /// The client id the token endpoint accepts.
    pub client_id: String,
    /// The client secret. Never logged.
    pub client_secret: String,
    /// How long an access token lives (Walmart: 15 minutes).
    pub token_lifetime: Duration,
    /// The inventory API's bucket (reference, uncertain: about 200 per minute).
    pub inventory_limit: Limit,
    /// The orders API's bucket.
    pub orders_limit: Limit,
    /// Orders per page when the caller asks for none (Walmart: 100).
    pub page_size: usize,
    /// Currency of the orders.
    pub currency: String,
    /// Seed of the order generator.
    pub seed: u64,
}

impl Default for WalmartConfig {
    fn default() -> Self {
        Self {
            client_id: "walmart-client-id".to_owned(),
            client_secret: "walmart-client-secret".to_owned(),
            token_lifetime: Duration::from_secs(15 * 60),
            inventory_limit: Limit::new(200.0 / 60.0, 200),
            orders_limit: Limit::new(5000.0 / 60.0, 5000),
            page_size: 100,
            currency: "USD".to_owned(),
            seed: 0,
        }
    }
}

// Written by hand so the client secret never reaches a log line.
impl fmt::Debug for WalmartConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalmartConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token_lifetime", &self.token_lifetime)
            .field("inventory_limit", &self.inventory_limit)
            .field("orders_limit", &self.orders_limit)
            .field("page_size", &self.page_size)
            .field("currency", &self.currency)
            .field("seed", &self.seed)
            .finish()
    }
}

/// Counts since the marketplace started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalmartStats {
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Calls refused `400` for a missing `WM_*` header.
    pub missing_headers: u64,
    /// Calls refused `401`.
    pub unauthorized: u64,
    /// Inventory calls refused `429`.
    pub inventory_throttled: u64,
    /// Orders calls refused `429`.
    pub orders_throttled: u64,
    /// Inventory updates applied.
    pub inventory_updates: u64,
}

struct Store {
    tokens: TokenStore,
    inventory_bucket: Bucket,
    orders_bucket: Bucket,
    listings: Listings,
    orders: Vec<Value>,
    rng: Xoshiro256PlusPlus,
    stats: WalmartStats,
}

struct Shared {
    config: WalmartConfig,
    store: Mutex<Store>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running simulated Walmart marketplace. Dropping it stops the server.
pub struct WalmartHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Server,
}

impl fmt::Debug for WalmartHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalmartHandle")
            .field("addr", &self.addr)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Binds `addr` (e.g. `"127.0.0.1:0"`) and serves the Walmart API on it.
pub async fn bind(config: WalmartConfig, addr: &str) -> Result<WalmartHandle, MarketplaceError> {
    let listener =
        TcpListener::bind(addr).await.map_err(|source| MarketplaceError::Bind { addr: addr.to_owned(), source })?;
    let addr = listener.local_addr().map_err(MarketplaceError::LocalAddr)?;
    let store = Store {
        tokens: TokenStore::default(),
        inventory_bucket: Bucket::new(config.inventory_limit),
        orders_bucket: Bucket::new(config.orders_limit),
        listings: Listings::default(),
        orders: Vec::new(),
        rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
        stats: WalmartStats::default(),
    };
    let shared = Arc::new(Shared { config, store: Mutex::new(store) });
    let app = Router::new()
        .route("/v3/token", post(token))
        .route("/v3/inventory", get(get_inventory).put(put_inventory))
        .route("/v3/orders", get(get_orders))
        .with_state(Arc::clone(&shared));
    let server = Server::spawn(listener, app).map_err(MarketplaceError::LocalAddr)?;
    tracing::info!(%addr, "simulated Walmart marketplace listening");
    Ok(WalmartHandle { addr, shared, _server: server })
}

impl WalmartHandle {
    /// `http://IP:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shows `quantity` for `sku` from now on.
    pub fn set_inventory(&self, sku: &str, quantity: i64) {
        self.shared.store().listings.set(sku, quantity, ListingCause::Seeded);
    }

    /// The quantity shown for `sku`, if listed.
    pub fn inventory(&self, sku: &str) -> Option<i64> {
        self.shared.store().listings.quantity(sku)
    }

    /// Every quantity `sku` showed, oldest first.
    pub fn inventory_history(&self, sku: &str) -> Vec<ListingChange> {
        self.shared.store().listings.history(sku)
    }

    /// Counts so far.
    pub fn stats(&self) -> WalmartStats {
        self.shared.store().stats
    }

    /// Every order, oldest first, as `GET /v3/orders` shows them.
    pub fn orders(&self) -> Vec<Value> {
        self.shared.store().orders.clone()
    }

    /// Expires every access token: the next call with one is answered `401`.
    pub fn expire_access_tokens(&self) {
        self.shared.store().tokens.expire_all();
    }

    /// Places up to `count` seeded one-line orders of listed SKUs, never more than shown,
    /// each reducing the shown quantity. Returns the purchase order ids.
    pub fn place_orders(&self, count: usize) -> Vec<String> {
        let mut store = self.shared.store();
        let mut ids = Vec::new();
        for _ in 0..count {
            let Store { listings, rng, .. } = &mut *store;
            let Some((sku, quantity)) = listings.sell_one(rng) else {
                break;
            };
            let purchase_order_id = format!("{}", rng.random_range(1_000_000_000_000u64..10_000_000_000_000));
            let amount = f64::from(rng.random_range(5..=120) * 100 - 1) / 100.0 * f64::from(quantity);
            let now = Timestamp::now();
            let order = json!({
                "purchaseOrderId": purchase_order_id,
                "customerOrderId": format!("{}", rng.random_range(100_000_000_000u64..1_000_000_000_000)),
                "customerEmailId": format!("{:016x}@relay.walmart.com", rng.random::<u64>()),
                "orderDate": now.as_millisecond(),
                "orderLines": {"orderLine": [{
                    "lineNumber": "1",
                    "item": {"productName": format!("Item {sku}"), "sku": sku},
                    "charges": {"charge": [{"chargeType": "PRODUCT", "chargeName": "ItemPrice",
                        "chargeAmount": {"currency": self.shared.config.currency, "amount": amount}}]},
                    "orderLineQuantity": {"unitOfMeasurement": "EACH", "amount": quantity.to_string()},
                    "orderLineStatuses": {"orderLineStatus": [{"status": "Created"}]},
                }]},
            });
            store.orders.push(order);
            ids.push(purchase_order_id);
        }
        ids
    }
}

fn walmart_error(status: StatusCode, code: &str, info: impl Into<String>) -> Response {
    let body = json!({"errors": [{
        "code": code,
        "description": status.canonical_reason().unwrap_or_default(),
        "info": info.into(),
        "severity": "ERROR",
        "category": "DATA",
    }]});
    (status, Json(body)).into_response()
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok()).filter(|value| !value.trim().is_empty())
}

/// The `WM_*` headers a call lacks.
fn missing(headers: &HeaderMap, names: &[&str]) -> Vec<String> {
    names.iter().filter(|name| header_str(headers, name).is_none()).map(|name| name.to_uppercase()).collect()
}

/// `POST /v3/token`.
async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut store = shared.store();
    let lacking = missing(&headers, &[CORRELATION_ID_HEADER, SERVICE_NAME_HEADER]);
    if !lacking.is_empty() {
        store.stats.missing_headers += 1;
        return walmart_error(
            StatusCode::BAD_REQUEST,
            "MISSING_HEADER",
            format!("required headers missing: {}", lacking.join(", ")),
        );
    }
    let form = query_pairs(std::str::from_utf8(&body).ok());
    if !form.iter().any(|(key, value)| key == "grant_type" && value == "client_credentials") {
        return walmart_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "grant_type must be client_credentials");
    }
    let presented = header_str(&headers, header::AUTHORIZATION.as_str())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
        .unwrap_or_default();
    let expected = format!("{}:{}", shared.config.client_id, shared.config.client_secret);
    if !constant_time_eq(&presented, expected.as_bytes()) {
        store.stats.unauthorized += 1;
        return walmart_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED.GMP_GATEWAY_API", "invalid client credentials");
    }
    let access_token = store.tokens.issue("eyJraWQi", shared.config.token_lifetime);
    store.stats.tokens_issued += 1;
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": shared.config.token_lifetime.as_secs(),
    }))
    .into_response()
}

/// Which API bucket a call draws on.
#[derive(Debug, Clone, Copy)]
enum Api {
    Inventory,
    Orders,
}

/// Checks the `WM_*` headers and the token, takes a bucket token, and returns the
/// quota headers every answer carries.
fn admit(shared: &Shared, headers: &HeaderMap, api: Api) -> Result<HeaderMap, Box<Response>> {
    let mut store = shared.store();
    let lacking = missing(headers, &[ACCESS_TOKEN_HEADER, CORRELATION_ID_HEADER, SERVICE_NAME_HEADER]);
    if !lacking.is_empty() {
        store.stats.missing_headers += 1;
        return Err(Box::new(walmart_error(
            StatusCode::BAD_REQUEST,
            "MISSING_HEADER",
            format!("required headers missing: {}", lacking.join(", ")),
        )));
    }
    if store.tokens.check(header_str(headers, ACCESS_TOKEN_HEADER)).is_err() {
        store.stats.unauthorized += 1;
        return Err(Box::new(walmart_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED.GMP_GATEWAY_API",
            "Unauthorized token or token is expired",
        )));
    }
    let taken = match api {
        Api::Inventory => store.inventory_bucket.take(),
        Api::Orders => store.orders_bucket.take(),
    };
    let mut quota = HeaderMap::new();
    let next_ms = SystemTime::now()
        .checked_add(taken.next_token_in)
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_millis());
    quota.insert("x-current-token-count", HeaderValue::from(taken.remaining));
    if let Ok(value) = HeaderValue::from_str(&next_ms.to_string()) {
        quota.insert("x-next-replenishment-time", value);
    }
    if !taken.granted {
        match api {
            Api::Inventory => store.stats.inventory_throttled += 1,
            Api::Orders => store.stats.orders_throttled += 1,
        }
        let mut response =
            walmart_error(StatusCode::TOO_MANY_REQUESTS, "REQUEST_THRESHOLD_VIOLATED", "request threshold violated");
        response.headers_mut().extend(quota);
        return Err(Box::new(response));
    }
    Ok(quota)
}

fn with_quota(quota: HeaderMap, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.headers_mut().extend(quota);
    response
}

fn sku_param(raw: Option<&str>) -> Option<String> {
    query_pairs(raw).into_iter().find(|(key, _)| key == "sku").map(|(_, value)| value)
}

/// `GET /v3/inventory?sku=`.
async fn get_inventory(State(shared): State<Arc<Shared>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let quota = match admit(&shared, &headers, Api::Inventory) {
        Ok(quota) => quota,
        Err(refused) => return *refused,
    };
    let Some(sku) = sku_param(raw.as_deref()) else {
        return with_quota(
            quota,
            walmart_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "query parameter sku is required"),
        );
    };
    match shared.store().listings.quantity(&sku) {
        Some(amount) => with_quota(quota, Json(json!({"sku": sku, "quantity": {"unit": "EACH", "amount": amount}}))),
        None => {
            with_quota(quota, walmart_error(StatusCode::NOT_FOUND, "CONTENT_NOT_FOUND", format!("sku {sku} not found")))
        }
    }
}

/// `PUT /v3/inventory?sku=`.
async fn put_inventory(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let quota = match admit(&shared, &headers, Api::Inventory) {
        Ok(quota) => quota,
        Err(refused) => return *refused,
    };
    let invalid = |info: String| walmart_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", info);
    let Some(sku) = sku_param(raw.as_deref()) else {
        return with_quota(quota, invalid("query parameter sku is required".to_owned()));
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request["sku"].as_str() != Some(sku.as_str()) {
        return with_quota(
            quota,
            invalid(format!("body sku {} must equal the sku query parameter {sku:?}", request["sku"])),
        );
    }
    let amount = &request["quantity"]["amount"];
    let Some(amount) = amount.as_i64().filter(|amount| *amount >= 0) else {
        return with_quota(quota, invalid(format!("quantity.amount {amount} must be a whole number of at least 0")));
    };
    if request["quantity"]["unit"].as_str() != Some("EACH") {
        return with_quota(quota, invalid("quantity.unit must be EACH".to_owned()));
    }
    {
        let mut store = shared.store();
        store.listings.set(&sku, amount, ListingCause::Patch);
        store.stats.inventory_updates += 1;
    }
    tracing::info!(sku, amount, "walmart inventory updated");
    with_quota(quota, Json(json!({"sku": sku, "quantity": {"unit": "EACH", "amount": amount}})))
}

/// `GET /v3/orders?createdStartDate=&limit=` or `GET /v3/orders?limit=&hasMoreElements=true&cursor=`.
async fn get_orders(State(shared): State<Arc<Shared>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let quota = match admit(&shared, &headers, Api::Orders) {
        Ok(quota) => quota,
        Err(refused) => return *refused,
    };
    let invalid = |info: String| walmart_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", info);
    let pairs = query_pairs(raw.as_deref());
    let param = |name: &str| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let limit = match param("limit").map(str::parse::<usize>) {
        None => shared.config.page_size,
        Some(Ok(limit @ 1..=200)) => limit,
        Some(_) => return with_quota(quota, invalid("limit must be between 1 and 200".to_owned())),
    };
    // The cursor carries the filter and the position: (created-after millis, orders skipped).
    let (since_ms, skip) = match param("cursor") {
        Some(cursor) => match URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<(i64, usize)>(&bytes).ok())
        {
            Some(position) => position,
            None => {
                return with_quota(
                    quota,
                    invalid("cursor is not one this API issued: use nextCursor unchanged".to_owned()),
                );
            }
        },
        None => match param("createdStartDate").map(str::parse::<Timestamp>) {
            None => (i64::MIN, 0),
            Some(Ok(since)) => (since.as_millisecond(), 0),
            Some(Err(_)) => return with_quota(quota, invalid("createdStartDate must be an ISO 8601 time".to_owned())),
        },
    };
    let matching: Vec<Value> = shared
        .store()
        .orders
        .iter()
        .filter(|order| order["orderDate"].as_i64().is_some_and(|at| at >= since_ms))
        .cloned()
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching.into_iter().skip(skip).take(limit).collect();
    let mut meta = json!({"totalCount": total, "limit": limit});
    if skip + page.len() < total {
        let cursor = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&(since_ms, skip + page.len())).unwrap_or_default());
        meta["nextCursor"] = json!(format!("?limit={limit}&hasMoreElements=true&cursor={cursor}"));
    }
    with_quota(quota, Json(json!({"list": {"meta": meta, "elements": {"order": page}}})))
}
