//! What the SyncFlow and ReconcileSchedule controllers share around each reconcile: the
//! metrics of every run, and the count of consecutive failures per object that sets the
//! retry backoff of their error policy.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

use kube::{
    Resource,
    runtime::{controller::Action, reflector::ObjectRef},
};
use tracing::warn;

use crate::{
    error::{Category, Error},
    metrics::Metrics,
};

/// Consecutive failures per object of kind `K`.
pub struct Failures<K: Resource>(Mutex<HashMap<ObjectRef<K>, u32>>)
where
    K::DynamicType: Eq + Hash + Clone;

impl<K: Resource<DynamicType = ()>> Default for Failures<K> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<K: Resource<DynamicType = ()>> Failures<K> {
    /// Runs one reconcile of `object`: records it in the metrics of `controller`, and
    /// forgets the object's failures when it succeeds.
    pub async fn run(
        &self,
        metrics: &Metrics,
        controller: &str,
        object: &K,
        reconcile: impl Future<Output = Result<Action, Error>>,
    ) -> Result<Action, Error> {
        let started = Instant::now();
        let result = reconcile.await;
        metrics.reconciled(controller, started.elapsed(), result.as_ref().err());
        if result.is_ok() {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&ObjectRef::from_obj(object));
        }
        result
    }

    /// The error policy: counts the failure, logs it, and says when to try again.
    pub fn failed(&self, controller: &str, object: &K, error: &Error) -> Action {
        let attempt = {
            let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let count = failures.entry(ObjectRef::from_obj(object)).or_default();
            *count = count.saturating_add(1);
            *count
        };
        let delay = retry_delay(error.category(), attempt);
        warn!(
            controller,
            namespace = object.meta().namespace,
            name = object.meta().name,
            category = error.category().as_str(),
            error = %error,
            attempt,
            retry_in_seconds = delay.as_secs(),
            "reconcile failed"
        );
        Action::requeue(delay)
    }
}

/// When to try a failed object again: doubling from 5 s up to 5 min. An object waiting
/// for something it references is woken by its watch as soon as that appears, so it
/// only needs the slow end of the backoff.
pub fn retry_delay(category: Category, attempt: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(5);
    const LAST: Duration = Duration::from_secs(300);
    if category == Category::ReferenceMissing {
        return LAST;
    }
    FIRST.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(LAST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(Category::InvalidObject, n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retry_delay(Category::KubeApi, u32::MAX).as_secs(), 300);
    }

    #[test]
    fn a_missing_reference_waits_for_its_watch() {
        assert_eq!(retry_delay(Category::ReferenceMissing, 1).as_secs(), 300);
    }
}
