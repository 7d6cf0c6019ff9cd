//! What the runner last saw go wrong with a Connector, for `/v1/status`: the category
//! of the failure, when, and the system's message.

use std::sync::Mutex;

use crate::target::retry::ErrorCategory;

/// A failure talking to a Connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastError {
    /// What kind of failure.
    pub category: ErrorCategory,
    /// When.
    pub at: jiff::Timestamp,
    /// What the system answered, or why there was no answer (never a secret: answers
    /// and transport errors only).
    pub message: String,
}

/// The last failure of one Connector, shared by its targets and its poller.
#[derive(Debug, Default)]
pub struct ConnectorHealth {
    last_error: Mutex<Option<LastError>>,
}

impl ConnectorHealth {
    /// Records a failure.
    pub fn failed(&self, category: ErrorCategory, message: &str) {
        let error = LastError { category, at: jiff::Timestamp::now(), message: message.to_string() };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// The last failure, if any. It stays after later successes: its time says how
    /// recent it is.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
