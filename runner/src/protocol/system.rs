//! What a Connector's `type` fixes about its system's protocol, so that a manifest says
//! only the endpoint, the credentials and the limits: one [`System`] implementation per
//! type, each in its own file. Every hook has the generic (`rest`) behaviour as its
//! default, so a type only overrides what its system does differently:
//!
//! - [`System::decorate`]: headers every request to the system carries (Walmart's
//!   `WM_QOS.CORRELATION_ID`, say); [`System::decorate_token_request`] for the token
//!   request.
//! - [`System::session`] and [`System::session_expired`]: state fetched before a request
//!   and reused across requests (SAP's CSRF token), fetched again when the system says
//!   it went stale; the request is then sent once more within the same attempt.
//! - [`System::write`]: how a target write goes out: method, URL, headers (NetSuite's
//!   `eid:` upserts, idempotency headers, `If-Match`).
//! - [`System::read_quota`]: what an answer says about the quota beyond the headers
//!   every type reads ([`QuotaSignal::read`]).
//! - [`System::classify`]: answers the type reads better than the generic status rule
//!   ([`super::classify`]): NetSuite's concurrency errors, GraphQL `THROTTLED` inside a
//!   200.
//! - [`System::exchange`]: a target write that takes more than one request (read the
//!   ETag, then `PATCH` under `If-Match`; follow NetSuite's asynchronous job), sent
//!   through a [`Channel`].
//! - [`System::poll_defaults`]: where a page's records and next page are when the poll
//!   trigger does not say.
//! - [`System::credential_header`] and [`System::credentials_refused`]: where the access
//!   token goes (Amazon's `x-amz-access-token`, Walmart's `WM_SEC.ACCESS_TOKEN`) and which
//!   answers mean it was refused (Amazon: 403 as well as 401).
//! - [`System::default_operations`]: per-operation buckets the type meters by default.

use futures::future::BoxFuture;
use reqwest::{
    Method, StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use super::{
    Answer, QuotaSignal, Verdict, amazon_sp::AmazonSp, bigcommerce::BigCommerce, classify, dynamics365::Dynamics365,
    netsuite::NetSuite, refresh_credentials, sap_odata::SapOdata, shopify::Shopify, walmart::Walmart,
};
use entrepot_api::resource::{ConnectorSpec, ConnectorType, Operation, OperationLimit, Pagination};

/// One external system's protocol. [`system`] gives the type's shared instance;
/// [`System::for_connector`] one Connector's own, with the state it keeps (a session, its
/// idempotency header).
pub trait System: Send + Sync + std::fmt::Debug {
    /// This system's instance for one Connector, or why its spec cannot be used with the
    /// type.
    fn for_connector(&self, spec: &ConnectorSpec) -> Result<Box<dyn System>, Unfit>;

    /// What the type reads from a webhook payload rather than from headers.
    fn webhook_fields(&self, _body: &[u8]) -> WebhookFields {
        WebhookFields::default()
    }

    /// Headers added to every request sent to the system, the retry of a refused one
    /// included.
    fn decorate(&self, _headers: &mut HeaderMap) {}

    /// Headers the token request carries (Walmart's token endpoint wants its `WM_*`
    /// headers too).
    fn decorate_token_request(&self, headers: &mut HeaderMap) {
        self.decorate(headers);
    }

    /// Where the credentials header goes: the generic `Authorization: Bearer` may become
    /// the header the system reads the token from.
    fn credential_header(&self, name: HeaderName, value: HeaderValue) -> (HeaderName, HeaderValue) {
        (name, value)
    }

    /// Whether an answer says the credentials were refused, so fresh ones are worth one
    /// more try (generic: 401).
    fn credentials_refused(&self, status: StatusCode) -> bool {
        refresh_credentials(status)
    }

    /// Operations metered by default, each with its own bucket (`spec.limits.operations`
    /// adds to and overrides them).
    fn default_operations(&self) -> Vec<OperationLimit> {
        Vec::new()
    }

    /// Headers of the session a request must carry (a CSRF token and its cookies),
    /// fetched with `http` from `endpoint` when the protocol keeps a session and has none
    /// yet. `Err` says why the session could not be obtained: nothing is sent, and the
    /// attempt counts as a transient credentials failure.
    fn session<'a>(
        &'a self,
        _http: &'a reqwest::Client,
        _endpoint: &'a str,
        _credentials: Option<(HeaderName, HeaderValue)>,
    ) -> BoxFuture<'a, Result<HeaderMap, String>> {
        Box::pin(std::future::ready(Ok(HeaderMap::new())))
    }

    /// Whether an answer says the session went stale (SAP: `403` with
    /// `X-CSRF-Token: Required`). When it does the session is dropped, and the request is
    /// sent once more with a fresh one.
    fn session_expired(&self, _status: StatusCode, _headers: &HeaderMap) -> bool {
        false
    }

    /// Adjusts a target write to the system's API.
    fn write(&self, _write: &mut Write, _context: WriteContext<'_>) {}

    /// Makes the target write when the type needs more than one request for it, through
    /// `channel` (credentials, session, the 401 rule). `None`: the target sends `write`
    /// as it is.
    fn exchange<'a>(
        &'a self,
        _channel: &'a dyn Channel,
        _write: &'a Write,
        _context: WriteContext<'a>,
    ) -> BoxFuture<'a, Option<Answer>> {
        Box::pin(std::future::ready(None))
    }

    /// Where a page's records and the next page are, for a poll trigger that leaves
    /// `records` or `pagination` out.
    fn poll_defaults(&self) -> PollDefaults {
        PollDefaults::default()
    }

    /// Adds what an answer says about the quota beyond the generic headers.
    fn read_quota(&self, _status: StatusCode, _headers: &HeaderMap, _body: &str, _signal: &mut QuotaSignal) {}

    /// The verdict on an answer when the type reads it differently from the generic
    /// rule; `None` leaves it to [`super::classify`].
    fn classify(&self, _answer: &Answer) -> Option<Verdict> {
        None
    }

    /// The verdict on an answer: the type's own reading, else the generic rule.
    fn verdict(&self, answer: &Answer) -> Verdict {
        self.classify(answer).unwrap_or_else(|| classify(answer))
    }
}

