//! Entrepot's runner: the data plane. It moves retail records from sources (webhooks,
//! polled APIs)
//! through a durable on-disk queue and jq mappings to targets (HTTP APIs, PostgreSQL), with
//! deduplication, retries, a dead-letter queue and metrics. It knows nothing of
//! Kubernetes: the operator renders its configuration, and local mode reads the same
//! manifests from a directory.

#![warn(missing_docs)]

pub mod attempt;
pub mod availability;
pub mod cli;
pub mod connect;
pub mod flow;
pub mod manifest;
pub mod metrics;
pub mod postgres;
pub mod protocol;
pub mod queue;
pub mod quota;
pub mod reconcile;
pub mod runtime;
pub mod secrets;
pub mod sink;
pub mod source;
pub mod supervisor;
pub mod telemetry;

#[cfg(test)]
mod test_support;
