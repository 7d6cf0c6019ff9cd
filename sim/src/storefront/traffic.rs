//! A stream of orders at a steady rate, and what became of each.

use std::time::Duration;

use rand::RngExt;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::webhook::Topic;
use super::{Storefront, StorefrontError};

/// What a [`Storefront::run`] sent and what was acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorefrontReport {
    /// Orders created and delivered.
    pub orders_sent: usize,
    /// Orders whose delivery was acknowledged with a 2xx in the end.
    pub acknowledged: usize,
    /// Deliveries sent a second time with the same webhook id.
    pub duplicate_deliveries: usize,
    /// HTTP requests made in total, retries and duplicates included.
    pub attempts: u64,
    /// One entry per order, in the order they were created.
    pub orders: Vec<OrderReport>,
}

impl StorefrontReport {
    /// The orders that were never acknowledged.
    pub fn unacknowledged(&self) -> impl Iterator<Item = &OrderReport> {
        self.orders.iter().filter(|order| !order.acknowledged)
    }
}

/// What became of one order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderReport {
    /// Shopify order id.
    pub order_id: u64,
    /// Shopify order name, e.g. `#1042`.
    pub name: String,
    /// The delivery's `X-Shopify-Webhook-Id`.
    pub webhook_id: String,
    /// The order's SKUs.
    pub skus: Vec<String>,
    /// `total_price` in minor units.
    pub total_price_minor: i64,
    /// The order currency.
    pub currency: String,
    /// Whether the delivery was sent twice.
    pub duplicated: bool,
    /// HTTP requests made for this order, retries and duplicate included.
    pub attempts: u32,
    /// Whether a 2xx acknowledged the order (on any of its deliveries).
    pub acknowledged: bool,
    /// The last status received, if any.
    pub final_status: Option<u16>,
    /// The delivered body, byte for byte (to deliver the same revision again).
    #[serde(skip)]
    pub body: axum::body::Bytes,
}

impl Storefront {
    /// Creates `count` orders at `rate_per_sec` and delivers each as an `orders/create`
    /// webhook, with retries, and a second time for a `duplicate_ratio` share of them.
    ///
    /// Deliveries run concurrently, so a slow or failing receiver does not slow the order
    /// rate down (Shopify does not wait for one webhook before sending the next). Returns
    /// when every delivery has been acknowledged or has exhausted its retries.
    pub async fn run(
        &mut self,
        count: usize,
        rate_per_sec: f64,
    ) -> Result<StorefrontReport, StorefrontError> {
        if !(rate_per_sec.is_finite() && rate_per_sec > 0.0) {
            return Err(StorefrontError::InvalidRate(rate_per_sec));
        }
        // Floor at a microsecond: tokio's interval refuses a zero period.
        let period = Duration::from_secs_f64(1.0 / rate_per_sec).max(Duration::from_micros(1));
        let mut ticks = tokio::time::interval(period);
        // Catch up after a stall so the average rate holds, as a burst of shoppers would.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);

        let mut deliveries = JoinSet::new();
        for index in 0..count {
            ticks.tick().await;
            let order = self.next_order();
            let delivery = self.delivery(&order, Topic::OrdersCreate);
            let duplicated =
                self.duplicate_ratio > 0.0 && self.duplicate_rng.random_bool(self.duplicate_ratio);
            let sender = self.sender.clone();
            tracing::debug!(
                order_id = order.id,
                name = order.name,
                webhook_id = delivery.webhook_id,
                duplicated,
                "storefront order placed"
            );
            deliveries.spawn(async move {
                let mut outcome = sender.send_with_retries(&delivery).await;
                let mut attempts = outcome.attempts;
                let mut acknowledged = outcome.acknowledged();
                if duplicated {
                    outcome = sender.send_with_retries(&delivery).await;
                    attempts += outcome.attempts;
                    acknowledged |= outcome.acknowledged();
                }
                let report = OrderReport {
                    order_id: order.id,
                    skus: order.skus().into_iter().map(str::to_owned).collect(),
                    total_price_minor: order.total_price_minor().unwrap_or_default(),
                    currency: order.currency,
                    name: order.name,
                    webhook_id: delivery.webhook_id.clone(),
                    duplicated,
                    attempts,
                    acknowledged,
                    final_status: outcome.final_status,
                    body: delivery.body.clone(),
                };
                (index, report)
            });
        }

        let mut orders = Vec::with_capacity(count);
        while let Some(joined) = deliveries.join_next().await {
            match joined {
                Ok(entry) => orders.push(entry),
                // A delivery task only panics on a bug in this crate; surface it as such.
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => {}
            }
        }
        orders.sort_by_key(|(index, _)| *index);
        let orders: Vec<OrderReport> = orders.into_iter().map(|(_, report)| report).collect();
        Ok(StorefrontReport {
            orders_sent: orders.len(),
            acknowledged: orders.iter().filter(|order| order.acknowledged).count(),
            duplicate_deliveries: orders.iter().filter(|order| order.duplicated).count(),
            attempts: orders.iter().map(|order| u64::from(order.attempts)).sum(),
            orders,
        })
    }
}
