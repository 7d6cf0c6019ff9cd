//! The quota a target Connector grants, shared by every flow that sends to it: a token
//! bucket for the request rate and slots for requests in flight (handed out by flow
//! priority, see [`concurrency`]), adapted at run time from the target's answers so the
//! flows use the quota fully without being throttled:
//! - a concurrency refusal (NetSuite's, Business Central's) shrinks the slots to what
//!   the target granted, and nobody pauses (see [`concurrency`]);
//! - a rate 429 pauses every sender until its `Retry-After` (or a short default) and cuts the
//!   rate to just under what got through since the previous 429, which is what the
//!   target grants (by 30% when that cannot be measured yet); clean answers probe it
//!   back up, quickly to just under the learned rate and slowly past it;
//! - call-limit headers say how much of the quota is left before a 429 happens: Shopify's
//!   leaky bucket (`X-Shopify-Shop-Api-Call-Limit: 32/40`), BigCommerce's window
//!   (`X-Rate-Limit-Requests-Left`, `X-Rate-Limit-Time-Reset-Ms`), Amazon's per-operation
//!   rate (`x-amzn-RateLimit-Limit`).
//!
//! When several runners send to the Connector (a flow's queue in JetStream), each
//! priority of each runner enforces only its share of the declared rate and concurrency
//! ([`shares`], set through [`Quota::set_shares`]), and the rate adapts once for all of
//! them ([`shared`], [`ledger`]).

pub mod adapt;
pub mod concurrency;
pub mod ledger;
#[cfg(test)]
mod ledger_tests;
pub mod operations;
pub mod shared;
pub mod shares;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use crate::protocol::{QuotaSignal, upstream_wait};

use concurrency::Concurrency;
pub use concurrency::Slot;
use entrepot_api::resource::{ConnectorLimits, Priority};
use shared::{Report, Shared};
use shares::{Limits, Shares};

/// Requests in flight when a Connector declares no concurrency.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// Pause after a 429 that says nothing of when to come back.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// One Connector's quota.
#[derive(Debug)]
pub struct Quota {
    slots: Arc<Concurrency>,
    state: Mutex<State>,
    /// Asks the runners' coordination for a round now (while shared).
    round: Notify,
}

#[derive(Debug)]
struct State {
    /// The declared rate, if any; adaptation stays at or below it.
    declared: Option<f64>,
    /// The rate in force.
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    /// When the rate was last cut or raised: probing goes up once per second at most,
    /// so a burst of clean answers does not undo a cut at once.
    last_change: Instant,
    /// The last 429 (or the start) and the answers accepted since: their rate, measured
    /// at the next 429, is what the target really grants.
    last_throttle: Instant,
    accepted_since: u64,
    /// The granted rate learned from the spacing of 429s; probing slows near it.
    learned: Option<f64>,
    /// This runner's shares, while other runners send to the Connector too.
    shared: Option<Shared>,
}

impl State {
    /// The rate enforced: this runner's shares together while shared.
    fn rate_in_force(&self) -> Option<f64> {
        match &self.shared {
            Some(shared) => shares::total(&shared.shares).0,
            None => self.rate,
        }
    }
}

/// The right to send one request; dropping it frees the concurrency slot.
#[derive(Debug)]
pub struct Permit {
    slot: Slot,
}

impl Permit {
    /// The Connector's requests in flight when this one took its slot, itself included.
    pub fn in_flight(&self) -> u32 {
        self.slot.in_flight()
    }
}

impl Quota {
    /// The quota `limits` declares (unlimited rate and the default concurrency when absent).
    pub fn new(limits: Option<&ConnectorLimits>) -> Self {
        let concurrency = limits.and_then(|l| l.concurrency).unwrap_or(DEFAULT_CONCURRENCY).max(1);
        let declared = limits.and_then(|l| l.requests_per_second).filter(|r| *r > 0.0);
        let burst = match (limits.and_then(|l| l.burst), declared) {
            (Some(b), _) => f64::from(b).max(1.0),
            (None, Some(rate)) => rate.max(1.0),
            (None, None) => 1.0,
        };
        Self {
            slots: Arc::new(Concurrency::new(concurrency)),
            state: Mutex::new(State {
                declared,
                rate: declared,
                burst,
                tokens: burst,
                last: Instant::now(),
                paused_until: None,
                last_change: Instant::now(),
                last_throttle: Instant::now(),
                accepted_since: 0,
                learned: None,
                shared: None,
            }),
            round: Notify::new(),
        }
    }

