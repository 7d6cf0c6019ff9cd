//! The quota a target Connector grants, shared by every flow that sends to it: a token
//! bucket for the request rate and a semaphore for requests in flight, adapted at run
//! time from the target's answers so the flows use the quota fully without being
//! throttled:
//! - a 429 pauses every sender until its `Retry-After` (or a short default) and cuts the
//!   rate (multiplicative decrease); clean answers probe it back up (additive increase);
//! - call-limit headers say how much of the quota is left before a 429 happens: Shopify's
//!   leaky bucket (`X-Shopify-Shop-Api-Call-Limit: 32/40`), BigCommerce's window
//!   (`X-Rate-Limit-Requests-Left`, `X-Rate-Limit-Time-Reset-Ms`), Amazon's per-operation
//!   rate (`x-amzn-RateLimit-Limit`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{StatusCode, header::HeaderMap};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use crate::spec::ConnectorLimits;

/// Requests in flight when a Connector declares no concurrency.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// Pause after a 429 that says nothing of when to come back.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
/// The rate never adapts below this share of the declared one.
const MIN_SHARE: f64 = 0.05;

/// What a target's answer says about its quota.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaSignal {
    /// The answer was a 429.
    pub throttled: bool,
    /// `Retry-After`, parsed.
    pub retry_after: Option<Duration>,
    /// Requests that can still be made before the target throttles.
    pub remaining: Option<f64>,
    /// When the quota window resets (BigCommerce).
    pub reset_after: Option<Duration>,
    /// The sustained rate the target grants (Amazon).
    pub granted_rate: Option<f64>,
}

impl QuotaSignal {
    /// Reads the signal from a response's status and headers.
    pub fn read(status: StatusCode, headers: &HeaderMap, retry_after: Option<Duration>) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let number = |name: &str| text(name).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0);
        let shopify = text("x-shopify-shop-api-call-limit").and_then(|v| {
            let (used, max) = v.split_once('/')?;
            Some(max.trim().parse::<f64>().ok()? - used.trim().parse::<f64>().ok()?)
        });
        Self {
            throttled: status == StatusCode::TOO_MANY_REQUESTS,
            retry_after,
            remaining: shopify.or_else(|| number("x-rate-limit-requests-left")).map(|r| r.max(0.0)),
            reset_after: number("x-rate-limit-time-reset-ms").map(|ms| Duration::from_millis(ms as u64)),
            granted_rate: number("x-amzn-ratelimit-limit").filter(|r| *r > 0.0),
        }
    }
}

/// One Connector's quota.
#[derive(Debug)]
pub struct Quota {
    in_flight: Arc<Semaphore>,
    concurrency: u32,
    state: Mutex<State>,
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
}

