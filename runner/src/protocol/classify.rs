//! The generic rule for what a system's answer means: delivered, retry later, or a
//! business rejection that no retry will fix, with the category of a failure; and the
//! 401 rule. A system's own reading comes first (`System::classify`).

use reqwest::StatusCode;

use super::{Answer, ErrorCategory, Verdict, parse_retry_after};

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
/// Personal data (e-mail addresses, phone numbers) is taken out: the summary goes to logs
/// and status.
pub(crate) fn summarize_body(body: &str) -> String {
    super::personal_data(&summary(body))
}

fn summary(body: &str) -> String {
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
    fn a_rejection_quoting_the_customer_leaves_their_address_out() {
        let body = r#"{"error":{"code":"DUPLICATE_CUSTOMER","message":"A customer with e-mail jane@example.com and phone +1-415-555-0134 already exists."}}"#;
        assert_eq!(
            summarize_body(body),
            "A customer with e-mail <email> and phone <phone> already exists. (DUPLICATE_CUSTOMER)"
        );
    }
}
