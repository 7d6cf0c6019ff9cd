//! Simulated retail systems for Entrepot's tests and demo.
//!
//! - [`erp`]: a NetSuite-like sales-order API served over HTTP, with idempotency keys,
//!   business rejections, a concurrency limit and outage knobs.
//! - [`storefront`]: a Shopify-like store that makes realistic orders from a seed and
//!   delivers them as signed webhooks, with Shopify's timeouts, retries and duplicates.
//!
//! Both speak real HTTP, so the runner is tested through the same code paths it uses in
//! production; both run in-process (for `entrepot demo` and tests) or from the
//! `entrepot-sim` binary.
#![warn(missing_docs)]

pub mod erp;
pub mod storefront;
