//! The store behind the simulated Admin API: its orders, inventory, refunds and rate
//! buckets, shared by the REST handlers (`admin_api.rs`) and the GraphQL ones
//! (`graphql.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::Order;
use super::bucket::LeakyBucket;
use super::inventory::Inventory;

/// A refund the store made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refund {
    /// The refund id.
    pub id: u64,
    /// The refunded order.
    pub order_id: u64,
    /// (line item id, quantity) refunded.
    pub lines: Vec<(u64, u32)>,
    /// The amount refunded, in minor units of the order currency.
    pub amount_minor: i64,
    /// The `@idempotent` key it was made with.
    pub idempotency_key: Option<String>,
}

/// The store behind the API, shared by the handlers.
pub(super) struct Shared {
    pub(super) token: String,
    pub(super) orders: Mutex<BTreeMap<u64, Order>>,
    pub(super) rest_bucket: LeakyBucket,
    pub(super) graphql_bucket: LeakyBucket,
    pub(super) require_idempotent: bool,
    pub(super) inventory: Mutex<Inventory>,
    /// `@idempotent` key → (mutation, original payload).
    pub(super) idempotent: Mutex<HashMap<String, (String, serde_json::Value)>>,
    pub(super) refunds: Mutex<Vec<Refund>>,
    /// GraphQL calls refused with `THROTTLED`.
    pub(super) throttled: std::sync::atomic::AtomicUsize,
    /// The `@idempotent` key of every GraphQL call admitted, in order (replays included).
    pub(super) keys_seen: Mutex<Vec<Option<String>>>,
}

// Written by hand so the access token never reaches a log line.
impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("token", &"<redacted>").finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn authorized(&self, headers: &HeaderMap) -> bool {
        let token = headers.get("x-shopify-access-token").and_then(|v| v.to_str().ok());
        token == Some(self.token.as_str())
    }
}

pub(super) fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        json!("[API] Invalid API key or access token (unrecognized login or wrong password)"),
    )
}

/// An error answer in the Admin API's shape: `{"errors": ...}`.
pub(super) fn error(status: StatusCode, errors: serde_json::Value) -> Response {
    (status, Json(json!({ "errors": errors }))).into_response()
}
