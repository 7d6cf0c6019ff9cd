//! A quota shared with other runners: the part of a Connector's quota each priority of
//! this runner may use (its [`Share`](super::shares::Share), set by the runners'
//! coordination, `queue/jetstream/connector_quota.rs`), and what the quota reports for the
//! next split: whether each priority wants more, what it sent, and what the target said
//! (429s, clean answers, a granted rate). The local [`super::Quota`] still enforces: a
//! token bucket and slots per priority, sized by the shares. Its own rate does not adapt
//! then: the shared rate does, once for every runner.

use std::time::Duration;

use entrepot_api::resource::Priority;
use tokio::time::Instant;

use super::shares::{Shares, index};

/// While sharing, a wait for a token is at most this long: a share raised meanwhile is
/// used without waiting out a wait computed at the lower rate.
pub(super) const RECHECK: Duration = Duration::from_millis(100);

/// What happened since the last report, for the next round of the split.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Per priority (low, normal, high): a request of that priority waited for a slot or a
    /// token, or waits now.
    pub wants: [bool; 3],
    /// Per priority: requests admitted (given a token).
    pub admitted: [u64; 3],
    /// Per priority: the most requests in flight at once.
    pub in_flight: [u32; 3],
    /// Answers that were not throttled.
    pub accepted: u64,
    /// Rate 429s (not concurrency refusals).
    pub throttles: u32,
    /// The longest pause those 429s asked for (`Retry-After`, or the default).
    pub pause: Option<Duration>,
    /// The rate the target last said it grants (`x-amzn-RateLimit-Limit`).
    pub granted: Option<f64>,
}

/// One priority's token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A quota's state while shared.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) shares: Shares,
    buckets: [Bucket; 3],
    pub(super) report: Report,
    /// What the last round published of each priority's wants: a priority that starts to
    /// want asks for a round at once rather than at the next tick.
    pub(super) published_wants: [bool; 3],
}

impl Shared {
    /// Empty buckets of `shares`' sizes.
    pub(super) fn new(shares: Shares) -> Self {
        let now = Instant::now();
        Self {
            shares,
            buckets: std::array::from_fn(|_| Bucket { tokens: 0.0, last: now }),
            report: Report::default(),
            published_wants: [false; 3],
        }
    }

    /// New shares: each bucket filled at its old rate until now, and tokens held above
    /// its new size dropped.
    pub(super) fn set(&mut self, shares: Shares) {
        let now = Instant::now();
        for ((bucket, old), new) in self.buckets.iter_mut().zip(&self.shares).zip(&shares) {
            let earned = now.duration_since(bucket.last).as_secs_f64() * old.rate.unwrap_or(0.0);
            bucket.tokens = (bucket.tokens + earned).min(old.burst).min(new.burst);
            bucket.last = now;
        }
        self.shares = shares;
    }

    /// Drops every token (a 429: everyone pauses, then starts afresh).
    pub(super) fn empty(&mut self) {
        self.buckets.iter_mut().for_each(|b| b.tokens = 0.0);
    }

    /// Takes a token of `priority`'s bucket and counts it; otherwise notes that the
    /// priority wants more and says how long until there is one (at most [`RECHECK`]), and
    /// whether a round should run now (see [`Shared::waited`]).
    pub(super) fn take_token(&mut self, priority: Priority, now: Instant) -> (Option<Duration>, bool) {
        let i = index(priority);
        let Some(rate) = self.shares[i].rate else {
            self.report.admitted[i] += 1;
            return (None, false);
        };
        let bucket = &mut self.buckets[i];
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(self.shares[i].burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            self.report.admitted[i] += 1;
            return (None, false);
        }
        let wait = if rate > 0.0 { Duration::from_secs_f64((1.0 - bucket.tokens) / rate) } else { RECHECK };
        let wait = wait.min(RECHECK);
        (Some(wait), self.waited(priority))
    }

    /// Notes that `priority` waited; whether a round should run now (the others do not
    /// know yet that it wants more).
    pub(super) fn waited(&mut self, priority: Priority) -> bool {
        let i = index(priority);
        self.report.wants[i] = true;
        !self.published_wants[i]
    }
}
