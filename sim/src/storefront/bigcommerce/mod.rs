//! A BigCommerce-like store (external-API reference §2): the API a connector refetches thin
//! webhooks from and writes inventory to, with BigCommerce's store-wide window quota.
//!
//! - Base path `/stores/{store_hash}`; authentication with `X-Auth-Token`, else `401`.
//! - Window quota (150 requests per 30 s by default): every answer carries
//!   `X-Rate-Limit-Time-Window-Ms`, `-Time-Reset-Ms`, `-Requests-Quota` and `-Requests-Left`;
//!   over the quota, `429` with those headers and no `Retry-After`. A seeded knob answers a
//!   share of requests with a bare `429` (no headers: platform load).
//! - `GET /v2/orders/{id}` (`?include=consignments.line_items` embeds the lines), `404` for
//!   an unknown order.
//! - `GET /v3/catalog/variants?sku=...` and `PUT /v3/inventory/adjustments/absolute`
//!   (≤2,000 items, answered with a `transaction_id`); inventory keyed by
//!   (location_id, variant_id). The store records how many adjustments ran at once, since
//!   BigCommerce requires them to run strictly one after the other.

mod orders;
pub mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use webhook::{ThinDelivery, ThinSigner};

use super::Order;

/// How the store behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BigCommerceConfig {
    /// Requests per window, shared by every client of the store (Standard/Plus: 150).
    pub quota: u32,
    /// The quota window (30 s).
    pub window: Duration,
    /// Fraction of requests, 0 to 1, answered with a bare `429` (no rate-limit headers).
    pub bare_429_ratio: f64,
    /// Seed of the bare-`429` draws.
    pub seed: u64,
    /// How long an inventory adjustment takes to apply (lets overlapping adjustments show).
    pub adjustment_latency: Duration,
}

impl Default for BigCommerceConfig {
    fn default() -> Self {
        Self {
            quota: 150,
            window: Duration::from_secs(30),
            bare_429_ratio: 0.0,
            seed: 0,
            adjustment_latency: Duration::ZERO,
        }
    }
}

struct Shared {
    token: String,
    config: BigCommerceConfig,
    /// (window start, requests counted in it).
    window: Mutex<(Instant, u32)>,
    dice: Mutex<Xoshiro256PlusPlus>,
    orders: Mutex<BTreeMap<u64, Order>>,
    /// variant id → sku.
    variants: Mutex<BTreeMap<u64, String>>,
    /// (location_id, variant_id) → quantity.
    inventory: Mutex<BTreeMap<(u64, u64), i64>>,
    adjusting: AtomicUsize,
    most_adjusting: AtomicUsize,
    requests: AtomicUsize,
}

/// A running BigCommerce-like API. Dropping it stops the server.
pub struct BigCommerceApi {
    addr: SocketAddr,
    store_hash: String,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for BigCommerceApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigCommerceApi")
            .field("addr", &self.addr)
            .field("store_hash", &self.store_hash)
            .finish_non_exhaustive()
    }
}

/// The first variant id handed out.
const FIRST_VARIANT_ID: u64 = 77;

impl BigCommerceApi {
    /// Serves store `store_hash` on `listener`, accepting `access_token` only (never logged).
    pub async fn serve(
        listener: TcpListener,
        store_hash: &str,
        access_token: impl Into<String>,
        config: BigCommerceConfig,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            token: access_token.into(),
            config,
            window: Mutex::new((Instant::now(), 0)),
            dice: Mutex::new(Xoshiro256PlusPlus::seed_from_u64(config.seed ^ 0xb1c0_0429)),
            orders: Mutex::default(),
            variants: Mutex::default(),
            inventory: Mutex::default(),
            adjusting: AtomicUsize::new(0),
            most_adjusting: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/stores/{hash}/v2/orders/{id}", get(order))
            .route("/stores/{hash}/v3/catalog/variants", get(variants))
            .route("/stores/{hash}/v3/inventory/adjustments/absolute", put(adjust_absolute))
            .with_state(shared.clone());
        let stop = crate::storefront::spawn_server(listener, app);
        Ok(Self { addr, store_hash: store_hash.to_owned(), shared, _stop: stop })
    }

