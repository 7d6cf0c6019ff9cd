//! Checks on what a manifest says, beyond its schema: each names the field at fault and
//! what to do. The flow's own resolution is in [`crate::config`].

pub mod connector;
pub mod flow;
pub mod postgres;
