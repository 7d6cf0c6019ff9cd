//! Targets: where delivery items go. For now one kind: an HTTP JSON API reached through
//! its Connector (endpoint, auth, idempotency header).

pub mod quota;
pub mod retry;

use std::time::Duration;

use reqwest::{
    Method,
    header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER},
};

pub use retry::{Answer, Verdict, backoff, classify};

use crate::{
    config::FlowConfig,
    queue::DeliveryItem,
    secrets::{MissingSecret, Secrets},
    spec::{ConnectorAuth, Operation, TargetSpec},
};

/// A target cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A Secret it needs is missing.
    #[error(transparent)]
    Secret(#[from] MissingSecret),
    /// A header name or value from the manifest is not valid HTTP.
    #[error("Connector {connector}: {field} is not a valid HTTP header {what}")]
    Header {
        /// The Connector.
        connector: String,
        /// The field.
        field: String,
        /// `name` or `value`.
        what: &'static str,
    },
    /// The HTTP client cannot be built (TLS roots).
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// One HTTP target of a flow, ready to send.
pub struct HttpTarget {
    /// The target Connector's name (metric label, status).
    pub connector: String,
    client: reqwest::Client,
    method: Method,
    url: String,
    operation: Operation,
    idempotency_header: HeaderName,
    auth: Option<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the auth header's value.
        f.debug_struct("HttpTarget").field("connector", &self.connector).field("url", &self.url).finish_non_exhaustive()
    }
}

/// Per-attempt timeout: long enough for a slow ERP, short enough that a hung connection
/// is retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpTarget {
    /// Builds target `spec` of `flow`, resolving its Connector's Secrets.
    pub fn new(flow: &FlowConfig, spec: &TargetSpec, secrets: &Secrets) -> Result<Self, TargetError> {
        let connector = flow.connector(&spec.connector_ref);
        let header_err = |field: &str, what| TargetError::Header {
            connector: spec.connector_ref.clone(),
            field: field.into(),
            what,
        };
        let auth = match &connector.auth {
            None => None,
            Some(ConnectorAuth::Bearer { secret_ref }) => {
                let token = secrets.get(&flow.namespace, secret_ref)?;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| header_err("spec.auth.bearer.secretRef", "value"))?;
                value.set_sensitive(true);
                Some((reqwest::header::AUTHORIZATION, value))
            }
            Some(ConnectorAuth::Header(h)) => {
                let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| header_err("spec.auth.header.name", "name"))?;
                let mut value = HeaderValue::from_str(secrets.get(&flow.namespace, &h.secret_ref)?.trim())
                    .map_err(|_| header_err("spec.auth.header.secretRef", "value"))?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        let idempotency_header = HeaderName::from_bytes(connector.idempotency_header().as_bytes())
            .map_err(|_| header_err("spec.idempotencyHeader", "name"))?;
        let endpoint = connector.endpoint.as_deref().unwrap_or_default().trim_end_matches('/');
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("entrepot/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            connector: spec.connector_ref.clone(),
            client,
            method: match spec.operation {
                Operation::Create => Method::POST,
                Operation::Upsert => Method::PUT,
            },
            url: format!("{endpoint}{}", spec.path()),
            operation: spec.operation,
            idempotency_header,
            auth,
        })
    }

    /// The URL an item is sent to: upserts go to `<path>/<ordering key>`.
    fn url_for(&self, item: &DeliveryItem) -> String {
        match (self.operation, &item.ordering_key) {
            (Operation::Upsert, Some(key)) => format!("{}/{}", self.url, urlencode(key)),
            _ => self.url.clone(),
        }
    }

    /// Makes one attempt.
    pub async fn send(&self, item: &DeliveryItem) -> Answer {
        let mut request = self
            .client
            .request(self.method.clone(), self.url_for(item))
            .header(CONTENT_TYPE, "application/json")
            .header(&self.idempotency_header, item.idempotency_key.as_str())
            .header("X-Correlation-Id", item.envelope.correlation_id.as_str())
            .body(item.body.clone());
        if let Some((name, value)) = &self.auth {
            request = request.header(name, value.clone());
        }
        match request.send().await {
            Err(e) => Answer::Transport(describe_transport(&e)),
            Ok(response) => {
                let status = response.status();
                let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(String::from);
                let quota =
                    quota::QuotaSignal::read(status, response.headers(), retry_after.as_deref().and_then(retry::parse_retry_after));
                let body = match response.bytes().await {
                    Ok(bytes) => String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned(),
                    Err(e) => format!("<body unreadable: {}>", describe_transport(&e)),
                };
                Answer::Response { status, retry_after, body, quota }
            }
        }
    }
}

fn describe_transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect failed"
    } else {
        "transport error"
    };
    // The error's source chain says why (refused, reset); the URL is ours, not secret.
    let mut message = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

fn urlencode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
