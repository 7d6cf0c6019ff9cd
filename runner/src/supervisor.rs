//! Supervised tasks: every long-lived task of a runner (a flow's source, prepare and
//! delivery workers, the runtime's background tasks) is spawned here. One that panics,
//! or ends while the runner is not shutting down, is a failure: it is logged, `/readyz`
//! reports it, and the runner stops and exits non-zero so Kubernetes restarts it
//! (rather than a target silently receiving nothing while the pod looks ready).

use std::future::Future;

use tokio::{sync::watch, task::JoinHandle};
use tracing::error;

/// A supervised task that stopped when it should not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{worker} {reason}; the runner stops so that it is restarted", flow.as_ref().map(|f| format!("SyncFlow {f}: ")).unwrap_or_default())]
pub struct WorkerFailure {
    /// The flow the task works for; `None` for a runner-wide task.
    pub flow: Option<String>,
    /// Which task (`prepare`, `delivery to erp`, `source`, `retention`, ...).
    pub worker: String,
    /// What happened (`panicked: <message>`, `ended`).
    pub reason: String,
}

/// How long a task is expected to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Until shutdown: ending before is a failure.
    UntilShutdown,
    /// It may end on its own (a batch run's source after its one pass); only a panic is
    /// a failure.
    MayEnd,
}

/// Spawns supervised tasks and keeps the first failure. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Supervisor {
    failure: watch::Sender<Option<WorkerFailure>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self { failure: watch::channel(None).0 }
    }
}

impl Supervisor {
    /// Spawns `task` as `worker` (of `flow`). The handle ends when the task does. A
    /// task that ends once `shutdown` is true is stopping as asked.
    pub fn spawn(
        &self,
        flow: Option<&str>,
        worker: &str,
        lifetime: Lifetime,
        shutdown: watch::Receiver<bool>,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        let inner = tokio::spawn(task);
        let failure = self.failure.clone();
        let (flow, worker) = (flow.map(String::from), worker.to_string());
        tokio::spawn(async move {
            let reason = match inner.await {
                Ok(()) if lifetime == Lifetime::MayEnd || *shutdown.borrow() => return,
                Ok(()) => "ended while the runner was not shutting down".to_string(),
                Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
                // Cancelled: the async runtime itself is going away.
                Err(_) => return,
            };
            error!(flow = flow.as_deref().unwrap_or(""), worker = %worker, reason = %reason,
                   "a runner task stopped; the runner is not ready and exits so that it is restarted");
            let failed = WorkerFailure { flow, worker, reason };
            failure.send_if_modified(|first| first.is_none() && first.replace(failed).is_none());
        })
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<WorkerFailure> {
        self.failure.borrow().clone()
    }

    /// Waits for the first failure.
    pub async fn failed(&self) -> WorkerFailure {
        let mut rx = self.failure.subscribe();
        let failed = rx.wait_for(Option::is_some).await.expect("the supervisor holds the sender");
        failed.clone().expect("waited for a failure")
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload.downcast_ref::<&str>().map_or("(no message)".into(), |s| (*s).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_a_failure_that_names_its_flow_and_worker() {
        let supervisor = Supervisor::default();
        let (_stop, shutdown) = watch::channel(false);
        let handle = supervisor.spawn(Some("orders"), "prepare", Lifetime::UntilShutdown, shutdown, async {
            panic!("mapping state corrupt");
        });
        handle.await.unwrap();
        let failed = tokio::time::timeout(Duration::from_secs(5), supervisor.failed()).await.unwrap();
        assert_eq!(
            failed,
            WorkerFailure {
                flow: Some("orders".into()),
                worker: "prepare".into(),
                reason: "panicked: mapping state corrupt".into()
            }
        );
        assert!(failed.to_string().starts_with("SyncFlow orders: prepare panicked: mapping state corrupt"), "{failed}");
    }

    #[tokio::test]
    async fn a_task_ending_early_is_a_failure_but_not_at_shutdown_or_when_it_may_end() {
        let supervisor = Supervisor::default();
        let (stop, shutdown) = watch::channel(false);
        supervisor.spawn(None, "batch source", Lifetime::MayEnd, shutdown.clone(), async {}).await.unwrap();
        assert_eq!(supervisor.failure(), None, "a task that may end");
        let mut rx = shutdown.clone();
        let stopping = supervisor.spawn(None, "retention", Lifetime::UntilShutdown, shutdown.clone(), async move {
            let _ = rx.wait_for(|s| *s).await;
        });
        stop.send(true).unwrap();
        stopping.await.unwrap();
        assert_eq!(supervisor.failure(), None, "a task stopping at shutdown");

        let supervisor = Supervisor::default();
        let (_stop, shutdown) = watch::channel(false);
        supervisor.spawn(Some("f"), "delivery to erp", Lifetime::UntilShutdown, shutdown, async {}).await.unwrap();
        let failed = supervisor.failure().expect("a failure");
        assert_eq!(
            (failed.worker.as_str(), failed.reason.as_str()),
            ("delivery to erp", "ended while the runner was not shutting down")
        );
    }
}
