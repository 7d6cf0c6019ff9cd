//! The bottom of the runner: what a system's answer is and means, independent of who
//! sent the request. [`Answer`] and [`Verdict`], the failure categories, what an answer
//! says about the quota ([`QuotaSignal`]), the generic classification and the backoff
//! between attempts. Imports nothing of the runner above it (only the spec types).

mod answer;
mod backoff;
mod classify;
mod error_category;
mod quota_signal;

pub use answer::{Answer, Verdict};
pub use backoff::{backoff, parse_retry_after};
pub(crate) use classify::summarize_body;
pub use classify::{classify, refresh_credentials};
pub use error_category::ErrorCategory;
pub use quota_signal::QuotaSignal;

/// `key` percent-encoded for a URL path segment (`:` kept, for NetSuite's `eid:`).
pub(crate) fn urlencode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
