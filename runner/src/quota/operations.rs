//! Per-operation quotas: systems that meter each API operation on its own (Amazon SP-API:
//! one token bucket per operation, its rate named in `x-amzn-RateLimit-Limit`) get one
//! [`Quota`] per operation, matched by method and path, used by every request the
//! Connector sends (targets and poller alike), on top of the Connector's own quota.

use std::sync::Arc;

use reqwest::{Method, StatusCode, header::HeaderMap};

use super::Quota;
use crate::protocol::QuotaSignal;
use entrepot_api::resource::{ConnectorLimits, OperationLimit};

/// One operation: what it matches and its bucket.
#[derive(Debug)]
struct Operation {
    name: String,
    method: Method,
    /// The path's segments; `None` is a `{name}` placeholder matching any one segment.
    segments: Vec<Option<String>>,
    quota: Arc<Quota>,
}

impl Operation {
    /// Whether `path` ends with this operation's path.
    fn matches(&self, method: &Method, path: &[&str]) -> bool {
        *method == self.method
            && path.len() >= self.segments.len()
            && path[path.len() - self.segments.len()..]
                .iter()
                .zip(&self.segments)
                .all(|(have, want)| want.as_deref().is_none_or(|want| want == *have))
    }
}

/// The operations of one Connector.
#[derive(Debug, Default)]
pub struct OperationQuotas {
    operations: Vec<Operation>,
}

/// An operation matched by a request: its name and bucket.
#[derive(Debug, Clone)]
pub struct Metered {
    /// The operation's name, e.g. `getOrders`.
    pub name: String,
    quota: Arc<Quota>,
}

impl Metered {
    /// Adapts the operation's bucket to what its answer said (429, granted rate).
    pub fn observe(&self, signal: &QuotaSignal) {
        self.quota.observe(signal);
    }

    /// The operation's rate in force (after adaptation).
    pub fn rate(&self) -> Option<f64> {
        self.quota.rate()
    }
}

impl OperationQuotas {
    /// The `declared` operations, then the `defaults` whose name none of them takes.
    /// The error names the entry (`spec.limits.operations[i]`) and what is wrong.
    pub fn new(declared: &[OperationLimit], defaults: &[OperationLimit]) -> Result<Self, (usize, String)> {
        let mut operations = Vec::new();
        for (index, limit) in declared.iter().enumerate() {
            operations.push(Self::operation(limit).map_err(|why| (index, why))?);
        }
        for limit in defaults {
            if !declared.iter().any(|d| d.name == limit.name) {
                operations.push(Self::operation(limit).map_err(|why| (usize::MAX, why))?);
            }
        }
        // The most specific path wins where several match.
        operations
            .sort_by_key(|op: &Operation| std::cmp::Reverse((op.segments.len(), op.segments.iter().flatten().count())));
        Ok(Self { operations })
    }

    fn operation(limit: &OperationLimit) -> Result<Operation, String> {
        let method = Method::from_bytes(limit.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("method `{}` is not an HTTP method, e.g. GET", limit.method))?;
        if !limit.path.starts_with('/') {
            return Err(format!("path `{}` must start with /", limit.path));
        }
        if !(limit.requests_per_second.is_finite() && limit.requests_per_second > 0.0) {
            return Err(format!("requestsPerSecond {} must be above 0", limit.requests_per_second));
        }
        let segments = limit
            .path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_string()))
            .collect();
        let quota = Quota::new(Some(&ConnectorLimits {
            requests_per_second: Some(limit.requests_per_second),
            burst: Some(limit.burst.max(1)),
            ..Default::default()
        }));
        Ok(Operation { name: limit.name.clone(), method, segments, quota: Arc::new(quota) })
    }

    /// Whether no operation is metered.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The operation a request to `url` with `method` belongs to, if any.
    pub fn find(&self, method: &Method, url: &reqwest::Url) -> Option<Metered> {
        let path: Vec<&str> = url.path_segments().map(|s| s.filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        self.operations
            .iter()
            .find(|op| op.matches(method, &path))
            .map(|op| Metered { name: op.name.clone(), quota: op.quota.clone() })
    }

    /// Waits for a token of the operation a request belongs to, and returns it so its
    /// answer can be observed; `None` for a request no operation meters.
    pub async fn pace(&self, method: &Method, url: &reqwest::Url) -> Option<Metered> {
        let metered = self.find(method, url)?;
        metered.quota.pace().await;
        Some(metered)
    }
}

