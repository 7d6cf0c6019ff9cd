//! The `postgres` target: each record (the target Mapping's output, a JSON object) is
//! written as a row of `spec.targets[].table`, upserted by its key columns, in one
//! transaction per batch (see `writer`). The SQL is in `table`.

mod table;
mod writer;

use std::sync::{Arc, OnceLock};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

pub use table::Table;

use super::TargetError;
use crate::{
    connect::{ConnectorClient, ConnectorHealth},
    postgres::Database,
    protocol::{Answer, ErrorCategory, Verdict, json_kind},
    queue::DeliveryItem,
    secrets::Secrets,
};
use entrepot_api::{config::FlowConfig, resource::TargetSpec};

/// Connections a target opens when the Connector gives no `limits.concurrency`.
const DEFAULT_CONNECTIONS: u32 = 4;

/// One `postgres` target of a flow.
#[derive(Debug)]
pub struct PostgresTarget {
    /// The target Connector's name (metric label, status).
    pub connector: String,
    client: Arc<ConnectorClient>,
    database: Database,
    table: Arc<Table>,
    connections: usize,
    /// The writers' queue, started at the first record (a runtime is running by then).
    jobs: OnceLock<mpsc::Sender<writer::Job>>,
}

impl PostgresTarget {
    /// Builds target `spec` of `flow`. `client` is the Connector's, kept for its health.
    pub fn new(
        flow: &FlowConfig,
        spec: &TargetSpec,
        client: Arc<ConnectorClient>,
        secrets: &Secrets,
    ) -> Result<Self, TargetError> {
        let connector = flow.connector(&spec.connector_ref);
        let table = spec.table.as_ref().ok_or_else(|| {
            TargetError::Postgres(format!("Connector {} is a database: set table (name and key)", spec.connector_ref))
        })?;
        let table = Table::new(table, spec.operation)
            .map_err(|(field, m)| TargetError::Postgres(format!("table.{field}: {m}")))?;
        let database =
            Database::new(&spec.connector_ref, &flow.namespace, connector, secrets).map_err(TargetError::Postgres)?;
        let connections =
            connector.limits.as_ref().and_then(|l| l.concurrency).unwrap_or(DEFAULT_CONNECTIONS).max(1) as usize;
        Ok(Self {
            connector: spec.connector_ref.clone(),
            client,
            database,
            table: Arc::new(table),
            connections,
            jobs: OnceLock::new(),
        })
    }

    /// What the runner last saw of the database.
    pub fn health(&self) -> &ConnectorHealth {
        &self.client.health
    }

    /// Records that may be waiting or being written at once: every connection's batch.
    pub fn rows_in_flight(&self) -> u32 {
        (self.connections * writer::BATCH) as u32
    }

    /// Writes `item` with the next batch and returns the database's answer for it.
    pub async fn send(&self, item: &DeliveryItem) -> Answer {
        let reject = |reason: String| Answer::Database(Verdict::Reject { reason, category: ErrorCategory::Rejected });
        let record: Value = match serde_json::from_slice(&item.body) {
            Ok(v) => v,
            Err(e) => return reject(format!("the record is not JSON ({e}); a row is written from a JSON object")),
        };
        let Value::Object(fields) = &record else {
            return reject(format!(
                "the record is {}, not a JSON object: a row is written from an object's fields",
                json_kind(&record)
            ));
        };
        if let Err(reason) = self.table.check_key(fields) {
            return reject(reason);
        }
        let jobs = self.jobs.get_or_init(|| writer::start(self.database.clone(), self.table.clone(), self.connections));
        let (reply, answer) = oneshot::channel();
        let job = writer::Job { record: String::from_utf8_lossy(&item.body).into_owned(), reply };
        let stopped = || {
            Answer::Database(Verdict::Retry {
                after: None,
                reason: "the database writer stopped".into(),
                category: ErrorCategory::Server,
            })
        };
        if jobs.send(job).await.is_err() {
            return stopped();
        }
        answer.await.map_or_else(|_| stopped(), Answer::Database)
    }
}
