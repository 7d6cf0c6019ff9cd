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
//!   ([`crate::protocol::classify`]): NetSuite's concurrency errors, GraphQL `THROTTLED`
//!   inside a 200.
//! - [`Protocol::exchange`]: a target write that takes more than one request (read the
//!   ETag, then `PATCH` under `If-Match`; follow NetSuite's asynchronous job).
//! - [`Protocol::poll_defaults`]: where a page's records and next page are when the
//!   poll trigger does not say.
//! - [`Protocol::credential_header`] and [`Protocol::credentials_refused`]: where the
//!   access token goes (Amazon's `x-amz-access-token`, Walmart's `WM_SEC.ACCESS_TOKEN`)
//!   and which answers mean it was refused (Amazon: 403 as well as 401).
//! - [`Protocol::pace`]: waits for the token of the operation a request belongs to
//!   (per-operation buckets, `spec.limits.operations`, with defaults per type).
//! - [`decorate_token_request`]: headers of the token request (Walmart's `WM_*`).

pub mod amazon_sp;
mod dynamics365;
mod netsuite;
mod odata;
mod sap_odata;
pub mod walmart;

#[cfg(test)]
mod tests;

use reqwest::{
    Method, StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use crate::{
    protocol::{Answer, QuotaSignal, Verdict},
    queue::DeliveryItem,
    quota::operations::{Metered, OperationQuotas},
    spec::{ConnectorSpec, ConnectorType, Operation, Pagination},
};

use super::{ConnectorClient, InvalidConnector};

mod bigcommerce;
mod shopify;

/// What a type reads from a webhook payload rather than from headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFields {
    /// The dedupe key of the delivery (BigCommerce: the payload's `hash`).
    pub delivery_id: Option<String>,
    /// The topic (BigCommerce: the payload's `scope`).
    pub topic: Option<String>,
}

/// What the type of the Connector that sent a webhook reads from its payload; the
/// signature scheme's headers give the rest.
pub fn webhook_fields(kind: ConnectorType, body: &[u8]) -> WebhookFields {
    match kind {
        ConnectorType::BigCommerce => bigcommerce::webhook_fields(body),
        _ => WebhookFields::default(),
    }
}

/// The header `auth.token` is sent in for a Connector type, if the type has one.
pub fn token_header(kind: ConnectorType) -> Option<&'static str> {
    match kind {
        ConnectorType::Shopify => Some(shopify::TOKEN_HEADER),
        ConnectorType::BigCommerce => Some(bigcommerce::TOKEN_HEADER),
        _ => None,
    }
}

/// One Connector's protocol: its type, and the per-type state it keeps (session tokens,
/// known ETags).
#[derive(Debug)]
pub struct Protocol {
    kind: ConnectorType,
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
    /// NetSuite SuiteTalk REST.
    NetSuite(netsuite::NetSuite),
    /// Dynamics 365 OData v4.
    Dynamics365(dynamics365::Dynamics365),
    /// SAP S/4HANA OData: the CSRF session.
    SapOdata(sap_odata::SapOdata),
}

/// What a type fills in of a poll trigger that leaves it out.
#[derive(Debug, Clone, Default)]
pub struct PollDefaults {
    /// jq path to a page's records.
    pub records: Option<String>,
    /// How the next page is found.
    pub pagination: Option<Pagination>,
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
        let state = match spec.kind {
            ConnectorType::NetSuite => State::NetSuite(netsuite::NetSuite::new(spec)),
            ConnectorType::Dynamics365 => State::Dynamics365(dynamics365::Dynamics365),
            ConnectorType::SapOdata => State::SapOdata(sap_odata::SapOdata::new(spec)),
            _ => State::Generic,
        };
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
            _ => crate::protocol::refresh_credentials(status),
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
    /// Headers of the session a request must carry (a CSRF token and its cookies),
    /// fetched with `http` from `endpoint` when the protocol keeps a session and has none
    /// yet. `Err` says why the session could not be obtained: nothing is sent, and the
    /// attempt counts as a transient credentials failure.
    pub async fn session(
        &self,
        http: &reqwest::Client,
        endpoint: &str,
        credentials: Option<(HeaderName, HeaderValue)>,
    ) -> Result<HeaderMap, String> {
        match &self.state {
            State::SapOdata(sap) => sap.session(http, endpoint, credentials).await,
            _ => Ok(HeaderMap::new()),
        }
    }