/// What an answer says about an operation's quota: the generic reading of its status and
/// headers (`Retry-After` and `x-amzn-RateLimit-Limit` included).
pub fn signal(status: StatusCode, headers: &HeaderMap) -> QuotaSignal {
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::protocol::parse_retry_after);
    QuotaSignal::read(status, headers, retry_after)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    fn limit(name: &str, method: &str, path: &str, rate: f64, burst: u32) -> OperationLimit {
        OperationLimit { name: name.into(), method: method.into(), path: path.into(), requests_per_second: rate, burst }
    }

    fn url(path: &str) -> reqwest::Url {
        reqwest::Url::parse(&format!("https://sellingpartnerapi-na.amazon.com{path}")).unwrap()
    }

    #[test]
    fn requests_match_the_most_specific_operation_and_declared_entries_replace_defaults() {
        let defaults = [
            limit("getOrders", "GET", "/orders/v0/orders", 0.0167, 20),
            limit("getOrder", "GET", "/orders/v0/orders/{orderId}", 0.5, 30),
            limit("getOrderItems", "GET", "/orders/v0/orders/{orderId}/orderItems", 0.5, 30),
        ];
        let declared = [limit("getOrders", "get", "/orders/v0/orders", 2.0, 5)];
        let ops = OperationQuotas::new(&declared, &defaults).unwrap();
        let name = |method: Method, path: &str| ops.find(&method, &url(path)).map(|m| m.name);
        assert_eq!(name(Method::GET, "/orders/v0/orders?CreatedAfter=x").as_deref(), Some("getOrders"));
        assert_eq!(name(Method::GET, "/orders/v0/orders/902-1/orderItems").as_deref(), Some("getOrderItems"));
        assert_eq!(name(Method::GET, "/orders/v0/orders/902-1").as_deref(), Some("getOrder"));
        assert_eq!(name(Method::POST, "/orders/v0/orders"), None);
        assert_eq!(name(Method::GET, "/catalog/items"), None);
        assert_eq!(ops.find(&Method::GET, &url("/orders/v0/orders")).unwrap().rate(), Some(2.0));

        let bad = OperationQuotas::new(&[limit("x", "GE T", "/a", 1.0, 1)], &[]).unwrap_err();
        assert_eq!(bad, (0, "method `GE T` is not an HTTP method, e.g. GET".to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn each_operation_waits_for_its_own_tokens_and_adapts_to_its_answers() {
        let ops = OperationQuotas::new(
            &[
                limit("getOrders", "GET", "/orders/v0/orders", 1.0, 2),
                limit("patch", "PATCH", "/listings/{seller}/{sku}", 5.0, 1),
            ],
            &[],
        )
        .unwrap();
        let start = Instant::now();
        for _ in 0..4 {
            ops.pace(&Method::GET, &url("/orders/v0/orders")).await.unwrap();
        }
        // Burst 2, then one a second: 2 s of virtual time; the other operation is not held.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        let start = Instant::now();
        ops.pace(&Method::PATCH, &url("/listings/S1/SKU-1")).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);

        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-ratelimit-limit", "0.5".parse().unwrap());
        let metered = ops.find(&Method::GET, &url("/orders/v0/orders")).unwrap();
        metered.observe(&signal(StatusCode::OK, &headers));
        assert_eq!(metered.rate(), Some(0.5));
        metered.observe(&signal(StatusCode::TOO_MANY_REQUESTS, &headers));
        // A 429 pauses the operation (1 s without Retry-After) and cuts its rate.
        let start = Instant::now();
        ops.pace(&Method::GET, &url("/orders/v0/orders")).await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert!(metered.rate().unwrap() < 0.5);
    }
}