/// The shared instance of a Connector type's protocol: the one place a type is mapped to
/// its implementation.
pub fn system(kind: ConnectorType) -> &'static dyn System {
    static NETSUITE: NetSuite = NetSuite::shared();
    static SAP_ODATA: SapOdata = SapOdata::shared();
    match kind {
        ConnectorType::Shopify => &Shopify,
        ConnectorType::BigCommerce => &BigCommerce,
        ConnectorType::NetSuite => &NETSUITE,
        ConnectorType::Dynamics365 => &Dynamics365,
        ConnectorType::SapOdata => &SAP_ODATA,
        ConnectorType::AmazonSp => &AmazonSp,
        ConnectorType::Walmart => &Walmart,
        ConnectorType::Rest | ConnectorType::Postgres => &Generic,
    }
}

/// The generic behaviour (`rest`; `postgres` Connectors send no HTTP).
#[derive(Clone, Copy, Debug)]
pub struct Generic;

impl System for Generic {
    fn for_connector(&self, _spec: &ConnectorSpec) -> Result<Box<dyn System>, Unfit> {
        Ok(Box::new(*self))
    }
}

/// A Connector's spec cannot be used with its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Unfit {
    /// The field at fault (`spec.auth`).
    pub field: &'static str,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// What a type reads from a webhook payload rather than from headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFields {
    /// The dedupe key of the delivery (BigCommerce: the payload's `hash`).
    pub delivery_id: Option<String>,
    /// The topic (BigCommerce: the payload's `scope`).
    pub topic: Option<String>,
}

/// What a type fills in of a poll trigger that leaves it out.
#[derive(Debug, Clone, Default)]
pub struct PollDefaults {
    /// jq path to a page's records.
    pub records: Option<String>,
    /// How the next page is found.
    pub pagination: Option<Pagination>,
}

/// A target write about to be sent. [`System::write`] may change any part of it.
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

/// What [`System::write`] is told about the write and the record it carries.
#[derive(Debug, Clone, Copy)]
pub struct WriteContext<'a> {
    /// The target's `operation`.
    pub operation: Operation,
    /// The target's URL before any key is appended: endpoint + path.
    pub base_url: &'a str,
    /// The record's idempotency key.
    pub idempotency_key: &'a str,
    /// The record's ordering key (the key an upsert addresses).
    pub ordering_key: Option<&'a str>,
    /// When the record was first received (Unix ms).
    pub received_at_ms: i64,
    /// When the record was last replayed from the dead letters, if it was (Unix ms).
    pub replayed_at_ms: Option<i64>,
}

