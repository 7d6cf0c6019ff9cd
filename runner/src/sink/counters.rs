//! What one flow target has done since the runner started, as `/v1/status` reports it
//! per target. Updated where deliveries settle (`flow::deliver`); the Prometheus metrics
//! count the same events separately, by their labels.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use entrepot_api::status::TargetStatus;

/// One target's counters.
#[derive(Debug, Default)]
pub struct TargetCounters {
    delivered: AtomicU64,
    retried: AtomicU64,
    throttled: AtomicU64,
    stale: AtomicU64,
    /// The last transient failure, until a delivery clears it.
    last_error: Mutex<Option<String>>,
    last_delivered_at: Mutex<Option<jiff::Timestamp>>,
}

impl TargetCounters {
    /// An item was delivered now: the last error is over.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = None;
        *lock(&self.last_delivered_at) = Some(jiff::Timestamp::now());
    }

    /// An attempt failed transiently with `reason` (retried or not).
    pub fn failed(&self, reason: &str) {
        *lock(&self.last_error) = Some(reason.to_owned());
    }

    /// A failed attempt will be retried.
    pub fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// The target answered that its quota is used up.
    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// An item was not delivered: the target already has a newer version.
    pub fn stale(&self) {
        self.stale.fetch_add(1, Ordering::Relaxed);
    }

    /// Items not delivered as stale so far.
    pub fn stale_count(&self) -> u64 {
        self.stale.load(Ordering::Relaxed)
    }

    /// The status of the target whose Connector is `connector`.
    pub fn status(&self, connector: &str) -> TargetStatus {
        TargetStatus {
            connector: connector.to_owned(),
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            last_delivered_at: *lock(&self.last_delivered_at),
        }
    }
}

/// A poisoned lock still holds a usable value: these are plain fields.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_clears_the_last_error_and_each_event_counts_once() {
        let counters = TargetCounters::default();
        counters.failed("target error: 503");
        counters.retried();
        counters.throttled();
        counters.stale();
        let status = counters.status("erp");
        assert_eq!((status.retried, status.throttled, status.delivered), (1, 1, 0));
        assert_eq!(status.last_error.as_deref(), Some("target error: 503"));
        assert_eq!(counters.stale_count(), 1);
        counters.delivered();
        let status = counters.status("erp");
        assert_eq!((status.delivered, status.last_error), (1, None));
        assert!(status.last_delivered_at.is_some());
    }
}
