//! The storefront's REST Admin API, as far as reconciliation needs it:
//! `GET /admin/api/{version}/orders.json` (external-API reference §1 Shopify).
//!
//! - Authentication with `X-Shopify-Access-Token`; anything else is `401`.
//! - Filters `status` (`open` by default, `closed`, `cancelled`, `any`), `ids`,
//!   `since_id`, `created_at_min`/`_max` and `updated_at_min`/`_max` (RFC 3339, any offset).
//! - Cursor pagination: `limit` (default 50, at most 250) and an opaque `page_info`
//!   carried in the `Link` header (`rel="next"`, `rel="previous"`). A request with
//!   `page_info` may carry only `limit` besides it, or it is refused with `400`, as
//!   Shopify does; the filters travel inside the cursor.
//! - Orders are listed by id, ascending; the body is `{"orders": [...]}`.
//! - The REST leaky bucket (40 requests leaking 2/s by default): every answer carries
//!   `X-Shopify-Shop-Api-Call-Limit: n/40`; a request over the limit gets `429` with
//!   `Retry-After: 2.0` and does nothing.
//! - The GraphQL Admin API (`POST /admin/api/{version}/graphql.json`, see [`super::graphql`])
//!   with its own cost bucket, over the inventory levels and refunds the store holds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::Order;
use super::admin_store::{Refund, Shared, error, unauthorized};
use super::bucket::{BucketConfig, LeakyBucket};
use super::graphql;
use super::inventory::InventoryLevel;

/// Shopify's default and largest page sizes.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 250;

/// How the Admin API behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdminApiConfig {
    /// The REST request bucket (default: standard plan, 40 leaking 2/s).
    pub rest_bucket: BucketConfig,
    /// The GraphQL cost bucket (default: standard plan, 1,000 points restored 100/s).
    pub graphql_bucket: BucketConfig,
    /// Whether `inventoryAdjustQuantities` and `refundCreate` refuse a call without
    /// `@idempotent` (API version 2026-04 and later: true).
    pub require_idempotent: bool,
}

impl Default for AdminApiConfig {
    fn default() -> Self {
        Self {
            rest_bucket: BucketConfig::SHOPIFY_REST,
            graphql_bucket: BucketConfig::SHOPIFY_GRAPHQL,
            require_idempotent: true,
        }
    }
}

/// A running Admin API. Dropping it stops the server.
pub struct AdminApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl AdminApi {
    /// Serves the API on `listener`, accepting `access_token` only (never logged), with
    /// Shopify's standard-plan limits.
    pub async fn serve(listener: TcpListener, access_token: impl Into<String>) -> std::io::Result<Self> {
        Self::serve_with(listener, access_token, AdminApiConfig::default()).await
    }