    /// Requests the Connector declares it may have in flight.
    pub fn concurrency(&self) -> u32 {
        self.slots.declared()
    }

    /// Requests allowed in flight now, after adaptation to what the target grants.
    pub fn concurrency_limit(&self) -> u32 {
        self.slots.limit()
    }

    /// The rate in force, after adaptation (`None`: unlimited); this runner's share of it
    /// while shared.
    pub fn rate(&self) -> Option<f64> {
        self.lock().rate_in_force()
    }

    /// A concurrency slot, if one is free now and nobody of the same or a higher
    /// priority waits for one.
    pub fn try_slot(&self, priority: Priority) -> Option<Slot> {
        self.slots.try_slot(priority)
    }

    /// Waits for a concurrency slot, behind waiters of the same or a higher priority.
    /// Cancel-safe: a slot handed to a dropped waiter goes on to the next one.
    pub async fn slot(&self, priority: Priority) -> Slot {
        if self.lock().shared.is_some() {
            if let Some(slot) = self.slots.try_slot(priority) {
                return slot;
            }
            self.waited(priority);
        }
        self.slots.slot(priority).await
    }

    /// Waits out any pause and for a token of the rate limit, then turns a slot into a
    /// permit.
    pub async fn admit(&self, slot: Slot) -> Permit {
        while let Some(wait) = self.take_token(Some(slot.priority())) {
            tokio::time::sleep(wait).await;
        }
        Permit { slot }
    }

