//! The drift series of a deleted ReconcileSchedule go with it.
//!
//! `entrepot_reconcile_drift_records` is set by each reconcile of a schedule, but a
//! deleted schedule is not reconciled again (and a finalizer, which would make it so,
//! would hold every deletion up while the operator is away, for a gauge this process
//! alone holds). So a watch of the schedules removes a schedule's series when it is
//! deleted, and, after each (re)list, those of every schedule no longer listed: a
//! deletion the watch missed while it was down.

use std::collections::BTreeSet;

use futures::StreamExt;
use kube::{
    Api, ResourceExt,
    core::DeserializeGuard,
    runtime::{WatchStreamExt, watcher},
};
use tracing::debug;

use crate::{metrics::Metrics, resources::ReconcileSchedule};

/// Watches the ReconcileSchedules of `api` and removes the drift series of those that
/// are gone from `metrics`; never finishes: it runs until dropped.
pub async fn forget_deleted(api: Api<DeserializeGuard<ReconcileSchedule>>, metrics: Metrics) {
    let mut listed = BTreeSet::new();
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Delete(gone)) => {
                let (namespace, name) = (gone.namespace().unwrap_or_default(), gone.name_any());
                debug!(namespace, schedule = name, "schedule deleted: its drift series removed");
                metrics.forget_reconcile_drift(&namespace, &name);
            }
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(schedule)) => {
                listed.insert((schedule.namespace().unwrap_or_default(), schedule.name_any()));
            }
            Ok(watcher::Event::InitDone) => metrics
                .retain_reconcile_drift(|namespace, name| listed.contains(&(namespace.to_string(), name.to_string()))),
            Ok(watcher::Event::Apply(_)) => {}
            // The controller's own watch reports the same trouble; this one backs off
            // and lists again.
            Err(error) => debug!(%error, "watching ReconcileSchedules for deletions"),
        }
    }
    // A watcher's stream does not end; were it to, the controller beside this must
    // not stop with it.
    std::future::pending::<()>().await;
}
