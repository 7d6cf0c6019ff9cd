//! Entrepot's runner: the data plane. It moves retail records from sources (webhooks,
//! polled APIs)
//! through a durable on-disk queue and jq mappings to targets (HTTP APIs, PostgreSQL), with
//! deduplication, retries, a dead-letter queue and metrics. It knows nothing of
//! Kubernetes: the operator renders its configuration, and local mode reads the same
//! manifests from a directory.

pub mod availability;
pub mod canonical;
pub mod cli;
pub mod config;
pub mod connect;
pub mod flow;
pub mod manifest;
pub mod mapping;
pub mod metrics;
pub mod postgres;
pub mod queue;
pub mod reconcile;
pub mod runtime;
pub mod secrets;
pub mod source;
pub mod spec;
pub mod status;
pub mod supervisor;
pub mod target;

#[cfg(test)]
mod test_support;
