//! Sources: where records come from: signed webhooks pushed to the runner, and APIs the
//! runner polls.

pub mod poll;
pub mod signature;
pub mod webhook;
