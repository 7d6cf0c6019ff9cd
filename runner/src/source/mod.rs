//! Sources: where records come from. For now, signed webhooks.

pub mod signature;
pub mod webhook;
