//! Amazon Selling Partner API (type `amazon-sp`), per the external-API reference §5:
//! - Login with Amazon: the refresh-token grant (`auth.oauth2ClientCredentials` with
//!   `refreshTokenSecretRef` and `clientAuth: body`); the access token goes in
//!   `x-amz-access-token`, not `Authorization` ([`ACCESS_TOKEN_HEADER`]). SP-API answers a dead token `403
//!   Unauthorized` (not 401), so a 403 also gets one fresh token and one more try.
//! - One token bucket per operation ([`default_operations`], Amazon's published usage
//!   plans), adapted from `x-amzn-RateLimit-Limit` and 429s (`quota::operations`).
//! - `NextToken` pagination by default (`.payload.NextToken` sent back as `NextToken`).
//! - Listings Items writes: an `upsert` to `/listings/2021-08-01/items/{sellerId}` goes out
//!   as `PATCH .../{sellerId}/{sku}` with the target path's query (`marketplaceIds`) kept
//!   after the SKU.

use reqwest::{
    Method, StatusCode,
    header::{HeaderName, HeaderValue},
};

use super::{PollDefaults, System, Unfit, Write, WriteContext, token_in};
use entrepot_api::resource::{ClientAuth, ConnectorAuth, ConnectorSpec, Operation, OperationLimit, Pagination};

/// The header SP-API reads the LWA access token from.
pub const ACCESS_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-amz-access-token");

/// The path of the Listings Items API, up to the seller id.
const LISTINGS_ITEMS: &str = "/listings/2021-08-01/items/";

/// Amazon's Selling Partner API: Login with Amazon tokens in `x-amz-access-token`,
/// per-operation buckets, `NextToken` paging and Listings Items upserts.
#[derive(Clone, Copy, Debug)]
pub struct AmazonSp;

impl System for AmazonSp {
    fn for_connector(&self, spec: &ConnectorSpec) -> Result<Box<dyn System>, Unfit> {
        check(spec)?;
        Ok(Box::new(*self))
    }

    fn credential_header(&self, name: HeaderName, value: HeaderValue) -> (HeaderName, HeaderValue) {
        token_in(ACCESS_TOKEN_HEADER, name, value)
    }

    fn credentials_refused(&self, status: StatusCode) -> bool {
        self::credentials_refused(status)
    }

    fn default_operations(&self) -> Vec<OperationLimit> {
        self::default_operations()
    }

    fn write(&self, write: &mut Write, context: WriteContext<'_>) {
        self::write(write, context)
    }

    fn poll_defaults(&self) -> PollDefaults {
        PollDefaults { records: None, pagination: Some(default_pagination()) }
    }
}

/// The common SP-API operations and their default usage plans (rate per second, burst).
/// getOrders is sourced in the external-API reference (0.0167/s, burst 20); the others
/// are the values of Amazon's per-API reference pages. A manifest entry of the same name
/// replaces one.
fn default_operations() -> Vec<OperationLimit> {
    let op = |name: &str, method: &str, path: &str, rate: f64, burst: u32| OperationLimit {
        name: name.into(),
        method: method.into(),
        path: path.into(),
        requests_per_second: rate,
        burst,
    };
    vec![
        op("getOrders", "GET", "/orders/v0/orders", 0.0167, 20),
        op("getOrder", "GET", "/orders/v0/orders/{orderId}", 0.5, 30),
        op("getOrderItems", "GET", "/orders/v0/orders/{orderId}/orderItems", 0.5, 30),
        op("confirmShipment", "POST", "/orders/v0/orders/{orderId}/shipmentConfirmation", 2.0, 10),
        op("getListingsItem", "GET", "/listings/2021-08-01/items/{sellerId}/{sku}", 5.0, 10),
        op("patchListingsItem", "PATCH", "/listings/2021-08-01/items/{sellerId}/{sku}", 5.0, 10),
        op("createFeedDocument", "POST", "/feeds/2021-06-30/documents", 0.5, 15),
        op("createFeed", "POST", "/feeds/2021-06-30/feeds", 0.0083, 15),
        op("getFeed", "GET", "/feeds/2021-06-30/feeds/{feedId}", 2.0, 15),
    ]
}

/// Refuses an `amazon-sp` Connector whose credentials cannot work with Login with Amazon.
fn check(spec: &ConnectorSpec) -> Result<(), Unfit> {
    let invalid = |message: &str| Unfit { field: "spec.auth", message: message.into() };
    match &spec.auth {
        Some(ConnectorAuth::OAuth2ClientCredentials(o)) if o.refresh_token_secret_ref.is_none() => Err(invalid(
            "type amazon-sp authenticates with Login with Amazon's refresh-token grant: \
             set oauth2ClientCredentials.refreshTokenSecretRef to the seller's refresh token",
        )),
        Some(ConnectorAuth::OAuth2ClientCredentials(o)) if o.client_auth != ClientAuth::Body => Err(invalid(
            "Login with Amazon takes the client id and secret in the form: set oauth2ClientCredentials.clientAuth: body",
        )),
        Some(ConnectorAuth::OAuth2ClientCredentials(_)) => Ok(()),
        _ => Err(invalid(
            "type amazon-sp needs oauth2ClientCredentials with tokenUrl https://api.amazon.com/auth/o2/token, \
             clientAuth: body and refreshTokenSecretRef",
        )),
    }
}

/// SP-API refuses a missing or expired token with `403 Unauthorized`.
fn credentials_refused(status: StatusCode) -> bool {
    matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
}

/// `NextToken` in the payload, sent back as the `NextToken` parameter.
fn default_pagination() -> Pagination {
    Pagination::Cursor { field: ".payload.NextToken".into(), param: "NextToken".into() }
}

/// A Listings Items upsert is a `PATCH` of `{sellerId}/{sku}` (the ordering key is the
/// SKU), the path's query (`marketplaceIds=...`) after it.
fn write(write: &mut Write, context: WriteContext<'_>) {
    let (path, query) = context.base_url.split_once('?').unwrap_or((context.base_url, ""));
    if context.operation != Operation::Upsert || !path.contains(LISTINGS_ITEMS) {
        return;
    }
    let Some(sku) = context.ordering_key else { return };
    let sku: String = url::form_urlencoded::byte_serialize(sku.as_bytes()).collect::<String>().replace('+', "%20");
    write.method = Method::PATCH;
    write.url = format!("{}/{sku}", path.trim_end_matches('/'));
    if !query.is_empty() {
        write.url = format!("{}?{query}", write.url);
    }
}
