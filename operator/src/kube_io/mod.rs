//! Every controller's I/O with the Kubernetes API, apart from the watches kube-runtime
//! runs: reading the objects a reconcile dereferences, server-side applying what it
//! built, removing what it no longer renders, reading and writing the status, and
//! adding and removing the operator's finalizers.
//!
//! Kept apart from the controllers so that their validate and build steps stay pure,
//! and so that no controller imports another to reach the API.

pub mod finalizers;
pub mod objects;
pub mod status;
