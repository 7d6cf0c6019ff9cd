//! What a system answered to one attempt ([`Answer`]) and what that means for the
//! record ([`Verdict`]).

use std::time::Duration;

use reqwest::StatusCode;

use super::{ErrorCategory, QuotaSignal};

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

impl Verdict {
    /// Whether the target throttled the attempt (asked to slow down): the retry rule
    /// spends no attempt on it.
    pub fn throttled(&self) -> bool {
        matches!(self, Self::Retry { category: ErrorCategory::Throttled, .. })
    }
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
        quota: QuotaSignal,
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

/// A transport error in a few words with its causes (refused, reset, timed out). The URL
/// is ours and holds no secret.
pub fn describe_transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect failed"
    } else {
        "transport error"
    };
    let mut message = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}
