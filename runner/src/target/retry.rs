//! The one place that decides what a system's answer means: delivered, retry later, or
//! a business rejection that no retry will fix; the category of a failure (for status
//! and metrics); the 401 rule; and the backoff between attempts. Targets and the poller
//! both classify here.

pub use entrepot_api::ErrorCategory;
use std::time::Duration;

use reqwest::StatusCode;

use crate::spec::RetrySpec;

/// What a target's answer means for the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The target has the record.
    Delivered,
    /// A transient failure: try again, after `after` when the target said so.
    Retry {
        /// The target's `Retry-After`, if it sent one.
        after: Option<Duration>,
        /// What failed, for logs, status and the attempt history.
        reason: String,
        /// The kind of failure.
        category: ErrorCategory,
    },
    /// The target refused the record for a business reason (or refused fresh
    /// credentials): dead-letter it now.
    Reject {
        /// The target's message, for the dead letter.
        reason: String,
        /// `Rejected`, or `Auth` for a 401.
        category: ErrorCategory,
    },
}

/// A target's answer to one attempt: a status with the headers that matter and the
/// body, or a transport failure (connect, timeout, reset).
#[derive(Clone, Debug)]
pub enum Answer {
    /// An HTTP response.
    Response {
        /// Status.
        status: StatusCode,
        /// The `Retry-After` header, raw.
        retry_after: Option<String>,
        /// The body, at most 4 KiB.
        body: String,
        /// What the response says about the target's quota.
        quota: super::quota::QuotaSignal,
        /// The `Location` header: where the target put the record (NetSuite's `204` +
        /// `Location`, a `201`), or the job that writes it (a `202`).
        location: Option<String>,
    },
    /// No response.
    Transport(String),
    /// No request was sent: the Connector's credentials could not be obtained (the
    /// token endpoint failed, a Secret is missing).
    Credentials(String),
    /// A database's answer to a write (`postgres` targets), classified by SQLSTATE where
    /// it was made (`postgres::Failure::of`).
    Database(Verdict),
}

impl Answer {
    /// A few words for a log line: the status, or why no response came. Never the body,
    /// which may hold customer data.
    pub fn summary(&self) -> String {
        match self {
            Answer::Response { status, .. } => status.to_string(),
            Answer::Transport(e) => format!("no response: {e}"),
            Answer::Credentials(e) => format!("not sent: {e}"),
            Answer::Database(Verdict::Delivered) => "written".into(),
            Answer::Database(Verdict::Retry { category, .. } | Verdict::Reject { category, .. }) => {
                format!("database: {}", category.as_str())
            }
        }
    }
}

/// The 401 rule, first half: a 401 means the system refused the credentials, so the
/// caller gets fresh ones (a new OAuth2 token, the Secret read again) and makes the same
/// request once more, within the same attempt (`connect::ConnectorClient::send`).
/// Second half, in [`classify`]: a 401 that is still there after that is final, a
/// business error of category `auth`; backing off will not fix credentials.
pub fn refresh_credentials(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED
}

/// Classifies an answer. Transport errors, 408, 429 and 5xx are transient; any other
/// 4xx is a business rejection (401 with category `auth`: see [`refresh_credentials`]);
/// 2xx is delivered (1xx/3xx are not expected from a JSON API: treated as transient, as
/// something between us and the target is wrong). Credentials that cannot be obtained
/// are transient: nothing is wrong with the record, and the token endpoint or the Secret
/// may be back by the next attempt.
pub fn classify(answer: &Answer) -> Verdict {
    use ErrorCategory::*;
    match answer {
        Answer::Transport(e) => {
            Verdict::Retry { after: None, reason: format!("unreachable: {e}"), category: Unreachable }
        }
        Answer::Credentials(e) => Verdict::Retry { after: None, reason: format!("auth: {e}"), category: Auth },
        Answer::Database(verdict) => verdict.clone(),
        Answer::Response { status, retry_after, body, .. } => {
            let after = retry_after.as_deref().and_then(parse_retry_after);
            if status.is_success() {
                Verdict::Delivered
            } else if *status == StatusCode::TOO_MANY_REQUESTS {
                Verdict::Retry { after, reason: "throttled: 429 Too Many Requests".into(), category: Throttled }
            } else if *status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
                Verdict::Retry { after, reason: format!("target error: {status}"), category: Server }
            } else if refresh_credentials(*status) {
                let reason = format!("auth: {status} with fresh credentials: {}", summarize_body(body));
                Verdict::Reject { reason, category: Auth }
            } else if status.is_client_error() {
                Verdict::Reject { reason: format!("{status}: {}", summarize_body(body)), category: Rejected }
            } else {
                Verdict::Retry { after, reason: format!("unexpected answer: {status}"), category: Server }
            }
        }
    }
}

/// The human part of an error body: for JSON, the first `detail` / `message` /
/// `error_description` / `title` string with the error code when there is one (NetSuite's
/// `o:errorDetails`, RFC 9457 problem details, most REST APIs); otherwise the first line.
pub(crate) fn summarize_body(body: &str) -> String {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return first_line(body).to_string();
    };
    let first = |keys: &[&str]| keys.iter().find_map(|k| find_string(&json, k, 0));
    let message = first(&["detail", "message", "error_description", "title", "error"]);
    let code = first(&["o:errorCode", "errorCode", "code"]);
    match (message, code) {
        (Some(m), Some(c)) => format!("{} ({c})", first_line(m)),
        (Some(m), None) => first_line(m).to_string(),
        _ => first_line(body).to_string(),
    }
}

