//! The kinds of failure: a small fixed set, used as a metric label, in the runner's
//! status per Connector and in dead letters. Defined in the API crate, which the operator
//! reads the runner's status with.

pub use entrepot_api::ErrorCategory;
