//! NetSuite-style error answers.
//!
//! NetSuite's REST record service answers errors with an RFC 9457 problem document extended
//! with `o:errorDetails`; connectors classify failures by `o:errorCode`, so the simulator
//! reproduces that shape rather than inventing its own.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Outcome;

/// The media type NetSuite gives its error documents.
const ERROR_CONTENT_TYPE: &str = "application/vnd.oracle.resource+json; type=error";

/// Error codes the simulated ERP answers with, named as NetSuite names them.
pub mod code {
    /// An item, customer or other reference names a record that does not exist.
    pub const INVALID_KEY_OR_REF: &str = "INVALID_KEY_OR_REF";
    /// A field holds a value of the wrong type or format.
    pub const INVALID_FLD_VALUE: &str = "INVALID_FLD_VALUE";
    /// A mandatory field is missing or empty.
    pub const USER_ERROR: &str = "USER_ERROR";
    /// The request body is not a JSON object.
    pub const INVALID_CONTENT: &str = "INVALID_CONTENT";
    /// A create names an external id that another record already has.
    pub const DUPLICATE_EXTERNAL_ID: &str = "DUPLICATE_EXTERNAL_ID";
    /// An idempotency key was reused for a different record.
    pub const IDEMPOTENCY_ERROR: &str = "IDEMPOTENCY_ERROR";
    /// More requests are in flight than the account's concurrency limit allows.
    pub const CONCURRENCY_LIMIT_EXCEEDED: &str = "CONCURRENCY_LIMIT_EXCEEDED";
    /// The credentials are missing or wrong.
    pub const INVALID_LOGIN: &str = "INVALID_LOGIN";
    /// The addressed record does not exist.
    pub const NONEXISTENT_ID: &str = "NONEXISTENT_ID";
    /// The account is unavailable (outage or maintenance).
    pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
    /// The HTTP method is not supported on this path.
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
}

/// One entry of `o:errorDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorDetail {
    /// Human-readable explanation naming the field and the value.
    pub detail: String,
    /// Machine-readable error code (see [`code`]).
    #[serde(rename = "o:errorCode")]
    pub code: String,
    /// Path of the offending field in the request body, when there is one.
    #[serde(rename = "o:errorPath", skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ErrorDetail {
    /// A detail about the field at `path`.
    pub fn at(code: &str, path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { detail: detail.into(), code: code.to_owned(), path: Some(path.into()) }
    }

    /// A detail about the request as a whole.
    pub fn general(code: &str, detail: impl Into<String>) -> Self {
        Self { detail: detail.into(), code: code.to_owned(), path: None }
    }
}

#[derive(Serialize)]
struct ProblemDocument<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    #[serde(rename = "o:errorDetails")]
    details: &'a [ErrorDetail],
}

/// An error answer: status, details and the extra headers some statuses carry.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) details: Vec<ErrorDetail>,
    pub(crate) outcome: Outcome,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, outcome: Outcome, details: Vec<ErrorDetail>) -> Self {
        Self { status, details, outcome }
    }

    /// A 400 business rejection: the record itself is wrong and retrying cannot help.
    pub(crate) fn business(details: Vec<ErrorDetail>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Outcome::Rejected, details)
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, Outcome::NotFound, vec![ErrorDetail::general(code::NONEXISTENT_ID, detail)])
    }
}

/// The RFC section a problem document's `type` points at, and its title.
fn problem_type(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1", "Bad Request"),
        401 => ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2", "Unauthorized"),
        404 => ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.5", "Not Found"),
        405 => ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.6", "Method Not Allowed"),
        429 => ("https://www.rfc-editor.org/rfc/rfc6585.html#section-4", "Too Many Requests"),
        503 => ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.4", "Service Unavailable"),
        504 => ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.5", "Gateway Timeout"),
        _ => ("https://www.rfc-editor.org/rfc/rfc9110.html#section-15.6.1", "Internal Server Error"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (kind, title) = problem_type(self.status);
        let document = ProblemDocument { kind, title, status: self.status.as_u16(), details: &self.details };
        // Serializing strings and integers cannot fail; the fallback keeps the status anyway.
        let body = serde_json::to_vec(&document).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ERROR_CONTENT_TYPE));
        match self.status {
            // NetSuite asks clients to retry a concurrency rejection shortly.
            StatusCode::TOO_MANY_REQUESTS => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response.extensions_mut().insert(self.outcome);
        response
    }
}