/// The first string under `key`, searching at most a few levels deep.
fn find_string<'a>(value: &'a serde_json::Value, key: &str, depth: usize) -> Option<&'a str> {
    use serde_json::Value;
    if depth > 4 {
        return None;
    }
    match value {
        Value::Object(map) => {
            map.get(key).and_then(Value::as_str).or_else(|| map.values().find_map(|v| find_string(v, key, depth + 1)))
        }
        Value::Array(items) => items.iter().find_map(|v| find_string(v, key, depth + 1)),
        _ => None,
    }
}

fn first_line(body: &str) -> &str {
    let line = body.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(300) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// Reads `Retry-After` as delay-seconds (Shopify sends `2.0`, so fractions are
/// accepted) or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    Some(if when > now { Duration::try_from(when - now).unwrap_or_default() } else { Duration::ZERO })
}

/// The wait before attempt number `attempt + 1` (the first retry follows attempt 1):
/// exponential from `initial_backoff`, capped at `max_backoff`, with full jitter in its
/// upper half so retries from many records spread out. A `Retry-After` from the target
/// wins when it is longer.
pub fn backoff(policy: &RetrySpec, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let initial = policy.initial_backoff.get();
    let max = policy.max_backoff.get().max(initial);
    let exp = initial.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30))).min(max);
    let jittered = exp.mul_f64(rand::random_range(0.5..=1.0));
    match retry_after {
        Some(after) if after > jittered => after,
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, retry_after: Option<&str>) -> Answer {
        Answer::Response {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: retry_after.map(Into::into),
            body: "{\"error\":\"INVALID_KEY_OR_REF\"}\nmore".into(),
            quota: Default::default(),
            location: None,
        }
    }

    #[test]
    fn every_row_of_the_classification() {
        assert_eq!(classify(&response(200, None)), Verdict::Delivered);
        assert_eq!(classify(&response(204, None)), Verdict::Delivered);
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(&response(s, None)), Verdict::Retry { .. }), "{s}");
        }
        for s in [400, 403, 404, 409, 422] {
            assert!(
                matches!(classify(&response(s, None)), Verdict::Reject { category: ErrorCategory::Rejected, .. }),
                "{s}"
            );
        }
        let category = |answer: &Answer| match classify(answer) {
            Verdict::Retry { category, .. } | Verdict::Reject { category, .. } => Some(category),
            Verdict::Delivered => None,
        };
        assert_eq!(category(&response(429, None)), Some(ErrorCategory::Throttled));
        assert_eq!(category(&response(503, None)), Some(ErrorCategory::Server));
        assert_eq!(category(&response(302, None)), Some(ErrorCategory::Server));
        assert!(matches!(
            classify(&Answer::Transport("connection refused".into())),
            Verdict::Retry { after: None, category: ErrorCategory::Unreachable, .. }
        ));
        assert!(matches!(
            classify(&Answer::Credentials("token endpoint: 503".into())),
            Verdict::Retry { category: ErrorCategory::Auth, .. }
        ));
        // Not JSON (a second line follows): the first line is kept.
        assert_eq!(
            classify(&response(400, None)),
            Verdict::Reject {
                reason: "400 Bad Request: {\"error\":\"INVALID_KEY_OR_REF\"}".into(),
                category: ErrorCategory::Rejected
            }
        );
    }

    #[test]
    fn a_401_gets_fresh_credentials_once_then_is_a_business_error() {
        assert!(refresh_credentials(StatusCode::UNAUTHORIZED));
        assert!(!refresh_credentials(StatusCode::FORBIDDEN));
        let verdict = classify(&response(401, None));
        assert!(
            matches!(&verdict, Verdict::Reject { category: ErrorCategory::Auth, reason } if reason.starts_with("auth: 401")),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_rejection_names_the_targets_message_and_code() {
        let netsuite = r#"{"title":"Bad Request","status":400,"o:errorDetails":[{"detail":"Invalid item reference key X for field items[0].item.","o:errorCode":"INVALID_KEY_OR_REF"}]}"#;
        let answer = Answer::Response {
            status: StatusCode::BAD_REQUEST,
            retry_after: None,
            body: netsuite.into(),
            quota: Default::default(),
            location: None,
        };
        assert_eq!(
            classify(&answer),
            Verdict::Reject {
                reason: "400 Bad Request: Invalid item reference key X for field items[0].item. (INVALID_KEY_OR_REF)"
                    .into(),
                category: ErrorCategory::Rejected
            }
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("2.0"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120))
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let d = parse_retry_after(&future).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        assert_eq!(parse_retry_after("soon"), None);
        assert!(
            matches!(classify(&response(429, Some("3"))), Verdict::Retry { after: Some(d), .. } if d == Duration::from_secs(3))
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_yields_to_retry_after() {
        let policy = RetrySpec {
            max_attempts: 10,
            initial_backoff: crate::spec::Duration::from_secs(1),
            max_backoff: crate::spec::Duration::from_secs(8),
        };
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)] {
            let d = backoff(&policy, attempt, None);
            let full = Duration::from_secs(full);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert_eq!(backoff(&policy, 1, Some(Duration::from_secs(30))), Duration::from_secs(30));
    }
}
