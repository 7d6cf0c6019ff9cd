//! What an answer says about the system's quota, in the headers every type reads; a
//! system's own reading adds to it (`System::read_quota`).

use std::time::Duration;

use reqwest::{StatusCode, header::HeaderMap};

use super::upstream_wait;

/// What a target's answer says about its quota.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaSignal {
    /// The answer was a 429 (or the system's own throttling answer).
    pub throttled: bool,
    /// The target served the request (a 2xx, or a 4xx other than throttling): proof that
    /// it granted the requests in flight with it. A 5xx proves nothing of the kind.
    pub served: bool,
    /// The throttling refused the request for being one too many in flight (NetSuite's
    /// concurrency governance, Business Central's), not for the request rate.
    pub concurrency: bool,
    /// `Retry-After`, parsed.
    pub retry_after: Option<Duration>,
    /// Requests that can still be made before the target throttles.
    pub remaining: Option<f64>,
    /// When the quota window resets (BigCommerce).
    pub reset_after: Option<Duration>,
    /// The sustained rate the target grants (Amazon).
    pub granted_rate: Option<f64>,
}

impl QuotaSignal {
    /// Reads the signal from a response's status and headers.
    pub fn read(status: StatusCode, headers: &HeaderMap, retry_after: Option<Duration>) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let number = |name: &str| text(name).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0);
        let shopify = text("x-shopify-shop-api-call-limit").and_then(|v| {
            let (used, max) = v.split_once('/')?;
            Some(max.trim().parse::<f64>().ok()? - used.trim().parse::<f64>().ok()?)
        });
        Self {
            throttled: status == StatusCode::TOO_MANY_REQUESTS,
            served: status.is_success() || (status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS),
            concurrency: false,
            retry_after,
            remaining: shopify.or_else(|| number("x-rate-limit-requests-left")).map(|r| r.max(0.0)),
            reset_after: number("x-rate-limit-time-reset-ms").and_then(|ms| upstream_wait(ms / 1000.0)),
            granted_rate: number("x-amzn-ratelimit-limit").filter(|r| *r > 0.0),
        }
    }
}
