//! Sinks: where a flow target's delivery items are written, an HTTP JSON API reached
//! through its Connector (`http`) or a PostgreSQL table (`postgres`). The delivery
//! worker (`flow::deliver`) sees only [`Sink`]: every kind answers with an [`Answer`]
//! that `protocol::classify` reads, so lanes, retries, dead letters, the stale guard and
//! metrics are the same for all.

mod counters;
mod http;
pub mod postgres;

pub use counters::TargetCounters;
pub use http::HttpTarget;

use std::sync::Arc;

use postgres::PostgresTarget;

use crate::{
    connect::{ConnectorClient, ConnectorHealth},
    protocol::{Answer, Verdict, classify},
    queue::DeliveryItem,
    secrets::Secrets,
};

use entrepot_api::{
    config::FlowConfig,
    resource::{ConnectorLimits, ConnectorType, TargetSpec},
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

/// Where one target's items go.
#[derive(Debug)]
pub enum Sink {
    /// A JSON API.
    Http(HttpTarget),
    /// A PostgreSQL table.
    Postgres(Box<PostgresTarget>),
}

impl Sink {
    /// Builds target `spec` of `flow` for its Connector's kind; `client` is the
    /// Connector's (its health is what the status reports).
    pub fn new(
        flow: &FlowConfig,
        spec: &TargetSpec,
        client: Arc<ConnectorClient>,
        secrets: &Secrets,
    ) -> Result<Self, TargetError> {
        match flow.connector(&spec.connector_ref).kind {
            ConnectorType::Postgres => Ok(Self::Postgres(Box::new(PostgresTarget::new(flow, spec, client, secrets)?))),
            _ => Ok(Self::Http(HttpTarget::new(flow, spec, client)?)),
        }
    }

    /// The target Connector's name (metric label, status).
    pub fn connector(&self) -> &str {
        match self {
            Self::Http(t) => &t.connector,
            Self::Postgres(t) => &t.connector,
        }
    }

    /// What the runner last saw of the target Connector.
    pub fn health(&self) -> &ConnectorHealth {
        match self {
            Self::Http(t) => &t.client().health,
            Self::Postgres(t) => t.health(),
        }
    }

    /// Makes one attempt at writing `item`.
    pub async fn send(&self, item: &DeliveryItem) -> Answer {
        match self {
            Self::Http(t) => t.send(item).await,
            Self::Postgres(t) => t.send(item).await,
        }
    }

    /// The verdict on an answer: the Connector type's reading for an API, else the
    /// generic rule (which reads a database's answer as the writer classified it).
    pub fn verdict(&self, answer: &Answer) -> Verdict {
        match self {
            Self::Http(t) => t.verdict(answer),
            Self::Postgres(_) => classify(answer),
        }
    }

    /// The quota the delivery worker admits items within: the Connector's limits, except
    /// that a database's `concurrency` counts connections, each writing a batch of
    /// rows at a time, so as many rows may be in flight as fill every connection's batch.
    pub fn limits(&self, limits: Option<&ConnectorLimits>) -> Option<ConnectorLimits> {
        match self {
            Self::Http(_) => limits.cloned(),
            Self::Postgres(t) => {
                let mut limits = limits.cloned().unwrap_or_default();
                limits.concurrency = Some(t.rows_in_flight());
                Some(limits)
            }
        }
    }
}
