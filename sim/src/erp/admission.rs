//! What a request goes through before a handler sees it: outage, authentication, the
//! concurrency limit and processing latency; and, on the way out, one log line and one
//! counter per request.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error_body::{ApiError, ErrorDetail, code};
use super::{Outcome, Shared, ThrottleShape};
use crate::server::constant_time_eq;

/// The external id a handler worked on, attached to its response for the log line.
#[derive(Debug, Clone)]
pub(super) struct ExternalId(pub(super) String);

/// Middleware wrapped around every route and the fallbacks.
pub(super) async fn admit(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = gate(&shared, request, next).await;

    let outcome = response.extensions().get::<Outcome>().copied();
    if let Some(outcome) = outcome {
        shared.counters.count(outcome);
    }
    let external_id = response.extensions().get::<ExternalId>().map(|id| id.0.as_str());
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        outcome = outcome.map(Outcome::as_str),
        external_id,
        "erp request"
    );
    response
}

async fn gate(shared: &Shared, request: Request, next: Next) -> Response {
    if shared.down.load(std::sync::atomic::Ordering::Relaxed) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Unavailable,
            vec![ErrorDetail::general(
                code::SERVICE_UNAVAILABLE,
                "The account is temporarily unavailable. Retry later.",
            )],
        )
        .into_response();
    }
    if let Some(token) = &shared.config.bearer_token
        && !bearer_matches(request.headers(), token)
    {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            Outcome::Unauthorized,
            vec![ErrorDetail::general(
                code::INVALID_LOGIN,
                "Invalid login attempt: send the configured token as Authorization: Bearer <token>.",
            )],
        )
        .into_response();
    }
    // try_acquire, not acquire: NetSuite refuses the (limit+1)th concurrent request
    // instead of queueing it, and the runner's quota governor must see that.
    let Ok(_permit) = Arc::clone(&shared.permits).try_acquire_owned() else {
        if shared.config.netsuite.throttle_shape == ThrottleShape::RestletRequestLimit {
            return restlet_request_limit(shared.config.max_concurrency);
        }
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Outcome::Throttled,
            vec![ErrorDetail::general(
                code::CONCURRENCY_LIMIT_EXCEEDED,
                format!(
                    "Concurrent request limit exceeded: at most {} requests may be in flight. \
                     Retry after the Retry-After delay.",
                    shared.config.max_concurrency
                ),
            )],
        )
        .into_response();
    };
    let mut paused = shared.paused.subscribe();
    // The sender lives in `Shared`, which outlives this request, so this cannot fail.
    let _ = paused.wait_for(|paused| !*paused).await;
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD);
    let response = next.run(request).await;
    if writes && response.status().is_success() && shared.answer_lost() {
        // The write is done (and counted as what it was); the gateway in front gave up
        // waiting for its answer.
        let mut lost = lost_answer();
        if let Some(outcome) = response.extensions().get::<Outcome>() {
            lost.extensions_mut().insert(*outcome);
        }
        if let Some(id) = response.extensions().get::<ExternalId>() {
            lost.extensions_mut().insert(id.clone());
        }
        return lost;
    }
    response
}

/// What a client sees when a gateway loses the ERP's answer: a `504`, though the write
/// was made. Only an idempotent retry (key, repeatability id, upsert) avoids a duplicate.
fn lost_answer() -> Response {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        Outcome::Read,
        vec![ErrorDetail::general(code::SERVICE_UNAVAILABLE, "The gateway timed out waiting for the ERP's answer.")],
    )
    .into_response()
}

/// A RESTlet's answer over the concurrency limit: `400` with its own error shape, so a
/// client must read the code, not the status, to know it was throttled.
fn restlet_request_limit(limit: usize) -> Response {
    let body = serde_json::json!({"error": {
        "code": "SSS_REQUEST_LIMIT_EXCEEDED",
        "message": format!("Request limit exceeded: at most {limit} requests may be in flight."),
    }});
    let mut response = (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    response.extensions_mut().insert(Outcome::Throttled);
    response
}

fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && constant_time_eq(token.trim().as_bytes(), expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, "s3cret"));
        for (value, expected) in [
            ("Bearer s3cret", true),
            ("bearer s3cret", true),
            ("Bearer s3cre", false),
            ("Bearer s3cretX", false),
            ("Basic s3cret", false),
            ("s3cret", false),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer_matches(&headers, "s3cret"), expected, "{value}");
        }
    }
}
