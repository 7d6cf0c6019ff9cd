//! Sources: where records come from: signed webhooks pushed to the runner, APIs the
//! runner polls, and files dropped in a directory.

pub mod file;
pub mod poll;
pub mod signature;
pub mod webhook;