    /// `http://IP:PORT/stores/{store_hash}`, the Connector endpoint.
    pub fn base_url(&self) -> String {
        format!("http://{}/stores/{}", self.addr, self.store_hash)
    }

    /// Adds `order` (from the storefront's generator); its BigCommerce id is its
    /// `order_number`, which is returned.
    pub fn put_order(&self, order: Order) -> u64 {
        let id = order.order_number;
        lock(&self.shared.orders).insert(id, order);
        id
    }

    /// Stocks `quantity` of `sku` at `location`; returns the SKU's variant id.
    pub fn stock(&self, sku: &str, location: u64, quantity: i64) -> u64 {
        let variant = self.variant(sku).unwrap_or_else(|| {
            let mut variants = lock(&self.shared.variants);
            let id = FIRST_VARIANT_ID + variants.len() as u64;
            variants.insert(id, sku.to_owned());
            id
        });
        lock(&self.shared.inventory).insert((location, variant), quantity);
        variant
    }

    /// The variant id of `sku`, if the store sells it.
    pub fn variant(&self, sku: &str) -> Option<u64> {
        lock(&self.shared.variants).iter().find(|(_, s)| *s == sku).map(|(id, _)| *id)
    }

    /// The quantity of `sku` at `location`, for verification.
    pub fn available(&self, sku: &str, location: u64) -> Option<i64> {
        let variant = self.variant(sku)?;
        Some(lock(&self.shared.inventory).get(&(location, variant)).copied().unwrap_or(0))
    }

    /// The most inventory adjustments that were ever being applied at once (BigCommerce
    /// requires 1).
    pub fn most_concurrent_adjustments(&self) -> usize {
        self.shared.most_adjusting.load(Ordering::SeqCst)
    }

    /// Every request received, refused ones included.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn problem(status: StatusCode, title: &str) -> Response {
    (status, Json(json!({ "status": status.as_u16(), "title": title, "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes" }))).into_response()
}

impl Shared {
    /// Authenticates and counts a request against the window; the rate-limit headers to
    /// send, or the refusal.
    // The refusal is built once per refused request; boxing it buys nothing here.
    #[allow(clippy::result_large_err)]
    fn admit(&self, headers: &HeaderMap) -> Result<HeaderMap, Response> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if headers.get("x-auth-token").and_then(|v| v.to_str().ok()) != Some(self.token.as_str()) {
            return Err(problem(StatusCode::UNAUTHORIZED, "Unauthorized: the X-Auth-Token is missing or wrong"));
        }
        let ratio = self.config.bare_429_ratio;
        if ratio > 0.0 && lock(&self.dice).random_bool(ratio.min(1.0)) {
            return Err(StatusCode::TOO_MANY_REQUESTS.into_response());
        }
        let window = self.config.window;
        let mut state = lock(&self.window);
        let now = Instant::now();
        if now.duration_since(state.0) >= window {
            *state = (now, 0);
        }
        let admitted = state.1 < self.config.quota;
        if admitted {
            state.1 += 1;
        }
        let reset = window.saturating_sub(now.duration_since(state.0));
        let mut limits = HeaderMap::new();
        for (name, value) in [
            ("x-rate-limit-time-window-ms", window.as_millis() as u64),
            ("x-rate-limit-time-reset-ms", reset.as_millis() as u64),
            ("x-rate-limit-requests-quota", u64::from(self.config.quota)),
            ("x-rate-limit-requests-left", u64::from(self.config.quota - state.1)),
        ] {
            limits.insert(name, HeaderValue::from(value));
        }
        if admitted {
            Ok(limits)
        } else {
            // No Retry-After: the client waits X-Rate-Limit-Time-Reset-Ms.
            let mut refused = problem(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            refused.headers_mut().extend(limits);
            Err(refused)
        }
    }
}

fn with_limits(limits: HeaderMap, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.headers_mut().extend(limits);
    response
}

