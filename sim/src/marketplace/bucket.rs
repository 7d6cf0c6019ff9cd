//! Token buckets as marketplaces meter their APIs: a rate at which tokens come back and a
//! burst (the bucket's size). Amazon keeps one per operation and names its rate in
//! `x-amzn-RateLimit-Limit`; Walmart reports the tokens left (`X-Current-Token-Count`) and
//! when the next ones arrive (`X-Next-Replenishment-Time`).

use std::time::{Duration, Instant};

/// A rate and a burst: `rate` tokens per second come back, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Tokens restored per second (e.g. SP-API getOrders: 0.0167).
    pub rate: f64,
    /// Tokens the bucket holds when full (e.g. SP-API getOrders: 20).
    pub burst: u32,
}

impl Limit {
    /// A limit of `rate` per second with `burst` tokens.
    pub const fn new(rate: f64, burst: u32) -> Self {
        Self { rate, burst }
    }
}

/// One bucket, full when created.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    limit: Limit,
    tokens: f64,
    refilled: Instant,
}

/// What taking a token found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Taken {
    /// Whether a token was taken (the request may proceed).
    pub(crate) granted: bool,
    /// Whole tokens left after this request.
    pub(crate) remaining: u32,
    /// Time until the next whole token comes back; zero when the bucket is full.
    pub(crate) next_token_in: Duration,
}

impl Bucket {
    pub(crate) fn new(limit: Limit) -> Self {
        Self { limit, tokens: f64::from(limit.burst), refilled: Instant::now() }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.rate).min(f64::from(self.limit.burst));
        self.refilled = now;
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self) -> Taken {
        let now = Instant::now();
        self.refill(now);
        let granted = self.tokens >= 1.0;
        if granted {
            self.tokens -= 1.0;
        }
        let missing = 1.0 - self.tokens.fract();
        let next_token_in = if self.tokens >= f64::from(self.limit.burst) || self.limit.rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.limit.rate)
        };
        Taken {
            granted,
            // Truncation is the point: only whole tokens admit a request.
            remaining: self.tokens.floor() as u32,
            next_token_in,
        }
    }

    /// Empties the bucket (a knob: the next requests are throttled until tokens return).
    pub(crate) fn drain(&mut self) {
        self.refill(Instant::now());
        self.tokens = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_grants_its_burst_then_refuses() {
        // A rate so low that no token comes back while the test runs.
        let mut bucket = Bucket::new(Limit::new(0.000_001, 3));
        let granted: Vec<bool> = (0..5).map(|_| bucket.take().granted).collect();
        assert_eq!(granted, [true, true, true, false, false]);
        assert_eq!(bucket.take().remaining, 0);
    }

    #[test]
    fn a_drained_bucket_refuses_and_reports_when_the_next_token_comes() {
        let mut bucket = Bucket::new(Limit::new(0.5, 10));
        bucket.drain();
        let taken = bucket.take();
        assert!(!taken.granted);
        assert!(taken.next_token_in > Duration::ZERO && taken.next_token_in <= Duration::from_secs(2));
    }
}
