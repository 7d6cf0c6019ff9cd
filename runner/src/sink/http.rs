//! An HTTP target: a JSON API reached through its Connector (endpoint, auth,
//! idempotency header); the Connector's type may reshape the write.

use std::sync::Arc;

use reqwest::{
    Method,
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};

use tracing::debug;

use super::TargetError;
use crate::{
    connect::ConnectorClient,
    protocol::{Answer, Verdict, Write, WriteContext, urlencode},
    queue::DeliveryItem,
};
use entrepot_api::{
    config::FlowConfig,
    resource::{Operation, TargetSpec},
};

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
    /// `graphql.mutation`: records go out as its variables.
    graphql: Option<String>,
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
            method: match (spec.operation, &spec.graphql) {
                (_, Some(_)) | (Operation::Create, None) => Method::POST,
                (Operation::Upsert, None) => Method::PUT,
            },
            // A GraphQL endpoint takes every mutation at one URL.
            operation: if spec.graphql.is_some() { Operation::Create } else { spec.operation },
            idempotency_header,
            graphql: spec.graphql.as_ref().map(|g| g.mutation.clone()),
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
    /// `protocol::refresh_credentials`). The Connector's type may reshape the write
    /// (`protocol::System::write`).
    pub async fn send(&self, item: &DeliveryItem) -> Answer {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(key) = HeaderValue::from_str(&item.idempotency_key) {
            headers.insert(self.idempotency_header.clone(), key);
        }
        if let Ok(id) = HeaderValue::from_str(&item.envelope.correlation_id) {
            headers.insert("x-correlation-id", id);
        }
        // This attempt's span (`deliver`), so the target's own spans join the record's trace.
        let trace = crate::telemetry::traceparent(&tracing::Span::current(), item.envelope.trace_parent.as_deref());
        if let Some(trace) = trace.and_then(|t| HeaderValue::from_str(&t).ok()) {
            headers.insert(crate::telemetry::TRACEPARENT, trace);
        }
        let body = match &self.graphql {
            Some(mutation) => graphql_body(mutation, &item.body),
            None => item.body.clone(),
        };
        let mut write = Write { method: self.method.clone(), url: self.url_for(item), headers, body };
        let system = self.client.system();
        let context = WriteContext {
            operation: self.operation,
            base_url: &self.url,
            idempotency_key: &item.idempotency_key,
            ordering_key: item.ordering_key.as_deref(),
            received_at_ms: item.envelope.received_at_ms,
            replayed_at_ms: item.envelope.replay.as_deref().map(|r| r.replayed_at_ms),
        };
        system.write(&mut write, context);
        if let Some(answer) = system.exchange(self.client.as_ref(), &write, context).await {
            debug!(answer = %answer.summary(), "target answered");
            return answer;
        }
        let sent = self
            .client
            .send(|http| {
                http.request(write.method.clone(), &write.url).headers(write.headers.clone()).body(write.body.clone())
            })
            .await;
        let answer = sent.into_answer(system).await;
        // Inside the `deliver` span, so this line carries the record's correlation id.
        debug!(answer = %answer.summary(), "target answered");
        answer
    }

    /// The verdict on an answer: the Connector type's reading, else the generic rule.
    pub fn verdict(&self, answer: &Answer) -> Verdict {
        self.client.system().verdict(answer)
    }
}

/// `{"query": mutation, "variables": record}`. The record is the mapped JSON, which is
/// spliced in as is rather than parsed again.
fn graphql_body(mutation: &str, record: &[u8]) -> Vec<u8> {
    let query = serde_json::to_string(mutation).unwrap_or_else(|_| "\"\"".into());
    let mut body = Vec::with_capacity(record.len() + query.len() + 32);
    body.extend_from_slice(b"{\"query\":");
    body.extend_from_slice(query.as_bytes());
    body.extend_from_slice(b",\"variables\":");
    body.extend_from_slice(record);
    body.push(b'}');
    body
}