/// The right to send one request; dropping it frees the concurrency slot.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
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
            in_flight: Arc::new(Semaphore::new(concurrency as usize)),
            concurrency,
            state: Mutex::new(State {
                declared,
                rate: declared,
                burst,
                tokens: burst,
                last: Instant::now(),
                paused_until: None,
                last_change: Instant::now(),
            }),
        }
    }

    /// Requests allowed in flight.
    pub fn concurrency(&self) -> u32 {
        self.concurrency
    }

    /// The rate in force, after adaptation (`None`: unlimited).
    pub fn rate(&self) -> Option<f64> {
        self.lock().rate
    }

    /// A concurrency slot, if one is free now.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// Waits for a free concurrency slot.
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, tokio::sync::AcquireError> {
        self.in_flight.clone().acquire_owned().await
    }

    /// Waits out any pause and for a token of the rate limit, then turns a slot into a
    /// permit.
    pub async fn admit(&self, slot: OwnedSemaphorePermit) -> Permit {
        while let Some(wait) = self.take_token() {
            tokio::time::sleep(wait).await;
        }
        Permit { _slot: slot }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a token if there is one; otherwise says how long until there is.
    fn take_token(&self) -> Option<Duration> {
        let mut s = self.lock();
        let now = Instant::now();
        if let Some(until) = s.paused_until {
            if until > now {
                return Some(until - now);
            }
            s.paused_until = None;
        }
        let rate = s.rate?;
        s.tokens = (s.tokens + now.duration_since(s.last).as_secs_f64() * rate).min(s.burst);
        s.last = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - s.tokens) / rate))
        }
    }

    /// Adapts to what an answer says about the quota.
    pub fn observe(&self, signal: &QuotaSignal) {
        let mut s = self.lock();
        let now = Instant::now();
        if let Some(granted) = signal.granted_rate {
            s.rate = Some(s.declared.map_or(granted, |d| d.min(granted)));
        }
        if signal.throttled {
            let pause = signal.retry_after.or(signal.reset_after).unwrap_or(DEFAULT_PAUSE);
            s.paused_until = Some(s.paused_until.map_or(now + pause, |p| p.max(now + pause)));
            s.tokens = 0.0;
            if let (Some(rate), Some(declared)) = (s.rate, s.declared) {
                s.rate = Some((rate * 0.7).max(declared * MIN_SHARE));
                s.last_change = now;
            }
            return;
        }
        match signal.remaining {
            // The window is used up: wait for its reset (BigCommerce), or for one token.
            Some(left) if left < 1.0 => {
                let pause = signal.reset_after.unwrap_or_else(|| Duration::from_secs_f64(1.0 / s.rate.unwrap_or(1.0)));
                s.paused_until = Some(now + pause);
                s.tokens = 0.0;
            }
            // Never hold more tokens than the target says are left.
            Some(left) => s.tokens = s.tokens.min(left - 1.0).max(0.0),
            None => {}
        }
        // Clean answers for a second: probe back towards the declared rate.
        if let (Some(rate), Some(declared)) = (s.rate, s.declared)
            && rate < declared
            && signal.granted_rate.is_none()
            && now.duration_since(s.last_change) >= Duration::from_secs(1)
        {
            s.rate = Some((rate + declared * 0.05).min(declared));
            s.last_change = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: u32, concurrency: u32) -> ConnectorLimits {
        ConnectorLimits { requests_per_second: Some(rate), burst: Some(burst), concurrency: Some(concurrency) }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_the_burst_then_the_rate() {
        let quota = Quota::new(Some(&limits(2.0, 3, 10)));
        let start = Instant::now();
        for _ in 0..7 {
            let slot = quota.try_slot().unwrap();
            drop(quota.admit(slot).await);
        }
        // 3 at once, then 4 more at 2 per second: 2 s of (virtual) time.
        assert_eq!(start.elapsed().as_millis(), 2000);
    }

    #[tokio::test]
    async fn concurrency_caps_slots_until_a_permit_is_dropped() {
        let quota = Quota::new(Some(&ConnectorLimits { concurrency: Some(2), ..Default::default() }));
        let a = quota.admit(quota.try_slot().unwrap()).await;
        let _b = quota.admit(quota.try_slot().unwrap()).await;
        assert!(quota.try_slot().is_none());
        drop(a);
        assert!(quota.try_slot().is_some());
        assert_eq!(Quota::new(None).concurrency(), DEFAULT_CONCURRENCY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_everyone_until_retry_after_and_cuts_the_rate() {
        let quota = Quota::new(Some(&limits(10.0, 1, 4)));
        quota.observe(&QuotaSignal { throttled: true, retry_after: Some(Duration::from_secs(3)), ..Default::default() });
        assert_eq!(quota.rate(), Some(7.0));
        let start = Instant::now();
        drop(quota.admit(quota.try_slot().unwrap()).await);
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
        let quota = Quota::new(Some(&limits(100.0, 100, 4)));
        quota.observe(&QuotaSignal { remaining: Some(0.0), reset_after: Some(Duration::from_secs(2)), ..Default::default() });
        let start = Instant::now();
        drop(quota.admit(quota.try_slot().unwrap()).await);
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[test]
    fn amazon_grants_a_rate_below_the_declared_one() {
        let quota = Quota::new(Some(&limits(1.0, 1, 1)));
        quota.observe(&QuotaSignal { granted_rate: Some(0.5), ..Default::default() });
        assert_eq!(quota.rate(), Some(0.5));
    }
}
