//! The retention task: once a minute, dead letters and audit entries older than their
//! flow's `delivery.deadLetter.retention` are purged, and idempotency keys and delivery ids
//! whose dedup window has passed are forgotten, and so are the stale guard's last
//! versions of keys not delivered for a retention (so the queue file does not grow
//! forever).

use std::{collections::BTreeMap, time::Duration};

use tokio::sync::watch;
use tracing::{info, warn};

use super::Runtime;
use crate::{
    metrics::Metrics,
    queue::{Queue, QueueError, now_ms},
};
use entrepot_api::resource::DeadLetterSpec;

/// Time between two purges.
const EVERY: Duration = Duration::from_secs(60);

/// The retention of each flow, and where to purge.
pub(super) struct Retention {
    queue: Queue,
    metrics: Metrics,
    retention_ms: BTreeMap<String, i64>,
    /// How long a key's last version is kept: the longest an older record of the key can
    /// still arrive through the runner (a replayed dead letter, a repeat within the dedup
    /// window).
    versions_ms: BTreeMap<String, i64>,
}

impl Retention {
    pub(super) fn new(rt: &Runtime) -> Self {
        let retention_ms = rt
            .flows
            .iter()
            .map(|(name, flow)| (name.clone(), millis(flow.config.spec.delivery.dead_letter.retention.get())))
            .collect::<BTreeMap<_, _>>();
        let versions_ms = rt
            .flows
            .iter()
            .map(|(name, flow)| {
                let window = millis(flow.config.spec.delivery.dedup_window.get());
                (name.clone(), window.max(retention_ms[name]))
            })
            .collect();
        Self { queue: rt.queue.clone(), metrics: rt.metrics.clone(), retention_ms, versions_ms }
    }

    /// One purge at `now`. Dead letters of flows this runner no longer carries are kept
    /// for the default retention: nobody else would ever remove them.
    fn purge(&self, now: i64) -> Result<(), QueueError> {
        let default = millis(DeadLetterSpec::default().retention.get());
        let cutoff = |flow: &str| now.saturating_sub(self.retention_ms.get(flow).copied().unwrap_or(default));
        let dead_letters = self.queue.purge_dead_letters(&cutoff)?;
        for (flow, count) in &dead_letters {
            self.metrics.dead_letters_expired.with_label_values(&[flow]).inc_by(*count);
            info!(flow = %flow, count, "dead letters past their retention purged");
        }
        let audit = self.queue.purge_audit(&cutoff)?;
        if audit > 0 {
            info!(count = audit, "audit entries past their flow's dead-letter retention purged");
        }
        let forgotten = self.queue.purge_expired(now)?;
        self.metrics.dedup_entries_expired.inc_by(forgotten);
        let versions_cutoff = |flow: &str| now.saturating_sub(self.versions_ms.get(flow).copied().unwrap_or(default));
        let versions = self.queue.purge_versions(&versions_cutoff, now)?;
        self.metrics.versions_expired.inc_by(versions);
        Ok(())
    }

    /// Purges now and then every minute, until shutdown.
    pub(super) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let me = std::sync::Arc::new(self);
        loop {
            let task = me.clone();
            if let Err(e) =
                tokio::task::spawn_blocking(move || task.purge(now_ms())).await.expect("queue purge panicked")
            {
                warn!(error = %e, "cannot purge expired dead letters and dedup entries; will try again");
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
