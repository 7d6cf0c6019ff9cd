//! Entrepot's API: what the operator and the runner agree on, and nothing that runs.
//!
//! - [`resource`]: the specs of Connector, Mapping, SyncFlow and ReconcileSchedule, whose
//!   field docs are the `kubectl explain` text;
//! - [`config`] and [`rules`]: how a flow is resolved with what it references, and the
//!   checks that refuse a manifest that cannot run, with messages that name the field;
//! - [`canonical`]: the canonical retail model and its JSON Schemas;
//! - [`mapping`]: jq Mappings, compiled and tested against their examples;
//! - [`status`], [`reconcile_summary`] and [`ErrorCategory`]: what the runner reports and
//!   the operator reads.
//!
//! It has no I/O and no async runtime, so the operator links it without the data plane.
//! It does install the global allocator of every binary that links it: one that counts
//! what each thread holds, for the memory budget of jq runs ([`mapping::CountingAllocator`]).

#![warn(missing_docs)]

pub mod canonical;
mod category;
pub mod config;
pub mod jetstream;
pub mod mapping;
pub mod reconcile_check;
pub mod reconcile_summary;
pub mod resource;
pub mod rules;
pub mod status;

pub use category::ErrorCategory;
