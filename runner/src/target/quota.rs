//! The quota a target Connector grants, shared by every flow that sends to it: a token
//! bucket for the request rate and a semaphore for requests in flight.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use crate::spec::ConnectorLimits;

/// Requests in flight when a Connector declares no concurrency.
pub const DEFAULT_CONCURRENCY: u32 = 4;

/// One Connector's quota.
#[derive(Debug)]
pub struct Quota {
    in_flight: Arc<Semaphore>,
    concurrency: u32,
    bucket: Option<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
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
        let bucket = limits.and_then(|l| l.requests_per_second).filter(|r| *r > 0.0).map(|rate| {
            let burst = limits.and_then(|l| l.burst).map_or(rate.max(1.0), f64::from).max(1.0);
            Mutex::new(Bucket { rate, burst, tokens: burst, last: Instant::now() })
        });
        Self { in_flight: Arc::new(Semaphore::new(concurrency as usize)), concurrency, bucket }
    }

    /// Requests allowed in flight.
    pub fn concurrency(&self) -> u32 {
        self.concurrency
    }

    /// A concurrency slot, if one is free now.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// Waits for a free concurrency slot.
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, tokio::sync::AcquireError> {
        self.in_flight.clone().acquire_owned().await
    }

    /// Waits for a token of the rate limit, then turns a slot into a permit.
    pub async fn admit(&self, slot: OwnedSemaphorePermit) -> Permit {
        while let Some(wait) = self.take_token() {
            tokio::time::sleep(wait).await;
        }
        Permit { _slot: slot }
    }

    /// Takes a token if there is one; otherwise says how long until there is.
    fn take_token(&self) -> Option<Duration> {
        let bucket = self.bucket.as_ref()?;
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * b.rate).min(b.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - b.tokens) / b.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_the_burst_then_the_rate() {
        let quota = Quota::new(Some(&ConnectorLimits { requests_per_second: Some(2.0), burst: Some(3), concurrency: Some(10) }));
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
}