    /// Serves the API on `listener` as `config` says.
    pub async fn serve_with(
        listener: TcpListener,
        access_token: impl Into<String>,
        config: AdminApiConfig,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            token: access_token.into(),
            orders: Mutex::default(),
            rest_bucket: LeakyBucket::new(config.rest_bucket),
            graphql_bucket: LeakyBucket::new(config.graphql_bucket),
            require_idempotent: config.require_idempotent,
            inventory: Mutex::default(),
            idempotent: Mutex::default(),
            refunds: Mutex::default(),
            throttled: Default::default(),
            keys_seen: Mutex::default(),
        });
        let app = Router::new()
            .route("/admin/api/{version}/orders.json", get(list))
            .route("/admin/api/{version}/graphql.json", post(graphql::graphql))
            .with_state(shared.clone());
        let stop = super::spawn_server(listener, app);
        tracing::info!(%addr, "simulated storefront Admin API listening");
        Ok(Self { addr, shared, _stop: stop })
    }

    pub(super) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// `http://IP:PORT`, the shop's endpoint.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds `order`, or replaces the stored order with its id.
    pub fn put(&self, order: Order) {
        self.shared.orders.lock().unwrap_or_else(PoisonError::into_inner).insert(order.id, order);
    }

    /// The stored orders, by id.
    pub fn orders(&self) -> Vec<Order> {
        self.shared.orders.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Stocks `available` units of `sku` at `location`; returns the SKU's inventory item id
    /// (its GID is `gid://shopify/InventoryItem/{id}`).
    pub fn stock(&self, sku: &str, location: u64, available: i64) -> u64 {
        let mut inventory = self.shared.inventory.lock().unwrap_or_else(PoisonError::into_inner);
        let item = inventory.item_for(sku);
        inventory.set(item, location, available);
        item
    }

    /// The inventory item id of `sku`, if the store knows it.
    pub fn inventory_item(&self, sku: &str) -> Option<u64> {
        self.shared.inventory.lock().unwrap_or_else(PoisonError::into_inner).item(sku)
    }

    /// Units of `sku` available at `location` (what the channel shows buyers).
    pub fn available(&self, sku: &str, location: u64) -> Option<i64> {
        let inventory = self.shared.inventory.lock().unwrap_or_else(PoisonError::into_inner);
        inventory.item(sku).map(|item| inventory.available(item, location))
    }

    /// A buyer checks out `lines` (SKU, units) from `location`: all or nothing, only when
    /// every line's level shows enough, each level then going down by its units, as Shopify
    /// does when an order is placed. Returns whether the order was taken.
    pub fn checkout(&self, lines: &[(String, i64)], location: u64) -> bool {
        let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
        for (sku, units) in lines {
            *wanted.entry(sku).or_default() += units;
        }
        let mut inventory = self.shared.inventory.lock().unwrap_or_else(PoisonError::into_inner);
        let mut levels = Vec::with_capacity(wanted.len());
        for (sku, units) in wanted {
            let Some(item) = inventory.item(sku) else { return false };
            let available = inventory.available(item, location);
            if available < units {
                return false;
            }
            levels.push((item, available - units));
        }
        for (item, left) in levels {
            inventory.set(item, location, left);
        }
        true
    }

    /// Every change of `sku`'s inventory levels, oldest first, for verification.
    pub fn inventory_history(&self, sku: &str) -> Vec<super::inventory::LevelChange> {
        self.shared.inventory.lock().unwrap_or_else(PoisonError::into_inner).history(sku)
    }

    /// Every inventory level the store holds, for verification.
    pub fn inventory_levels(&self) -> Vec<InventoryLevel> {
        self.shared.inventory.lock().unwrap_or_else(PoisonError::into_inner).levels()
    }

    /// GraphQL calls refused with `THROTTLED` so far.
    pub fn throttled_calls(&self) -> usize {
        self.shared.throttled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The `@idempotent` key of every admitted GraphQL mutation, in arrival order.
    pub fn idempotency_keys(&self) -> Vec<Option<String>> {
        self.shared.keys_seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Every refund made through `refundCreate`, in order.
    pub fn refunds(&self) -> Vec<Refund> {
        self.shared.refunds.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The filters of a listing; also what a `page_info` cursor carries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Filters {
    status: Option<String>,
    ids: Option<Vec<u64>>,
    since_id: Option<u64>,
    created_at_min: Option<Timestamp>,
    created_at_max: Option<Timestamp>,
    updated_at_min: Option<Timestamp>,
    updated_at_max: Option<Timestamp>,
}

/// A `page_info` cursor: the filters and the id the page starts after or ends before.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    filters: Filters,
    after: Option<u64>,
    before: Option<u64>,
}

fn bad_request(param: &str, message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, json!({ param: [message] }))
}

/// A query parameter Shopify would refuse, and why.
struct BadParam {
    param: String,
    message: &'static str,
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !shared.authorized(&headers) {
        return unauthorized();
    }
    let reading = shared.rest_bucket.take(1.0);
    let call_limit = format!("{}/{}", reading.used.ceil() as u64, reading.capacity as u64);
    let mut response = if reading.admitted {
        list_page(&shared, &version, query, &headers)
    } else {
        let message =
            "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service.";
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, json!(message));
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2.0"));
        response
    };
    if reading.capacity.is_finite()
        && let Ok(value) = HeaderValue::from_str(&call_limit)
    {
        response.headers_mut().insert("x-shopify-shop-api-call-limit", value);
    }
    response
}

fn list_page(shared: &Shared, version: &str, query: Option<String>, headers: &HeaderMap) -> Response {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let limit = match params.iter().find(|(k, _)| k == "limit").map(|(_, v)| v.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return bad_request("limit", "must be a number between 1 and 250"),
    };
    let cursor = match params.iter().find(|(k, _)| k == "page_info") {
        Some((_, info)) => {
            if let Some((other, _)) = params.iter().find(|(k, _)| k != "page_info" && k != "limit") {
                return bad_request(other, "page_info cannot be combined with other parameters than limit");
            }
            match decode_cursor(info) {
                Some(c) => c,
                None => return bad_request("page_info", "Invalid value."),
            }
        }
        None => match read_filters(&params) {
            Ok(filters) => Cursor { filters, after: None, before: None },
            Err(bad) => return bad_request(&bad.param, bad.message),
        },
    };
    let matching: Vec<Order> = {
        let orders = shared.orders.lock().unwrap_or_else(PoisonError::into_inner);
        orders.values().filter(|o| cursor.filters.admit(o)).cloned().collect()
    };
    let page: Vec<Order> = match cursor.before {
        // A previous page: the `limit` orders just before `before`, still ascending.
        Some(before) => {
            let earlier: Vec<Order> = matching.into_iter().filter(|o| o.id < before).collect();
            let skip = earlier.len().saturating_sub(limit);
            earlier.into_iter().skip(skip).collect()
        }
        None => matching.iter().filter(|o| cursor.after.is_none_or(|a| o.id > a)).take(limit).cloned().collect(),
    };
    let mut links = Vec::new();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let link = |cursor: Cursor, rel: &str| {
        format!(
            "<http://{host}/admin/api/{version}/orders.json?limit={limit}&page_info={}>; rel=\"{rel}\"",
            encode_cursor(&cursor)
        )
    };
    let all = {
        let orders = shared.orders.lock().unwrap_or_else(PoisonError::into_inner);
        orders.values().filter(|o| cursor.filters.admit(o)).map(|o| o.id).collect::<Vec<_>>()
    };
    if let (Some(first), Some(last)) = (page.first(), page.last()) {
        if all.iter().any(|id| *id < first.id) {
            links.push(link(
                Cursor { filters: cursor.filters.clone(), after: None, before: Some(first.id) },
                "previous",
            ));
        }
        if all.iter().any(|id| *id > last.id) {
            links.push(link(Cursor { filters: cursor.filters.clone(), after: Some(last.id), before: None }, "next"));
        }
    }
    let mut response = Json(json!({ "orders": page })).into_response();
    if !links.is_empty()
        && let Ok(value) = HeaderValue::from_str(&links.join(", "))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

fn read_filters(params: &[(String, String)]) -> Result<Filters, BadParam> {
    let mut f = Filters::default();
    for (name, value) in params {
        let bad = |message| BadParam { param: name.clone(), message };
        let time = || value.parse::<Timestamp>().map_err(|_| bad("must be an ISO 8601 time with an offset"));
        match name.as_str() {
            "status" if ["open", "closed", "cancelled", "any"].contains(&value.as_str()) => {
                f.status = Some(value.clone())
            }
            "status" => return Err(bad("must be open, closed, cancelled or any")),
            "ids" => {
                let ids = value.split(',').map(|i| i.trim().parse()).collect::<Result<Vec<u64>, _>>();
                f.ids = Some(ids.map_err(|_| bad("must be comma-separated order ids"))?);
            }
            "since_id" => f.since_id = Some(value.parse().map_err(|_| bad("must be an order id"))?),
            "created_at_min" => f.created_at_min = Some(time()?),
            "created_at_max" => f.created_at_max = Some(time()?),
            "updated_at_min" => f.updated_at_min = Some(time()?),
            "updated_at_max" => f.updated_at_max = Some(time()?),
            // `limit` is read apart; Shopify ignores parameters it does not know.
            _ => {}
        }
    }
    Ok(f)
}

impl Filters {
    fn admit(&self, order: &Order) -> bool {
        let at = |t: &str| t.parse::<Timestamp>().ok();
        let (created, updated) = (at(&order.created_at), at(&order.updated_at));
        let status_ok = match self.status.as_deref().unwrap_or("open") {
            "any" => true,
            "cancelled" => order.cancelled_at.is_some(),
            "closed" => order.closed_at.is_some(),
            _ => order.cancelled_at.is_none() && order.closed_at.is_none(),
        };
        let within = |t: Option<Timestamp>, min: Option<Timestamp>, max: Option<Timestamp>| {
            min.is_none_or(|m| t.is_some_and(|t| t >= m)) && max.is_none_or(|m| t.is_some_and(|t| t <= m))
        };
        status_ok
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&order.id))
            && self.since_id.is_none_or(|s| order.id > s)
            && within(created, self.created_at_min, self.created_at_max)
            && within(updated, self.updated_at_min, self.updated_at_max)
    }
}

fn encode_cursor(cursor: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).expect("a cursor always serializes"))
}

fn decode_cursor(text: &str) -> Option<Cursor> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).ok()?).ok()
}
