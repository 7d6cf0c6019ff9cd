//! Webhook delivery faults, each a knob drawn from a seed so a run is reproducible
//! (external-API reference, "Behaviours a simulator must reproduce" 3 and 4): duplicate,
//! out-of-order, delayed and dropped deliveries.

use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::StorefrontError;
use super::order::Order;

/// How often each fault happens. Every ratio is a fraction of orders, 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebhookFaults {
    /// Orders whose delivery is sent a second time with the same webhook id after the
    /// first one finished, as Shopify sometimes does.
    pub duplicate_ratio: f64,
    /// Orders that also get an `orders/updated` delivery (a newer revision) which reaches
    /// the receiver before their `orders/create` (Shopify guarantees no order): the
    /// receiver must keep the newer state when the older create arrives.
    pub out_of_order_ratio: f64,
    /// Orders whose delivery is held back by a random time up to `max_delay`.
    pub delay_ratio: f64,
    /// The longest hold of a delayed delivery.
    pub max_delay: Duration,
    /// Orders whose delivery is never sent (Shopify does not guarantee delivery): only
    /// reconciliation against the Admin API finds them.
    pub drop_ratio: f64,
}

impl Default for WebhookFaults {
    /// No faults.
    fn default() -> Self {
        Self {
            duplicate_ratio: 0.0,
            out_of_order_ratio: 0.0,
            delay_ratio: 0.0,
            max_delay: Duration::from_secs(2),
            drop_ratio: 0.0,
        }
    }
}

impl WebhookFaults {
    /// Refuses a ratio outside 0..=1.
    pub fn check(&self) -> Result<(), StorefrontError> {
        for (name, ratio) in [
            ("duplicate_ratio", self.duplicate_ratio),
            ("out_of_order_ratio", self.out_of_order_ratio),
            ("delay_ratio", self.delay_ratio),
            ("drop_ratio", self.drop_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(StorefrontError::InvalidRatio { name, ratio });
            }
        }
        Ok(())
    }
}

/// The faults drawn for one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultDraw {
    /// Sent twice with the same webhook id.
    pub duplicate: bool,
    /// A newer `orders/updated` delivery goes first.
    pub out_of_order: bool,
    /// Held back this long before the first send.
    pub delay: Option<Duration>,
    /// Never sent.
    pub dropped: bool,
}

/// Draws faults from a seed. Every draw takes the same random numbers whatever the
/// ratios, so turning one knob does not change which orders get the other faults.
#[derive(Debug, Clone)]
pub struct FaultDice {
    rng: Xoshiro256PlusPlus,
}

impl FaultDice {
    /// Dice for `seed`; kept apart from the order generator's stream so faults do not
    /// change the orders a seed makes.
    pub fn new(seed: u64) -> Self {
        Self { rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed_d0b1_e000_0001) }
    }

    /// The faults of the next order.
    pub fn draw(&mut self, faults: &WebhookFaults) -> FaultDraw {
        let [duplicate, out_of_order, delayed, dropped, hold]: [f64; 5] =
            std::array::from_fn(|_| self.rng.random::<f64>());
        FaultDraw {
            duplicate: duplicate < faults.duplicate_ratio,
            out_of_order: out_of_order < faults.out_of_order_ratio,
            delay: (delayed < faults.delay_ratio).then(|| faults.max_delay.mul_f64(hold)),
            dropped: dropped < faults.drop_ratio,
        }
    }
}

/// A newer revision of `order`, as an `orders/updated` would carry it: paid, tagged, and
/// `updated_at` ten minutes later.
pub fn revise(order: &Order) -> Order {
    let mut revised = order.clone();
    revised.financial_status = "paid".to_owned();
    revised.tags = if order.tags.is_empty() { "revised".to_owned() } else { format!("{}, revised", order.tags) };
    if let Ok(updated) = order
        .updated_at
        .parse::<jiff::Zoned>()
        .or_else(|_| order.updated_at.parse::<jiff::Timestamp>().map(|t| t.to_zoned(jiff::tz::TimeZone::UTC)))
        && let Ok(later) = updated.checked_add(jiff::SignedDuration::from_mins(10))
    {
        revised.updated_at = later.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    }
    revised
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_draws_the_same_faults_and_knobs_do_not_disturb_each_other() {
        let some = WebhookFaults { duplicate_ratio: 0.3, drop_ratio: 0.2, ..WebhookFaults::default() };
        let more = WebhookFaults { delay_ratio: 0.5, out_of_order_ratio: 0.5, ..some };
        let draws = |faults: &WebhookFaults| {
            let mut dice = FaultDice::new(7);
            (0..200).map(|_| dice.draw(faults)).collect::<Vec<_>>()
        };
        assert_eq!(draws(&some), draws(&some));
        let (a, b) = (draws(&some), draws(&more));
        assert!(a.iter().zip(&b).all(|(a, b)| a.duplicate == b.duplicate && a.dropped == b.dropped));
        let dropped = a.iter().filter(|d| d.dropped).count();
        assert!((20..=60).contains(&dropped), "{dropped} of 200 dropped at 0.2");
        assert!(b.iter().filter_map(|d| d.delay).all(|d| d <= more.max_delay));
        assert!(b.iter().any(|d| d.out_of_order) && a.iter().all(|d| !d.out_of_order && d.delay.is_none()));
    }

    #[test]
    fn a_ratio_out_of_range_is_named() {
        let bad = WebhookFaults { drop_ratio: 1.5, ..WebhookFaults::default() };
        assert!(bad.check().unwrap_err().to_string().contains("drop_ratio"));
    }
}
