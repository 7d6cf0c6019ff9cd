//! A stream of orders at a steady rate, and what became of each.

use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::faults::revise;
use super::webhook::Topic;
use super::{Storefront, StorefrontError};

/// What a [`Storefront::run`] sent and what was acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorefrontReport {
    /// Orders created and delivered.
    pub orders_sent: usize,
    /// Orders not placed because the checkout rule refused them (out of stock).
    pub sold_out: usize,
    /// Orders whose delivery was acknowledged with a 2xx in the end.
    pub acknowledged: usize,
    /// Deliveries sent a second time with the same webhook id.
    pub duplicate_deliveries: usize,
    /// Orders whose delivery was never sent (the drop fault).
    pub dropped: usize,
    /// Orders whose newer `orders/updated` was sent before their `orders/create`.
    pub out_of_order: usize,
    /// Orders whose delivery was held back.
    pub delayed: usize,
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
    /// Whether the delivery was never sent (only reconciliation can find this order).
    pub dropped: bool,
    /// The webhook id of the newer `orders/updated` sent before the create, if any.
    pub update_webhook_id: Option<String>,
    /// How long the first send was held back, in milliseconds (0: not delayed).
    pub delay_ms: u64,
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
    /// webhook, with retries and the configured faults drawn from the seed: sent a second
    /// time (`duplicate_ratio`), preceded by a newer `orders/updated` (`out_of_order_ratio`),
    /// held back (`delay_ratio`) or never sent (`drop_ratio`). With
    /// [`Storefront::record_into`], each order's latest revision is stored in the Admin API.
    ///
    /// Deliveries run concurrently, so a slow or failing receiver does not slow the order
    /// rate down (Shopify does not wait for one webhook before sending the next). Returns
    /// when every delivery has been acknowledged or has exhausted its retries.
    pub async fn run(&mut self, count: usize, rate_per_sec: f64) -> Result<StorefrontReport, StorefrontError> {
        if !(rate_per_sec.is_finite() && rate_per_sec > 0.0) {
            return Err(StorefrontError::InvalidRate(rate_per_sec));
        }
        // Floor at a microsecond: tokio's interval refuses a zero period.
        let period = Duration::from_secs_f64(1.0 / rate_per_sec).max(Duration::from_micros(1));
        let mut ticks = tokio::time::interval(period);
        // Catch up after a stall so the average rate holds, as a burst of shoppers would.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);

        let mut deliveries = JoinSet::new();
        let mut sold_out = 0;
        for index in 0..count {
            ticks.tick().await;
            let order = self.next_order();
            if self.checkout.as_ref().is_some_and(|checkout| !(checkout.0)(&order)) {
                sold_out += 1;
                continue;
            }
            let draw = self.dice.draw(&self.faults);
            let revision = draw.out_of_order.then(|| revise(&order));
            if let Some(store) = &self.store {
                let latest = revision.clone().unwrap_or_else(|| order.clone());
                store.orders.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(latest.id, latest);
            }
            let delivery = self.delivery(&order, Topic::OrdersCreate);
            let update = revision.as_ref().map(|r| self.delivery(r, Topic::OrdersUpdated));
            let sender = self.sender.clone();
            tracing::debug!(
                order_id = order.id,
                name = order.name,
                webhook_id = delivery.webhook_id,
                ?draw,
                "storefront order placed"
            );
            deliveries.spawn(async move {
                let mut attempts = 0;
                let mut acknowledged = false;
                let mut final_status = None;
                if !draw.dropped {
                    if let Some(delay) = draw.delay {
                        tokio::time::sleep(delay).await;
                    }
                    let mut update_acknowledged = true;
                    if let Some(update) = &update {
                        let outcome = sender.send_with_retries(update).await;
                        attempts += outcome.attempts;
                        update_acknowledged = outcome.acknowledged();
                    }
                    let mut outcome = sender.send_with_retries(&delivery).await;
                    attempts += outcome.attempts;
                    acknowledged = outcome.acknowledged();
                    if draw.duplicate {
                        outcome = sender.send_with_retries(&delivery).await;
                        attempts += outcome.attempts;
                        acknowledged |= outcome.acknowledged();
                    }
                    acknowledged &= update_acknowledged;
                    final_status = outcome.final_status;
                }
                let report = OrderReport {
                    order_id: order.id,
                    skus: order.skus().into_iter().map(str::to_owned).collect(),
                    total_price_minor: order.total_price_minor().unwrap_or_default(),
                    currency: order.currency,
                    name: order.name,
                    webhook_id: delivery.webhook_id.clone(),
                    duplicated: draw.duplicate && !draw.dropped,
                    dropped: draw.dropped,
                    update_webhook_id: update.map(|u| u.webhook_id),
                    delay_ms: draw.delay.map_or(0, |d| d.as_millis() as u64),
                    attempts,
                    acknowledged,
                    final_status,
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
            sold_out,
            acknowledged: orders.iter().filter(|order| order.acknowledged).count(),
            duplicate_deliveries: orders.iter().filter(|order| order.duplicated).count(),
            dropped: orders.iter().filter(|order| order.dropped).count(),
            out_of_order: orders.iter().filter(|order| order.update_webhook_id.is_some()).count(),
            delayed: orders.iter().filter(|order| order.delay_ms > 0).count(),
            attempts: orders.iter().map(|order| u64::from(order.attempts)).sum(),
            orders,
        })
    }
}