async fn order(
    State(shared): State<Arc<Shared>>,
    Path((_hash, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let limits = match shared.admit(&headers) {
        Ok(limits) => limits,
        Err(refused) => return refused,
    };
    let found = id.parse::<u64>().ok().and_then(|id| lock(&shared.orders).get(&id).cloned());
    let Some(order) = found else {
        return with_limits(limits, problem(StatusCode::NOT_FOUND, &format!("The order {id} was not found")));
    };
    let lines = query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "include" && v.split(',').any(|i| i == "consignments.line_items"))
    });
    let variants = lock(&shared.variants).clone();
    with_limits(limits, Json(orders::v2_order(&order, lines, &variants)))
}

async fn variants(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let limits = match shared.admit(&headers) {
        Ok(limits) => limits,
        Err(refused) => return refused,
    };
    let wanted: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "sku" || k == "sku:in")
        .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let inventory = lock(&shared.inventory).clone();
    let data: Vec<Value> = lock(&shared.variants)
        .iter()
        .filter(|(_, sku)| wanted.is_empty() || wanted.contains(sku))
        .map(|(id, sku)| {
            let level: i64 = inventory.iter().filter(|((_, v), _)| v == id).map(|(_, q)| q).sum();
            json!({ "id": id, "product_id": id + 1000, "sku": sku, "inventory_level": level })
        })
        .collect();
    let total = data.len();
    with_limits(
        limits,
        Json(
            json!({ "data": data, "meta": { "pagination": { "total": total, "count": total, "per_page": 50, "current_page": 1, "total_pages": 1 } } }),
        ),
    )
}

/// Largest batch of one adjustment.
const MAX_ADJUSTMENT_ITEMS: usize = 2000;

async fn adjust_absolute(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let limits = match shared.admit(&headers) {
        Ok(limits) => limits,
        Err(refused) => return refused,
    };
    let running = shared.adjusting.fetch_add(1, Ordering::SeqCst) + 1;
    shared.most_adjusting.fetch_max(running, Ordering::SeqCst);
    let answer = apply_adjustment(&shared, &body);
    if !shared.config.adjustment_latency.is_zero() {
        tokio::time::sleep(shared.config.adjustment_latency).await;
    }
    shared.adjusting.fetch_sub(1, Ordering::SeqCst);
    with_limits(limits, answer)
}

fn apply_adjustment(shared: &Shared, body: &[u8]) -> Response {
    let invalid = |errors: Value| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "status": 422, "title": "Input is invalid", "errors": errors })),
        )
            .into_response()
    };
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return invalid(json!({ "body": format!("invalid JSON: {e}") })),
    };
    let items = request.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    if items.is_empty() || items.len() > MAX_ADJUSTMENT_ITEMS {
        return invalid(json!({ "items": format!("between 1 and {MAX_ADJUSTMENT_ITEMS} items are required") }));
    }
    let variants = lock(&shared.variants).clone();
    let mut changes = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let variant =
            item.get("variant_id").and_then(Value::as_u64).filter(|v| variants.contains_key(v)).or_else(|| {
                let sku = item.get("sku").and_then(Value::as_str)?;
                variants.iter().find(|(_, s)| *s == sku).map(|(id, _)| *id)
            });
        let location = item.get("location_id").and_then(Value::as_u64);
        let quantity = item.get("quantity").and_then(Value::as_i64).filter(|q| *q >= 0);
        match (variant, location, quantity) {
            (Some(v), Some(l), Some(q)) => changes.push(((l, v), q)),
            (None, _, _) => return invalid(json!({ format!("items.{i}.variant_id"): "variant not found" })),
            (_, None, _) => return invalid(json!({ format!("items.{i}.location_id"): "location_id is required" })),
            (_, _, None) => {
                return invalid(json!({ format!("items.{i}.quantity"): "quantity must be a non-negative integer" }));
            }
        }
    }
    lock(&shared.inventory).extend(changes);
    Json(json!({ "transaction_id": uuid::Uuid::now_v7().to_string() })).into_response()
}

#[cfg(test)]
mod tests;
