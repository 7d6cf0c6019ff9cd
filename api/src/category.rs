//! The kinds of failure the runner tells apart. One small fixed set, shared by the
//! runner (metric labels, dead letters, `/v1/status`) and the operator (conditions,
//! Events), so neither compares strings.

use serde::{Deserialize, Serialize};

/// What kind of failure an answer was: a small fixed set, used as a metric label, in
/// the runner's status per Connector and in dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorCategory {
    /// The credentials were refused (401) or could not be obtained (token endpoint,
    /// missing Secret).
    Auth,
    /// No answer: connect failure, timeout, reset.
    Unreachable,
    /// 429: the system's quota is used up for now.
    Throttled,
    /// A 4xx business rejection.
    Rejected,
    /// 408, 5xx or an unexpected status: the system is failing.
    Server,
    /// A 2xx answer that cannot be read as the manifest describes it (a poll page that is
    /// not JSON or has no array of records where `records` points).
    Invalid,
}

impl ErrorCategory {
    /// The fixed label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Unreachable => "unreachable",
            Self::Throttled => "throttled",
            Self::Rejected => "rejected",
            Self::Server => "server",
            Self::Invalid => "invalid",
        }
    }
}
