//! Targets: where delivery items go: an HTTP JSON API reached through its Connector
//! (endpoint, auth, idempotency header), or a PostgreSQL table (`postgres`); `sink`
//! puts both behind one face.

pub mod postgres;
pub mod quota;
pub mod retry;
mod sink;

pub use sink::Sink;

use std::sync::Arc;

use reqwest::{
    Method,
    header::{CONTENT_TYPE, HeaderName},
};

use tracing::debug;

pub use retry::{Answer, ErrorCategory, Verdict, backoff, classify};

use crate::{
    config::FlowConfig,
    connect::ConnectorClient,
    queue::DeliveryItem,
    spec::{Operation, TargetSpec},
};

/// A target cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A header name from the manifest is not valid HTTP.
    #[error("Connector {connector}: {field} is not a valid HTTP header name")]
    Header {
        /// The Connector.
        connector: String,
        /// The field.
        field: String,
    },
    /// A `postgres` target's table or database cannot be used as written.
    #[error("{0}")]
    Postgres(String),
}

/// One HTTP target of a flow, ready to send.
#[derive(Debug)]
pub struct HttpTarget {
    /// The target Connector's name (metric label, status).
    pub connector: String,
    client: Arc<ConnectorClient>,
    method: Method,
    url: String,
    operation: Operation,
    idempotency_header: HeaderName,
}

impl HttpTarget {
    /// Builds target `spec` of `flow`, sending through its Connector's `client`.
    pub fn new(flow: &FlowConfig, spec: &TargetSpec, client: Arc<ConnectorClient>) -> Result<Self, TargetError> {
        let connector = flow.connector(&spec.connector_ref);
        let idempotency_header = HeaderName::from_bytes(connector.idempotency_header().as_bytes()).map_err(|_| {
            TargetError::Header { connector: spec.connector_ref.clone(), field: "spec.idempotencyHeader".into() }
        })?;
        Ok(Self {
            connector: spec.connector_ref.clone(),
            url: format!("{}{}", client.endpoint(), spec.path()),
            client,
            method: match spec.operation {
                Operation::Create => Method::POST,
                Operation::Upsert => Method::PUT,
            },
            operation: spec.operation,
            idempotency_header,
        })
    }

    /// The Connector's client (its health is reported in the status).
    pub fn client(&self) -> &ConnectorClient {
        &self.client
    }

    /// The URL an item is sent to: upserts go to `<path>/<ordering key>`.
    fn url_for(&self, item: &DeliveryItem) -> String {
        match (self.operation, &item.ordering_key) {
            (Operation::Upsert, Some(key)) => format!("{}/{}", self.url, urlencode(key)),
            _ => self.url.clone(),
        }
    }

    /// Makes one attempt (two requests when the first gets a 401: see
    /// `retry::refresh_credentials`).
    pub async fn send(&self, item: &DeliveryItem) -> Answer {
        let url = self.url_for(item);
        let sent = self
            .client
            .send(|http| {
                http.request(self.method.clone(), &url)
                    .header(CONTENT_TYPE, "application/json")
                    .header(&self.idempotency_header, item.idempotency_key.as_str())
                    .header("X-Correlation-Id", item.envelope.correlation_id.as_str())
                    .body(item.body.clone())
            })
            .await;
        let answer = sent.into_answer().await;
        // Inside the `deliver` span, so this line carries the record's correlation id.
        debug!(answer = %answer.summary(), "target answered");
        answer
    }
}

fn urlencode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
