//! Walmart Marketplace API (type `walmart`), per the external-API reference §6:
//! - Token endpoint `POST /v3/token` with client credentials in HTTP basic
//!   (`auth.oauth2ClientCredentials`, `clientAuth: basic`); the token goes in
//!   `WM_SEC.ACCESS_TOKEN`.
//! - Every request, the token request included, carries a fresh `WM_QOS.CORRELATION_ID`
//!   (a UUID), `WM_SVC.NAME` and `Accept: application/json` (Walmart answers XML otherwise).
//! - `X-Current-Token-Count` and `X-Next-Replenishment-Time` (epoch milliseconds) feed the
//!   quota governor; Walmart's own code also spells the latter `x-next-replenish-time`
//!   (reference, uncertain), so both names are read (header names are case-insensitive).
//! - `nextCursor` pagination by default: the cursor is itself a query string
//!   (`?limit=..&hasMoreElements=true&...`) that replaces the query of the next request.
//! - Inventory writes: an `upsert` to `/v3/inventory` goes out as `PUT /v3/inventory?sku=<key>`.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{
    StatusCode,
    header::{ACCEPT, HeaderMap, HeaderName, HeaderValue},
};

use super::{PollDefaults, QuotaSignal, System, Unfit, Write, WriteContext, token_in};
use entrepot_api::resource::{ConnectorSpec, Operation, Pagination};

/// The header Walmart reads the access token from.
pub const ACCESS_TOKEN_HEADER: HeaderName = HeaderName::from_static("wm_sec.access_token");
/// A UUID per request.
pub const CORRELATION_ID_HEADER: HeaderName = HeaderName::from_static("wm_qos.correlation_id");
/// The calling service's name.
pub const SERVICE_NAME_HEADER: HeaderName = HeaderName::from_static("wm_svc.name");
/// What Entrepot calls itself in `WM_SVC.NAME`.
const SERVICE_NAME: &str = "Entrepot";

/// Walmart's Marketplace API: its `WM_*` headers on every request and the token request,
/// the token in `WM_SEC.ACCESS_TOKEN`, token-count headers, `nextCursor` paging and
/// inventory upserts by SKU.
#[derive(Clone, Copy, Debug)]
pub struct Walmart;

impl System for Walmart {
    fn for_connector(&self, _spec: &ConnectorSpec) -> Result<Box<dyn System>, Unfit> {
        Ok(Box::new(*self))
    }

    fn decorate(&self, headers: &mut HeaderMap) {
        self::decorate(headers)
    }

    fn credential_header(&self, name: HeaderName, value: HeaderValue) -> (HeaderName, HeaderValue) {
        token_in(ACCESS_TOKEN_HEADER, name, value)
    }

    fn write(&self, write: &mut Write, context: WriteContext<'_>) {
        self::write(write, context)
    }

    fn poll_defaults(&self) -> PollDefaults {
        PollDefaults { records: None, pagination: Some(default_pagination()) }
    }

    fn read_quota(&self, status: StatusCode, headers: &HeaderMap, _body: &str, signal: &mut QuotaSignal) {
        self::read_quota(status, headers, signal)
    }
}

/// Adds the `WM_QOS.CORRELATION_ID` (fresh), `WM_SVC.NAME` and `Accept` headers.
fn decorate(headers: &mut HeaderMap) {
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()) {
        headers.insert(CORRELATION_ID_HEADER, id);
    }
    headers.insert(SERVICE_NAME_HEADER, HeaderValue::from_static(SERVICE_NAME));
    headers.entry(ACCEPT).or_insert(HeaderValue::from_static("application/json"));
}

/// Reads the token count and, when it is spent, when the next tokens arrive.
fn read_quota(status: StatusCode, headers: &HeaderMap, signal: &mut QuotaSignal) {
    let number =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok());
    if let Some(count) = number("x-current-token-count").filter(|c| c.is_finite() && *c >= 0.0) {
        signal.remaining = Some(count);
    }
    let replenish = number("x-next-replenishment-time").or_else(|| number("x-next-replenish-time"));
    if let Some(at_ms) = replenish.filter(|ms| ms.is_finite() && *ms > 0.0) {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_millis() as f64);
        let Some(wait) = super::upstream_wait((at_ms - now_ms) / 1000.0) else { return };
        // Only worth waiting for when the bucket is empty or the call was refused.
        if status == StatusCode::TOO_MANY_REQUESTS || signal.remaining.is_some_and(|r| r < 1.0) {
            signal.reset_after = Some(wait);
            if status == StatusCode::TOO_MANY_REQUESTS && signal.retry_after.is_none() {
                signal.retry_after = Some(wait);
            }
        }
    }
}

/// `list.meta.nextCursor`, a query string for the next page.
fn default_pagination() -> Pagination {
    Pagination::Cursor { field: ".list.meta.nextCursor".into(), param: "nextCursor".into() }
}

/// An inventory upsert goes to `/v3/inventory?sku=<key>`.
fn write(write: &mut Write, context: WriteContext<'_>) {
    let path = context.base_url.split('?').next().unwrap_or_default();
    if context.operation != Operation::Upsert || !path.trim_end_matches('/').ends_with("/v3/inventory") {
        return;
    }
    let Some(sku) = context.ordering_key else { return };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("sku", sku);
    write.url = format!("{}?{}", path.trim_end_matches('/'), query.finish());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replenishment_centuries_away_waits_an_hour_at_most() {
        let mut headers = HeaderMap::new();
        headers.insert("x-current-token-count", HeaderValue::from_static("0"));
        headers.insert("x-next-replenishment-time", HeaderValue::from_static("1e300"));
        let mut signal = QuotaSignal::default();
        read_quota(StatusCode::TOO_MANY_REQUESTS, &headers, &mut signal);
        assert_eq!(signal.retry_after, Some(crate::protocol::MAX_UPSTREAM_WAIT));
        assert_eq!(signal.reset_after, Some(crate::protocol::MAX_UPSTREAM_WAIT));
    }
}
