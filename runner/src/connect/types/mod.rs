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
//! - [`Protocol::credential_header`] and [`Protocol::credentials_refused`]: where the
//!   access token goes (Amazon's `x-amz-access-token`, Walmart's `WM_SEC.ACCESS_TOKEN`)
//!   and which answers mean it was refused (Amazon: 403 as well as 401).
//! - [`Protocol::pace`]: waits for the token of the operation a request belongs to
//!   (per-operation buckets, `spec.limits.operations`, with defaults per type).
//! - [`Protocol::default_pagination`]: how a poller pages when the trigger does not say.
//! - [`decorate_token_request`]: headers of the token request (Walmart's `WM_*`).

pub mod amazon_sp;
pub mod walmart;

#[cfg(test)]
mod tests;

use reqwest::{
    Method, StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use crate::{
    queue::DeliveryItem,
    spec::{ConnectorSpec, ConnectorType, Operation, Pagination},
    target::{
        Answer, Verdict,
        operations::{Metered, OperationQuotas},
        quota::QuotaSignal,
    },
};

use super::InvalidConnector;

/// One Connector's protocol: its type, and the per-type state it keeps (session tokens,
/// known ETags).
#[derive(Debug)]
pub struct Protocol {
    kind: ConnectorType,
    #[allow(dead_code, reason = "read by the hooks of the types that keep state")]
    state: State,
    /// One bucket per metered operation (`spec.limits.operations` and the type's defaults).
    operations: OperationQuotas,
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
        // Each type with state of its own gets an arm here.
        let state = State::Generic;
        let defaults = match spec.kind {
            ConnectorType::AmazonSp => {
                amazon_sp::check(connector, spec)?;
                amazon_sp::default_operations()
            }
            _ => Vec::new(),
        };
        let declared = spec.limits.as_ref().map(|l| l.operations.as_slice()).unwrap_or_default();
        let operations = OperationQuotas::new(declared, &defaults).map_err(|(index, message)| InvalidConnector {
            connector: connector.into(),
            field: "spec.limits.operations",
            message: if index == usize::MAX { message } else { format!("entry {index}: {message}") },
        })?;
        Ok(Self { kind: spec.kind, state, operations })
    }

    /// The Connector's type.
    pub fn kind(&self) -> ConnectorType {
        self.kind
    }

    /// Headers added to every request sent to the system, the retry of a refused one
    /// included.
    pub fn decorate(&self, headers: &mut HeaderMap) {
        if self.kind == ConnectorType::Walmart {
            walmart::decorate(headers);
        }
    }

    /// Where the credentials header goes: the generic `Authorization: Bearer` becomes
    /// the header the system reads the token from.
    pub fn credential_header(&self, name: HeaderName, value: HeaderValue) -> (HeaderName, HeaderValue) {
        match self.kind {
            ConnectorType::AmazonSp => token_in(amazon_sp::ACCESS_TOKEN_HEADER, name, value),
            ConnectorType::Walmart => token_in(walmart::ACCESS_TOKEN_HEADER, name, value),
            _ => (name, value),
        }
    }

    /// Whether an answer says the credentials were refused, so fresh ones are worth one
    /// more try (generic: 401).
    pub fn credentials_refused(&self, status: StatusCode) -> bool {
        match self.kind {
            ConnectorType::AmazonSp => amazon_sp::credentials_refused(status),
            _ => crate::target::retry::refresh_credentials(status),
        }
    }

    /// Waits for a token of the operation a request to `url` with `method` belongs to,
    /// and returns it so its answer can adapt the bucket; `None` when no operation
    /// meters the request.
    pub async fn pace(&self, method: &Method, url: &reqwest::Url) -> Option<Metered> {
        if self.operations.is_empty() {
            return None;
        }
        self.operations.pace(method, url).await
    }

    /// How a poller of this system pages when its trigger does not say.
    pub fn default_pagination(&self) -> Option<Pagination> {
        match self.kind {
            ConnectorType::AmazonSp => Some(amazon_sp::default_pagination()),
            ConnectorType::Walmart => Some(walmart::default_pagination()),
            _ => None,
        }
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
        match self.kind {
            ConnectorType::AmazonSp => amazon_sp::write(write, context),
            ConnectorType::Walmart => walmart::write(write, context),
            _ => {}
        }
    }

    /// Adds what an answer says about the quota beyond the generic headers.
    pub fn read_quota(&self, status: StatusCode, headers: &HeaderMap, body: &str, signal: &mut QuotaSignal) {
        let _ = body;
        if self.kind == ConnectorType::Walmart {
            walmart::read_quota(status, headers, signal);
        }
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

/// `Authorization: Bearer <token>` moved to `header` as the bare token (Amazon's
/// `x-amz-access-token`, Walmart's `WM_SEC.ACCESS_TOKEN`); other credentials unchanged.
fn token_in(header: HeaderName, name: HeaderName, value: HeaderValue) -> (HeaderName, HeaderValue) {
    if name != reqwest::header::AUTHORIZATION {
        return (name, value);
    }
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).and_then(|t| HeaderValue::from_str(t).ok());
    match token {
        Some(mut token) => {
            token.set_sensitive(true);
            (header, token)
        }
        None => (name, value),
    }
}

/// Headers the token request of a Connector of type `kind` carries (Walmart's token
/// endpoint wants its `WM_*` headers too).
pub fn decorate_token_request(kind: ConnectorType, headers: &mut HeaderMap) {
    if kind == ConnectorType::Walmart {
        walmart::decorate(headers);
    }
}