    /// Waits out any pause and for a token of the rate limit, without a concurrency slot
    /// (a per-operation bucket: the slot, if any, is the Connector's).
    pub async fn pace(&self) {
        while let Some(wait) = self.take_token(None) {
            tokio::time::sleep(wait).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a token if there is one; otherwise says how long until there is. While
    /// shared, from `priority`'s bucket, and the priority is noted as wanting more or as
    /// having sent.
    fn take_token(&self, priority: Option<Priority>) -> Option<Duration> {
        let mut s = self.lock();
        let now = Instant::now();
        if let Some(until) = s.paused_until {
            if until > now {
                if let (Some(shared), Some(priority)) = (s.shared.as_mut(), priority) {
                    shared.waited(priority);
                }
                return Some(until - now);
            }
            s.paused_until = None;
        }
        if let (Some(shared), Some(priority)) = (s.shared.as_mut(), priority) {
            let (wait, round) = shared.take_token(priority, now);
            if round {
                self.round.notify_one();
            }
            return wait;
        }
        let rate = s.rate?;
        s.tokens = (s.tokens + now.duration_since(s.last).as_secs_f64() * rate).min(s.burst);
        s.last = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            None
        } else {
            Some(upstream_wait((1.0 - s.tokens) / rate).unwrap_or(DEFAULT_PAUSE))
        }
    }

    /// Adapts to what an answer to a request that held no slot says about the quota.
    pub fn observe(&self, signal: &QuotaSignal) {
        self.observe_sent(signal, None);
    }

    /// Adapts to what an answer says about the quota. `in_flight`: the Connector's
    /// requests in flight when the answered one was sent, itself included
    /// ([`Permit::in_flight`]).
    pub fn observe_sent(&self, signal: &QuotaSignal, in_flight: Option<u32>) {
        if signal.throttled && signal.concurrency {
            // One too many in flight: fewer slots, and nobody pauses.
            self.slots.refused(in_flight.is_some());
            return;
        }
        if signal.served && !signal.throttled {
            self.slots.answered(in_flight);
        }
        let mut s = self.lock();
        let now = Instant::now();
        if let Some(granted) = signal.granted_rate {
            match s.shared.as_mut() {
                // The shared rate takes it, for every runner.
                Some(shared) => shared.report.granted = Some(granted),
                None => s.rate = Some(s.declared.map_or(granted, |d| d.min(granted))),
            }
        }
        if signal.throttled {
            let pause = signal.retry_after.or(signal.reset_after).unwrap_or(DEFAULT_PAUSE);
            s.paused_until = Some(s.paused_until.map_or(now + pause, |p| p.max(now + pause)));
            s.tokens = 0.0;
            if let Some(shared) = s.shared.as_mut() {
                shared.empty();
                // The shared rate is cut, once for every runner, at the round this asks for.
                shared.report.throttles += 1;
                shared.report.pause = Some(shared.report.pause.map_or(pause, |p| p.max(pause)));
                self.round.notify_one();
                return;
            }
            // What got through since the last 429 is what the target grants (see
            // `adapt::cut`), measured over two seconds at least.
            let span = now.duration_since(s.last_throttle).as_secs_f64();
            let measured = (span >= 2.0 && s.accepted_since > 0).then(|| s.accepted_since as f64 / span);
            if let (Some(rate), Some(declared)) = (s.rate, s.declared) {
                let (cut, learned) = adapt::cut(rate, declared, measured);
                s.learned = Some(learned);
                s.rate = Some(cut);
                s.last_change = now;
            }
            s.last_throttle = now;
            s.accepted_since = 0;
            return;
        }
        s.accepted_since += 1;
        match signal.remaining {
            // The window is used up: wait for its reset (BigCommerce), or for one token.
            Some(left) if left < 1.0 => {
                let pause = signal
                    .reset_after
                    .unwrap_or_else(|| upstream_wait(1.0 / s.rate_in_force().unwrap_or(1.0)).unwrap_or(DEFAULT_PAUSE));
                s.paused_until = Some(now + pause);
                s.tokens = 0.0;
                s.shared.iter_mut().for_each(Shared::empty);
            }
            // Never hold more tokens than the target says are left (while shared, this
            // runner's share of what is left is not known: it keeps its own bucket).
            Some(left) => s.tokens = s.tokens.min(left - 1.0).max(0.0),
            None => {}
        }
        if let Some(shared) = s.shared.as_mut() {
            // The shared rate probes back up, once for every runner.
            shared.report.accepted += 1;
            return;
        }
        // Clean answers for a second: probe back towards the declared rate.
        if let (Some(rate), Some(declared)) = (s.rate, s.declared)
            && rate < declared
            && signal.granted_rate.is_none()
            && now.duration_since(s.last_change) >= Duration::from_secs(1)
        {
            s.rate = Some(adapt::probe(rate, declared, s.learned));
            s.last_change = now;
        }
    }

    /// What the Connector declares, for all senders together.
    pub fn declared(&self) -> Limits {
        let s = self.lock();
        Limits { rate: s.declared, burst: s.burst, concurrency: self.slots.declared() }
    }

    /// Shares the Connector with other runners from now on: nothing may be sent until the
    /// first shares are set ([`Quota::set_shares`]).
    pub fn start_sharing(&self) {
        let nothing = shares::nothing(&self.declared());
        self.lock().shared = Some(Shared::new([nothing; 3]));
        self.slots.set_share(Some([0; 3]));
    }

    /// Sets each priority's share (while shared): tokens held above a bucket's new size
    /// are dropped; new slots go to waiters at once.
    pub fn set_shares(&self, shares: Shares) {
        let mut s = self.lock();
        let Some(shared) = s.shared.as_mut() else { return };
        shared.set(shares);
        drop(s);
        self.slots.set_share(Some(shares.map(|share| share.slots)));
    }

    /// Each priority's share, while shared.
    pub fn shares(&self) -> Option<Shares> {
        self.lock().shared.as_ref().map(|s| s.shares)
    }

    /// What happened since the last report (while shared), for the next round; `wants`
    /// also counts requests waiting now.
    pub fn take_report(&self) -> Report {
        let waiting = self.slots.waiting();
        let peaks = self.slots.take_peaks();
        let mut s = self.lock();
        let Some(shared) = s.shared.as_mut() else { return Report::default() };
        let mut report = std::mem::take(&mut shared.report);
        report.in_flight = peaks;
        for (wants, waits) in report.wants.iter_mut().zip(waiting) {
            *wants |= waits;
        }
        shared.published_wants = report.wants;
        report
    }

    /// Requests in flight now, per priority (low, normal, high).
    pub fn in_use(&self) -> [u32; 3] {
        self.slots.in_use()
    }

    /// Pauses every request until `until` (another runner was throttled).
    pub fn pause_until(&self, until: Instant) {
        let mut s = self.lock();
        if until > Instant::now() {
            s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
            s.tokens = 0.0;
            s.shared.iter_mut().for_each(Shared::empty);
        }
    }

    /// Resolves when a round of the runners' coordination should run now: a priority
    /// started to want more, or the target throttled.
    pub async fn round_wanted(&self) {
        self.round.notified().await;
    }

    fn waited(&self, priority: Priority) {
        if self.lock().shared.as_mut().is_some_and(|shared| shared.waited(priority)) {
            self.round.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::{StatusCode, header::HeaderMap};

    use super::*;

    fn limits(rate: f64, burst: u32, concurrency: u32) -> ConnectorLimits {
        ConnectorLimits {
            requests_per_second: Some(rate),
            burst: Some(burst),
            concurrency: Some(concurrency),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_the_burst_then_the_rate() {
        let quota = Arc::new(Quota::new(Some(&limits(2.0, 3, 10))));
        let start = Instant::now();
        for _ in 0..7 {
            let slot = quota.try_slot(Priority::Normal).unwrap();
            drop(quota.admit(slot).await);
        }
        // 3 at once, then 4 more at 2 per second: 2 s of (virtual) time.
        assert_eq!(start.elapsed().as_millis(), 2000);
    }

    #[tokio::test]
    async fn concurrency_caps_slots_until_a_permit_is_dropped() {
        let quota = Arc::new(Quota::new(Some(&ConnectorLimits { concurrency: Some(2), ..Default::default() })));
        let a = quota.admit(quota.try_slot(Priority::Normal).unwrap()).await;
        let _b = quota.admit(quota.try_slot(Priority::Normal).unwrap()).await;
        assert!(quota.try_slot(Priority::High).is_none());
        drop(a);
        assert!(quota.try_slot(Priority::Normal).is_some());
        assert_eq!(Quota::new(None).concurrency(), DEFAULT_CONCURRENCY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_everyone_until_retry_after_and_cuts_the_rate() {
        let quota = Arc::new(Quota::new(Some(&limits(10.0, 1, 4))));
        quota.observe(&QuotaSignal {
            throttled: true,
            retry_after: Some(Duration::from_secs(3)),
            ..Default::default()
        });
        assert_eq!(quota.rate(), Some(7.0));
        let start = Instant::now();
        drop(quota.admit(quota.try_slot(Priority::Normal).unwrap()).await);
        assert!(start.elapsed() >= Duration::from_secs(3));
        // Clean answers bring the rate back up, a step a second, to (never above) the
        // declared one.
        quota.observe(&QuotaSignal::default());
        assert!(quota.rate().unwrap() > 7.0);
        for _ in 0..30 {
            tokio::time::advance(Duration::from_secs(1)).await;
            quota.observe(&QuotaSignal::default());
        }
        assert_eq!(quota.rate(), Some(10.0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_granted_rate_is_learned_from_what_gets_through_between_429s() {
        // Declared 80/s; the target grants 50/s.
        let quota = Arc::new(Quota::new(Some(&limits(80.0, 10, 16))));
        let throttled =
            QuotaSignal { throttled: true, retry_after: Some(Duration::from_millis(20)), ..Default::default() };
        quota.observe(&throttled);
        // Nothing measured yet: a 30% cut.
        assert_eq!(quota.rate(), Some(56.0));
        // 50 answers a second get through for 4 s, then the next 429.
        for _ in 0..4 {
            for _ in 0..50 {
                tokio::time::advance(Duration::from_millis(20)).await;
                quota.observe(&QuotaSignal::default());
            }
        }
        quota.observe(&throttled);
        let learned = quota.rate().unwrap();
        assert!((learned - 48.5).abs() < 1e-9, "just under the 50/s that got through, not 30% off: {learned}");
        // Past the learned rate, probing goes 1% of the declared rate a second.
        tokio::time::advance(Duration::from_secs(1)).await;
        quota.observe(&QuotaSignal::default());
        assert!((quota.rate().unwrap() - 49.3).abs() < 1e-9, "{:?}", quota.rate());
    }

    #[test]
    fn call_limit_headers_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert("x-shopify-shop-api-call-limit", "38/40".parse().unwrap());
        assert_eq!(QuotaSignal::read(StatusCode::OK, &headers, None).remaining, Some(2.0));
        let mut headers = HeaderMap::new();
        headers.insert("x-rate-limit-requests-left", "0".parse().unwrap());
        headers.insert("x-rate-limit-time-reset-ms", "1500".parse().unwrap());
        let signal = QuotaSignal::read(StatusCode::OK, &headers, None);
        assert_eq!((signal.remaining, signal.reset_after), (Some(0.0), Some(Duration::from_millis(1500))));
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-ratelimit-limit", "0.0167".parse().unwrap());
        assert_eq!(QuotaSignal::read(StatusCode::TOO_MANY_REQUESTS, &headers, None).granted_rate, Some(0.0167));
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_window_waits_for_its_reset() {
        let quota = Arc::new(Quota::new(Some(&limits(100.0, 100, 4))));
        quota.observe(&QuotaSignal {
            remaining: Some(0.0),
            reset_after: Some(Duration::from_secs(2)),
            ..Default::default()
        });
        let start = Instant::now();
        drop(quota.admit(quota.try_slot(Priority::Normal).unwrap()).await);
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_concurrency_refusal_shrinks_the_slots_and_pauses_nobody() {
        let quota = Arc::new(Quota::new(Some(&limits(10.0, 10, 4))));
        let held: Vec<Permit> =
            futures::future::join_all((0..4).map(|_| quota.admit(quota.try_slot(Priority::Normal).unwrap()))).await;
        let refused = QuotaSignal {
            throttled: true,
            concurrency: true,
            retry_after: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        quota.observe_sent(&refused, Some(held[3].in_flight()));
        assert_eq!((quota.concurrency_limit(), quota.concurrency()), (3, 4), "the other three were granted");
        assert_eq!(quota.rate(), Some(10.0), "the rate is not what was refused");
        drop(held);
        let start = Instant::now();
        drop(quota.admit(quota.try_slot(Priority::Normal).unwrap()).await);
        assert_eq!(start.elapsed(), Duration::ZERO, "nobody waits out the Retry-After");
        // A failing target (5xx) proves nothing about what it grants: no probe up.
        let failing = QuotaSignal::read(reqwest::StatusCode::SERVICE_UNAVAILABLE, &Default::default(), None);
        for _ in 0..1_000 {
            quota.observe_sent(&failing, Some(3));
        }
        assert_eq!(quota.concurrency_limit(), 3);
        let served = QuotaSignal::read(reqwest::StatusCode::CREATED, &Default::default(), None);
        for _ in 0..1_000 {
            quota.observe_sent(&served, Some(3));
        }
        assert_eq!(quota.concurrency_limit(), 4, "answers served at the full limit probe back up");
    }

    #[test]
    fn amazon_grants_a_rate_below_the_declared_one() {
        let quota = Quota::new(Some(&limits(1.0, 1, 1)));
        quota.observe(&QuotaSignal { granted_rate: Some(0.5), ..Default::default() });
        assert_eq!(quota.rate(), Some(0.5));
    }

    #[test]
    fn absurd_quota_headers_pause_an_hour_at_most_and_never_panic() {
        let quota = Quota::new(Some(&limits(10.0, 1, 4)));
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-ratelimit-limit", "1e-300".parse().unwrap());
        headers.insert("x-rate-limit-requests-left", "0".parse().unwrap());
        headers.insert("x-rate-limit-time-reset-ms", "1e300".parse().unwrap());
        let signal = QuotaSignal::read(StatusCode::OK, &headers, None);
        assert_eq!(signal.reset_after, Some(crate::protocol::MAX_UPSTREAM_WAIT));
        quota.observe(&signal);
        let wait = quota.take_token(None).expect("paused");
        assert!(wait <= crate::protocol::MAX_UPSTREAM_WAIT, "{wait:?}");
        // The granted rate alone (no reset time): one token at 1e-300/s is an hour away.
        let quota = Quota::new(Some(&limits(10.0, 1, 4)));
        headers.remove("x-rate-limit-time-reset-ms");
        headers.remove("x-rate-limit-requests-left");
        quota.observe(&QuotaSignal::read(StatusCode::OK, &headers, None));
        assert_eq!(quota.take_token(None), None, "the burst token");
        assert_eq!(quota.take_token(None), Some(crate::protocol::MAX_UPSTREAM_WAIT));
    }
}
