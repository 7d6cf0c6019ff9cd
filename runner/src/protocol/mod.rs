//! The bottom of the runner: what a system's answer is and means, independent of who
//! sent the request. [`Answer`] and [`Verdict`], the failure categories, what an answer
//! says about the quota ([`QuotaSignal`]), the generic classification and the backoff
//! between attempts; and [`System`], one implementation per Connector type in its own
//! file (`shopify.rs`, `netsuite.rs`, ...), with what the type fixes about its system's
//! protocol. Imports nothing of the runner above it (only the spec types).

mod amazon_sp;
mod answer;
mod backoff;
mod bigcommerce;
mod classify;
mod dynamics365;
mod error_category;
mod netsuite;
mod odata;
mod quota_signal;
mod redact;
mod sap_odata;
mod shopify;
mod system;
mod walmart;

pub use answer::{Answer, Verdict, describe_transport};
pub use backoff::{MAX_UPSTREAM_WAIT, backoff, parse_retry_after, upstream_wait};
pub(crate) use classify::summarize_body;
pub use classify::{classify, refresh_credentials};
pub use error_category::ErrorCategory;
pub use quota_signal::QuotaSignal;
pub use redact::personal_data;
pub use system::{Channel, Generic, PollDefaults, Reply, System, Unfit, WebhookFields, Write, WriteContext, system};
use system::{generic_idempotency_header, token_in};

/// `key` percent-encoded for a URL path segment (`:` kept, for NetSuite's `eid:`).
pub(crate) fn urlencode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether `key`, once percent-encoded into one URL path segment, would be a dot segment
/// (`.` or `..`) that climbs out of the path it is put in. Encoding cannot help: URL
/// parsers read `%2E%2E` as `..` too, so such a key is refused.
pub(crate) fn is_dot_segment(key: &str) -> bool {
    matches!(key, "." | "..")
}

/// What a JSON value is, for messages about a body or a record: `an array`, `a string`.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
