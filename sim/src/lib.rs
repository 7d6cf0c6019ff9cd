//! Simulated retail systems for Entrepot's tests and demo.
//!
//! - [`erp`]: a NetSuite-like sales-order API served over HTTP, with idempotency keys,
//!   business rejections, a concurrency limit and outage knobs.
//! - [`storefront`]: a Shopify-like store that makes realistic orders from a seed and
//!   delivers them as signed webhooks, with Shopify's timeouts, retries and duplicates.
//! - [`marketplace`]: an Amazon SP-API-like marketplace (LWA tokens, per-operation token
//!   buckets, `NextToken` pages, listings patches and feeds, `ORDER_CHANGE` notifications)
//!   and a small Walmart flavour ([`marketplace::walmart`]).
//! - [`wms`]: a warehouse management system, the source of truth for stock, publishing
//!   inventory movements as signed webhooks and a pollable, versioned snapshot.
//! - [`delivery`]: pushed events with seeded duplicates, reordering, drops and delay.
//! - [`nats`]: not a simulator but the real thing: upstream `nats-server` with JetStream,
//!   one server or a cluster, started for a test (the JetStream queue's tests).
//!
//! The simulators all speak real HTTP, so the runner is tested through the same code
//! paths it uses in production; all run in-process (for `entrepot-demo` and tests) or
//! from the `entrepot-sim` binary.
#![warn(missing_docs)]

pub mod cli;
pub mod delivery;
pub mod erp;
pub mod marketplace;
pub mod nats;
mod server;
pub mod storefront;
pub mod wms;

#[cfg(test)]
mod test_support;
