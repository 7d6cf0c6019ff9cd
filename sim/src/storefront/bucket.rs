//! Shopify's leaky buckets: the REST Admin API's request bucket (40 requests leaking 2/s
//! on a standard plan, `X-Shopify-Shop-Api-Call-Limit: n/40`) and the GraphQL Admin API's
//! cost bucket (points restored at a rate per second, `extensions.cost.throttleStatus`).
//!
//! Both are the same mechanism: a bucket fills by what each call costs and leaks at a
//! constant rate; a call that does not fit is refused whole (pass/fail, no queueing).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The size and leak rate of a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketConfig {
    /// What the bucket holds when full: requests (REST) or cost points (GraphQL).
    pub capacity: f64,
    /// What leaks out (is restored) per second.
    pub leak_per_second: f64,
}

impl BucketConfig {
    /// Shopify REST Admin API, standard plan: 40 requests, leaking 2 per second.
    pub const SHOPIFY_REST: Self = Self { capacity: 40.0, leak_per_second: 2.0 };
    /// Shopify REST Admin API, Plus plan: 400 requests, leaking 20 per second.
    pub const SHOPIFY_REST_PLUS: Self = Self { capacity: 400.0, leak_per_second: 20.0 };
    /// Shopify GraphQL Admin API, standard plan: restored at 100 points per second.
    /// (U) The reference gives the restore rates by plan but not the bucket size; 1,000
    /// points (ten seconds of restore, and the single-query maximum) is assumed.
    pub const SHOPIFY_GRAPHQL: Self = Self { capacity: 1000.0, leak_per_second: 100.0 };
    /// No limit (a bucket that never fills).
    pub const UNLIMITED: Self = Self { capacity: f64::INFINITY, leak_per_second: f64::INFINITY };
}

/// What a call found in the bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketReading {
    /// Whether the call fitted (and was counted).
    pub admitted: bool,
    /// What the bucket holds after the call, as Shopify reports it.
    pub used: f64,
    /// What is still available (`capacity - used`).
    pub available: f64,
    /// The bucket's capacity.
    pub capacity: f64,
    /// The leak (restore) rate per second.
    pub leak_per_second: f64,
}

impl BucketReading {
    /// How long until a call of `cost` would fit.
    pub fn wait_for(&self, cost: f64) -> Duration {
        let missing = (cost - self.available).max(0.0);
        if missing == 0.0 || !self.leak_per_second.is_finite() || self.leak_per_second <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(missing / self.leak_per_second)
    }
}

/// A leaky bucket, safe to share between request handlers.
#[derive(Debug)]
pub struct LeakyBucket {
    config: BucketConfig,
    state: Mutex<(f64, Instant)>,
}

impl LeakyBucket {
    /// An empty bucket.
    pub fn new(config: BucketConfig) -> Self {
        Self { config, state: Mutex::new((0.0, Instant::now())) }
    }

    /// The bucket's size and rate.
    pub fn config(&self) -> BucketConfig {
        self.config
    }

    /// Counts a call of `cost` if it fits; refuses it whole otherwise.
    pub fn take(&self, cost: f64) -> BucketReading {
        self.apply(cost, true)
    }

    /// Gives back `amount` (GraphQL refunds the difference between the requested and the
    /// actual cost of a query).
    pub fn refund(&self, amount: f64) -> BucketReading {
        self.apply(-amount, false)
    }

    /// The bucket as it is now, without taking anything.
    pub fn peek(&self) -> BucketReading {
        self.apply(0.0, false)
    }

    fn apply(&self, cost: f64, must_fit: bool) -> BucketReading {
        self.apply_at(cost, must_fit, Instant::now())
    }

    fn apply_at(&self, cost: f64, must_fit: bool, now: Instant) -> BucketReading {
        let capacity = self.config.capacity;
        if !capacity.is_finite() {
            return BucketReading {
                admitted: true,
                used: 0.0,
                available: capacity,
                capacity,
                leak_per_second: self.config.leak_per_second,
            };
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let leaked = now.saturating_duration_since(state.1).as_secs_f64() * self.config.leak_per_second;
        let level = (state.0 - leaked).max(0.0);
        let fits = !must_fit || level + cost <= capacity;
        let level = if fits { (level + cost).clamp(0.0, capacity) } else { level };
        *state = (level, now);
        BucketReading {
            admitted: fits,
            used: level,
            available: capacity - level,
            capacity,
            leak_per_second: self.config.leak_per_second,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_fills_refuses_whole_and_leaks() {
        let bucket = LeakyBucket::new(BucketConfig::SHOPIFY_REST);
        // An explicit clock: the bucket's arithmetic, not the test's speed, is under test.
        let start = bucket.state.lock().unwrap().1;
        for n in 1..=40 {
            let reading = bucket.apply_at(1.0, true, start);
            assert!(reading.admitted);
            assert_eq!(reading.used.round() as u32, n);
        }
        let refused = bucket.apply_at(1.0, true, start);
        assert!(!refused.admitted);
        assert_eq!(refused.used, 40.0);
        assert_eq!(refused.wait_for(1.0), Duration::from_millis(500));
        let reading = bucket.apply_at(1.0, true, start + Duration::from_secs(1));
        assert!(reading.admitted);
        assert!((reading.used - 39.0).abs() < 1e-9, "{reading:?}");
    }

    #[test]
    fn a_refund_gives_points_back() {
        let bucket = LeakyBucket::new(BucketConfig { capacity: 100.0, leak_per_second: 10.0 });
        let at = bucket.state.lock().unwrap().1;
        assert!(bucket.apply_at(80.0, true, at).admitted);
        assert!(!bucket.apply_at(30.0, true, at).admitted);
        assert!((bucket.apply_at(-20.0, false, at).available - 40.0).abs() < 1e-9);
        assert!(bucket.apply_at(30.0, true, at).admitted);
    }
}