/// What one request through a [`Channel`] gave: the answer, its `ETag` and its body as
/// JSON when it is.
#[derive(Debug)]
pub struct Reply {
    /// The answer.
    pub answer: Answer,
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The body, parsed, when it is JSON.
    pub json: Option<serde_json::Value>,
}

impl Reply {
    /// The status, when the system answered.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.answer {
            Answer::Response { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How a protocol's [`System::exchange`] sends its requests: through the Connector's
/// client, with its credentials, session and the 401 rule (`connect::ConnectorClient`).
pub trait Channel: Send + Sync {
    /// The Connector's name, for log lines.
    fn name(&self) -> &str;
    /// `spec.endpoint`, without a trailing slash.
    fn endpoint(&self) -> &str;
    /// Sends one request (with `write`'s headers and body, if given) and reads the
    /// answer.
    fn request<'a>(&'a self, method: Method, url: &'a str, write: Option<&'a Write>) -> BoxFuture<'a, Reply>;
}

/// `Authorization: Bearer <token>` moved to `header` as the bare token (Amazon's
/// `x-amz-access-token`, Walmart's `WM_SEC.ACCESS_TOKEN`); other credentials unchanged.
pub(super) fn token_in(header: HeaderName, name: HeaderName, value: HeaderValue) -> (HeaderName, HeaderValue) {
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

/// The generic idempotency header of a spec that does not name one: a type with its own
/// key header drops it.
pub(super) fn generic_idempotency_header(spec: &ConnectorSpec) -> Option<HeaderName> {
    match spec.idempotency_header {
        Some(_) => None,
        None => HeaderName::from_bytes(spec.idempotency_header().as_bytes()).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use entrepot_api::resource::{ClientAuth, OAuth2ClientCredentials};

    #[test]
    fn each_type_maps_to_its_own_protocol_and_the_rest_to_the_generic_one() {
        assert_eq!(
            system(ConnectorType::BigCommerce).webhook_fields(br#"{"hash":"h"}"#).delivery_id.as_deref(),
            Some("hash:h")
        );
        assert_eq!(system(ConnectorType::Rest).webhook_fields(br#"{"hash":"h"}"#), WebhookFields::default());
        assert!(system(ConnectorType::AmazonSp).credentials_refused(StatusCode::FORBIDDEN));
        assert!(!system(ConnectorType::Rest).credentials_refused(StatusCode::FORBIDDEN));
        assert!(system(ConnectorType::Rest).credentials_refused(StatusCode::UNAUTHORIZED));
        assert!(system(ConnectorType::NetSuite).poll_defaults().records.is_some());
        assert!(system(ConnectorType::Postgres).poll_defaults().records.is_none());
        assert!(!system(ConnectorType::AmazonSp).default_operations().is_empty());
        let mut headers = HeaderMap::new();
        system(ConnectorType::Walmart).decorate_token_request(&mut headers);
        assert!(headers.contains_key("wm_svc.name"), "{headers:?}");
    }

    #[test]
    fn a_connector_gets_its_own_instance_or_is_told_what_its_spec_lacks() {
        let unfit = system(ConnectorType::AmazonSp).for_connector(&ConnectorSpec::default()).unwrap_err();
        assert_eq!(unfit.field, "spec.auth");
        assert!(unfit.message.contains("oauth2ClientCredentials"), "{unfit}");
        let spec = ConnectorSpec {
            kind: ConnectorType::AmazonSp,
            auth: Some(entrepot_api::resource::ConnectorAuth::OAuth2ClientCredentials(OAuth2ClientCredentials {
                client_auth: ClientAuth::Body,
                ..serde_saphyr::from_str(
                    "{tokenUrl: 'https://api.amazon.com/auth/o2/token', clientIdSecretRef: {name: a, key: id}, clientSecretSecretRef: {name: a, key: secret}, refreshTokenSecretRef: {name: a, key: refresh}}",
                )
                .unwrap()
            })),
            ..Default::default()
        };
        assert!(system(ConnectorType::AmazonSp).for_connector(&spec).is_ok());
        let netsuite = system(ConnectorType::NetSuite).for_connector(&ConnectorSpec::default()).unwrap();
        assert_eq!(netsuite.verdict(&Answer::Transport("reset".into())), classify(&Answer::Transport("reset".into())));
    }
}
