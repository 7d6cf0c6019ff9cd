//! What a Connector's `type` fixes about its system's protocol, so that a manifest says
//! only the endpoint, the credentials and the limits. Each type's details live in its own
//! file; [`Protocol`] dispatches to them. Every hook has the generic (`rest`) behaviour
//! as its default, so a type only overrides what its system does differently:
//!
//! - [`Protocol::decorate`]: headers every request to the system carries (Walmart's
//!   `WM_QOS.CORRELATION_ID`, say).
//! - [`Protocol::session`] and [`Protocol::session_expired`]: state fetched before a
//!   request and reused across requests (SAP's CSRF token), fetched again when the system
//!   says it went stale; the request is then sent once more within the same attempt.
//! - [`Protocol::write`]: how a target write goes out: method, URL, headers (NetSuite's
//!   `eid:` upserts, idempotency headers, `If-Match`).
//! - [`Protocol::read_quota`]: what an answer says about the quota beyond the headers
//!   every type reads ([`QuotaSignal::read`]).
//! - [`Protocol::classify`]: answers the type reads better than the generic status rule
//!   ([`crate::target::classify`]): NetSuite's concurrency errors, GraphQL `THROTTLED`
//!   inside a 200.

use reqwest::{
    Method, StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use crate::{
    queue::DeliveryItem,
    spec::{ConnectorSpec, ConnectorType, Operation},
    target::{Answer, Verdict, quota::QuotaSignal},
};

use super::InvalidConnector;

/// One Connector's protocol: its type, and the per-type state it keeps (session tokens,
/// known ETags).
#[derive(Debug)]
pub struct Protocol {
    kind: ConnectorType,
    #[allow(dead_code, reason = "read by the hooks of the types that keep state")]
    state: State,
}

/// Per-type state. A type with something to keep or to configure has a variant holding
/// its own struct (defined in its file); hooks match on it.
#[derive(Debug)]
enum State {
    /// The generic behaviour: nothing is kept.
    Generic,
}

/// A target write about to be sent. [`Protocol::write`] may change any part of it.
#[derive(Debug, Clone)]
pub struct Write {
    /// The HTTP method: `POST` for `create`, `PUT` for `upsert`.
    pub method: Method,
    /// The URL: the target's path, and for `upsert` the ordering key after it.
    pub url: String,
    /// Headers: content type, the idempotency key under the Connector's header, the
    /// correlation id.
    pub headers: HeaderMap,
    /// The body: the target Mapping's output.
    pub body: Vec<u8>,
}

/// What [`Protocol::write`] is told about the write.
#[derive(Debug, Clone, Copy)]
pub struct WriteContext<'a> {
    /// The target's `operation`.
    pub operation: Operation,
    /// The target's URL before any key is appended: endpoint + path.
    pub base_url: &'a str,
    /// The record being delivered.
    pub item: &'a DeliveryItem,
}

impl Protocol {
    /// The protocol of Connector `connector`, or why its spec cannot be used with its type.
    pub fn new(connector: &str, spec: &ConnectorSpec) -> Result<Self, InvalidConnector> {
        let _ = connector;
        // Each type with state of its own gets an arm here.
        let state = State::Generic;
        Ok(Self { kind: spec.kind, state })
    }

    /// The Connector's type.
    pub fn kind(&self) -> ConnectorType {
        self.kind
    }

    /// Headers added to every request sent to the system, the retry of a refused one
    /// included.
    pub fn decorate(&self, headers: &mut HeaderMap) {
        let _ = headers;
    }

    /// Headers of the session a request must carry (a CSRF token and its cookies),
    /// fetched with `http` from `endpoint` when the protocol keeps a session and has none
    /// yet. `Err` says why the session could not be obtained: nothing is sent, and the
    /// attempt counts as a transient credentials failure.
    pub async fn session(&self, http: &reqwest::Client, endpoint: &str, credentials: Option<(HeaderName, HeaderValue)>) -> Result<HeaderMap, String> {
        let _ = (http, endpoint, credentials);
        Ok(HeaderMap::new())
    }

    /// Whether an answer says the session went stale (SAP: `403` with
    /// `X-CSRF-Token: Required`). When it does the session is dropped, and the request is
    /// sent once more with a fresh one.
    pub fn session_expired(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let _ = (status, headers);
        false
    }

    /// Adjusts a target write to the system's API.
    pub fn write(&self, write: &mut Write, context: WriteContext<'_>) {
        let _ = (write, context);
    }

    /// Adds what an answer says about the quota beyond the generic headers.
    pub fn read_quota(&self, status: StatusCode, headers: &HeaderMap, body: &str, signal: &mut QuotaSignal) {
        let _ = (status, headers, body, signal);
    }

    /// The verdict on an answer when the type reads it differently from the generic rule;
    /// `None` leaves it to [`crate::target::classify`].
    pub fn classify(&self, answer: &Answer) -> Option<Verdict> {
        let _ = answer;
        None
    }

    /// The verdict on an answer: the type's own reading, else the generic rule.
    pub fn verdict(&self, answer: &Answer) -> Verdict {
        self.classify(answer).unwrap_or_else(|| crate::target::classify(answer))
    }
}
