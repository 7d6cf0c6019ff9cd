//! What the runner last saw of a Connector, for `/v1/status`: the category of the last
//! failure, when, and the system's message; and when it last answered with a success.

use std::sync::Mutex;

use crate::protocol::ErrorCategory;

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
    last_success: Mutex<Option<jiff::Timestamp>>,
}

impl ConnectorHealth {
    /// Records a failure.
    pub fn failed(&self, category: ErrorCategory, message: &str) {
        let error = LastError { category, at: jiff::Timestamp::now(), message: message.to_string() };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// Records a success (a 2xx answer).
    pub fn succeeded(&self) {
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(jiff::Timestamp::now());
    }

    /// When the Connector last answered with a success.
    pub fn last_success(&self) -> Option<jiff::Timestamp> {
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last failure, if any. It stays after later successes: its time says how
    /// recent it is.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