    /// Whether an answer says the session went stale (SAP: `403` with
    /// `X-CSRF-Token: Required`). When it does the session is dropped, and the request is
    /// sent once more with a fresh one.
    pub fn session_expired(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        match &self.state {
            State::SapOdata(sap) => sap.session_expired(status, headers),
            _ => false,
        }
    }

    /// Adjusts a target write to the system's API.
    pub fn write(&self, write: &mut Write, context: WriteContext<'_>) {
        match &self.state {
            State::NetSuite(netsuite) => netsuite.write(write, context),
            State::Dynamics365(_) => dynamics365::write(write),
            State::SapOdata(sap) => sap.write(write, context),
            State::Generic => match self.kind {
                ConnectorType::Shopify => shopify::write(write, context),
                ConnectorType::AmazonSp => amazon_sp::write(write, context),
                ConnectorType::Walmart => walmart::write(write, context),
                _ => {}
            },
        }
    }

    /// Makes the target write when the type needs more than one request for it (read
    /// the ETag, then `PATCH` under `If-Match`; follow an asynchronous job to its
    /// outcome), through `client` (credentials, session, the 401 rule). `None`: the
    /// target sends `write` as it is.
    pub async fn exchange(&self, client: &ConnectorClient, write: &Write, context: WriteContext<'_>) -> Option<Answer> {
        match &self.state {
            State::NetSuite(_) => Some(netsuite::exchange(client, write).await),
            State::Dynamics365(_) => dynamics365::exchange(client, write, context).await,
            State::SapOdata(_) => sap_odata::exchange(client, write, context).await,
            State::Generic => None,
        }
    }

    /// Where a page's records and the next page are, for a poll trigger that leaves
    /// `records` or `pagination` out.
    pub fn poll_defaults(&self) -> PollDefaults {
        match &self.state {
            State::NetSuite(_) => netsuite::poll_defaults(),
            State::Dynamics365(_) => dynamics365::poll_defaults(),
            State::SapOdata(_) => sap_odata::poll_defaults(),
            // Amazon's NextToken, Walmart's nextCursor.
            State::Generic => match self.kind {
                ConnectorType::AmazonSp => {
                    PollDefaults { records: None, pagination: Some(amazon_sp::default_pagination()) }
                }
                ConnectorType::Walmart => {
                    PollDefaults { records: None, pagination: Some(walmart::default_pagination()) }
                }
                _ => PollDefaults::default(),
            },
        }
    }

    /// Adds what an answer says about the quota beyond the generic headers.
    pub fn read_quota(&self, status: StatusCode, headers: &HeaderMap, body: &str, signal: &mut QuotaSignal) {
        match &self.state {
            State::NetSuite(_) => netsuite::read_quota(status, body, signal),
            State::Generic if self.kind == ConnectorType::Shopify => shopify::read_quota(status, body, signal),
            State::Generic if self.kind == ConnectorType::Walmart => walmart::read_quota(status, headers, signal),
            _ => {}
        }
    }

    /// The verdict on an answer when the type reads it differently from the generic rule;
    /// `None` leaves it to [`crate::protocol::classify`].
    pub fn classify(&self, answer: &Answer) -> Option<Verdict> {
        match &self.state {
            State::NetSuite(_) => netsuite::classify(answer),
            State::Dynamics365(_) | State::SapOdata(_) => odata::classify(answer),
            State::Generic => match self.kind {
                ConnectorType::Shopify => shopify::classify(answer),
                ConnectorType::BigCommerce => bigcommerce::classify(answer),
                _ => None,
            },
        }
    }

    /// The verdict on an answer: the type's own reading, else the generic rule.
    pub fn verdict(&self, answer: &Answer) -> Verdict {
        self.classify(answer).unwrap_or_else(|| crate::protocol::classify(answer))
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
