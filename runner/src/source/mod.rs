//! Sources: where records come from: signed webhooks, and files dropped in a directory.

pub mod file;
pub mod signature;
pub mod webhook;
