//! What the SyncFlow and ReconcileSchedule controllers share around each reconcile: the
//! metrics of every run, and the count of consecutive failures per object that sets the
//! retry backoff of their error policy.

use std::{collections::HashMap, future::Future, hash::Hash, sync::Mutex, time::Instant};

use kube::{
    Resource,
    runtime::{controller::Action, reflector::ObjectRef},
};
use tracing::warn;

use crate::{error::Error, metrics::Metrics, sync_flow::retry_delay};

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
        let delay = retry_delay(error, attempt);
        warn!(
            controller,
            namespace = object.meta().namespace,
            name = object.meta().name,
            category = error.category(),
            error = %error,
            attempt,
            retry_in_seconds = delay.as_secs(),
            "reconcile failed"
        );
        Action::requeue(delay)
    }
}
