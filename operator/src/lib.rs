//! Entrepot's operator: the CRDs of Entrepot's four resources and the controllers that
//! turn them into runner workloads, reporting health back into each resource's status.
//!
//! Each controller reconciles in five steps (dereference, validate, build, apply,
//! status); validate and build are pure functions, tested without an API server.

#![warn(missing_docs)]

pub mod cli;
pub mod connector;
pub mod controllers;
pub mod error;
pub mod events;
pub mod failures;
pub mod kube_io;
pub mod leader;
pub mod mapping;
pub mod metrics;
pub mod nats_io;
pub mod observer;
pub mod reconcile_schedule;
pub mod resources;
pub mod server;
pub mod sync_flow;

#[cfg(test)]
mod test_support;

pub use error::Error;

/// The runner image used when neither `ENTREPOT_RUNNER_IMAGE` nor a flow's
/// `spec.runner.image` names one: the runner released with this operator.
pub fn default_runner_image() -> String {
    format!("ghcr.io/entrepot-io/entrepot:{}", env!("CARGO_PKG_VERSION"))
}
