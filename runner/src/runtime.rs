//! A runner process: its flows, queue and metrics, the webhook and admin HTTP servers,
//! and the workers.

pub mod admin_auth;
mod admin_server;
mod audit;
mod dead_letters;
mod http_server;
mod intake;
mod jetstream;
pub mod kube_users;
pub use jetstream::JetStreamError;
mod queue_file;
pub mod records;
mod retention;
mod sources;

pub use admin_server::AdminServer;
pub use intake::IntakeWriter;

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tracing::{info, warn};

use self::http_server::HEADER_READ_TIMEOUT;
use crate::{
    flow::{self, Flow, FlowError, SourceMode, Workers},
    metrics::Metrics,
    queue::{Queue, QueueError, now_ms},
    quota::Quota,
    secrets::Secrets,
    source::{poll::Poller, webhook},
    supervisor::{Lifetime, Supervisor},
};

use entrepot_api::{
    config::RunnerConfig,
    status::{ConnectorStatus, FlowStatus, QueueStatus, QuotaStatus, RunnerStatus, TargetStatus},
};

pub use crate::queue::DeadLetterEntry;
pub use admin_auth::{ADMIN_TOKEN_HEADER, AdminAuth, REQUESTED_BY_HEADER};
pub use kube_users::{KUBE_TOKEN_HEADER, KubeUsers};

/// A runner cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flow cannot be set up.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// The queue cannot be opened.
    #[error("cannot open the queue in {dir}: {source}")]
    Queue {
        /// The data directory.
        dir: String,
        /// Why.
        source: QueueError,
    },
    /// The flows' queue in NATS JetStream cannot be opened.
    #[error("cannot open the queue in NATS JetStream: {0}")]
    JetStream(#[from] jetstream::JetStreamError),
    /// Two flows share a name (their webhook paths and queues would collide).
    #[error("two SyncFlows are named `{0}` (in different namespaces); one runner needs unique flow names")]
    DuplicateFlow(String),
}

/// A runner's shared state.
pub struct Runtime {
    flows: BTreeMap<String, Arc<Flow>>,
    /// The pollers of the flows with a poll trigger, compiled, by flow.
    pollers: BTreeMap<String, Poller>,
    /// The durable queue.
    pub queue: Queue,
    /// The metrics.
    pub metrics: Metrics,
    /// Group commit of webhook records.
    pub intake: IntakeWriter,
    ready: AtomicBool,
    /// How the admin API's payload and write routes are guarded (open until set).
    admin_auth: OnceLock<AdminAuth>,
    kube_users: OnceLock<kube_users::KubeUsers>,
    /// Every long-lived task; the first to fail makes the runner unready and stops it.
    pub supervisor: Supervisor,
    /// The corrupt queue file set aside at start, if any.
    set_aside: Option<String>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("flows", &self.flows.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Sets up every flow of `config` and opens the queue under `data_dir`.
    pub fn new(config: RunnerConfig, secrets: &Secrets, data_dir: &Path) -> Result<Arc<Self>, StartError> {
        let mut flows = BTreeMap::new();
        // Flows sending to the same Connector share its quota.
        let mut quotas: BTreeMap<String, Arc<Quota>> = BTreeMap::new();
        for fc in config.flows {
            let name = fc.name.clone();
            let mut flow = Flow::new(fc, secrets)?;
            // The grace period of a previous webhook secret survives restarts.
            if let Some(keys) = &mut flow.webhook_keys {
                keys.keep_grace_in(data_dir);
            }
            for t in &mut flow.targets {
                t.quota = quotas.entry(t.sink.connector().to_string()).or_insert_with(|| t.quota.clone()).clone();
            }
            if flows.insert(name.clone(), Arc::new(flow)).is_some() {
                return Err(StartError::DuplicateFlow(name));
            }
        }
        let queue_err = |source| StartError::Queue { dir: data_dir.display().to_string(), source };
        std::fs::create_dir_all(data_dir).map_err(|e| queue_err(QueueError::from(e)))?;
        // A queue written by an earlier version (targets by position) is migrated with
        // the flows' targets as configured now.
        let targets = flows.iter().map(|(name, f)| (name.clone(), f.targets.iter().map(|t| t.name.clone()).collect()));
        let (queue, set_aside) = match jetstream::open(&flows, secrets)? {
            Some(queue) => (queue, None),
            None => {
                let opened = queue_file::open(data_dir, &targets.collect()).map_err(queue_err)?;
                (opened.queue, opened.set_aside.map(|p| p.display().to_string()))
            }
        };
        let metrics = Metrics::new();
        if set_aside.is_some() {
            metrics.queue_set_aside.inc();
        }
        for (name, flow) in &flows {
            let flow = flow.clone();
            queue.watch_arrivals(
                name,
                Arc::new(move |target: Option<&str>| match target {
                    None => flow.wake.notify_one(),
                    Some(target) => {
                        for t in flow.targets.iter().filter(|t| t.name == target) {
                            t.wake.notify_one();
                        }
                    }
                }),
            );
        }
        let mut pollers = BTreeMap::new();
        for (name, flow) in &flows {
            let poller = Poller::new(flow.clone(), queue.clone(), metrics.clone(), flow.max_pending)
                .map_err(|e| FlowError::Compile { flow: name.clone(), field: e.field.into(), source: e.source })?;
            pollers.extend(poller.map(|p| (name.clone(), p)));
        }
        Ok(Arc::new(Self {
            flows,
            pollers,
            queue,
            metrics,
            intake: IntakeWriter::new(),
            ready: AtomicBool::new(false),
            admin_auth: OnceLock::new(),
            kube_users: OnceLock::new(),
            supervisor: Supervisor::default(),
            set_aside,
        }))
    }

    /// The flow named `name`.
    pub fn flow(&self, name: &str) -> Option<&Arc<Flow>> {
        self.flows.get(name)
    }

    /// Starts every flow's workers and the retention purge; they stop when `shutdown`
    /// turns true.
    pub fn spawn_workers(&self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let (sources, mut workers) = self.spawn_all(shutdown, SourceMode::Continuous);
        workers.extend(sources);
        workers
    }

    /// Starts everything; returns the source tasks and the others apart.
    fn spawn_all(
        &self,
        shutdown: watch::Receiver<bool>,
        mode: SourceMode,
    ) -> (Vec<JoinHandle<()>>, Vec<JoinHandle<()>>) {
        if let Some(writer) = self.intake.task(self.queue.clone()) {
            // Runs as long as the runtime: not awaited at shutdown.
            drop(self.supervisor.spawn(None, "intake writer", Lifetime::UntilShutdown, shutdown.clone(), writer));
        }
        let retention = retention::Retention::new(self).run(shutdown.clone());
        let retention = self.supervisor.spawn(None, "retention", Lifetime::UntilShutdown, shutdown.clone(), retention);
        let workers = Workers { queue: self.queue.clone(), metrics: self.metrics.clone(), shutdown };
        let (mut sources, mut others) = (Vec::new(), vec![retention]);
        for f in self.flows.values() {
            sources.extend(sources::spawn(f, self.pollers.get(f.name()), &workers, mode, &self.supervisor));
            others.extend(flow::spawn(f.clone(), &workers, &self.supervisor));
        }
        self.ready.store(true, Ordering::SeqCst);
        (sources, others)
    }

    /// Names of the flows with a webhook source.
    pub fn webhook_flows(&self) -> impl Iterator<Item = &str> {
        self.flows.values().filter(|f| f.config.spec.source.trigger.webhook.is_some()).map(|f| f.name())
    }

    /// Records waiting in any flow's queue (inbox and outboxes).
    async fn pending(&self) -> Result<u64, QueueError> {
        let names: Vec<String> = self.flows.keys().cloned().collect();
        self.queue.off_thread(move |q| names.iter().map(|n| q.pending(n)).sum::<Result<u64, _>>()).await
    }

    /// `POST /webhooks/{flow}`.
    pub fn webhook_router(self: &Arc<Self>) -> Router {
        webhook::router(self.clone())
    }

    /// Guards the admin API's dead-letter and record routes with `auth` (a token file).
    /// Set once, before the admin router is built; a second call is refused.
    pub fn set_admin_auth(&self, auth: AdminAuth) -> Result<(), AdminAuth> {
        self.admin_auth.set(auth)
    }

    /// Also lets Kubernetes users through the guarded routes, by their own token and RBAC
    /// (`kube_users.rs`). Set once, before the admin router is built.
    pub fn set_kube_users(&self, users: kube_users::KubeUsers) -> Result<(), kube_users::KubeUsers> {
        self.kube_users.set(users)
    }

    /// `/healthz`, `/readyz`, `/metrics`, `/v1/status` (open), and, behind the admin
    /// token when one is set ([`Runtime::set_admin_auth`]), `/v1/deadletters` to list,
    /// show, replay and discard dead letters, `/v1/flows/{flow}/records` to hand a
    /// flow source records (reconciliation repairs) and `/v1/audit`, the trail of those.
    pub fn admin_router(self: &Arc<Self>) -> Router {
        let auth = self.admin_auth.get().cloned().unwrap_or_default();
        let auth = admin_auth::Guard { auth, kube: self.kube_users.get().cloned() };
        let guarded = dead_letters::routes()
            .merge(records::routes())
            .merge(audit::routes())
            .route_layer(middleware::from_fn_with_state(auth, admin_auth::require_token));
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route("/v1/status", get(status))
            .merge(guarded)
            .with_state(self.clone())
    }

    /// Counters from the metrics, backlog from the queue; also refreshes the gauges.
    pub async fn status(&self) -> Result<RunnerStatus, QueueError> {
        let backlogs = self.queue.off_thread(|q| q.backlogs()).await?;
        let now = now_ms();
        let m = &self.metrics;
        let mut flows = Vec::new();
        for (name, flow) in &self.flows {
            let backlog = backlogs.get(name).copied().unwrap_or_default();
            let oldest = backlog.oldest_received_ms.map(|t| ((now - t).max(0) / 1000) as u64);
            m.backlog.with_label_values(&[name]).set(backlog.pending as i64);
            m.oldest_pending_seconds.with_label_values(&[name]).set(oldest.unwrap_or(0) as i64);
            m.dead_letters.with_label_values(&[name]).set(backlog.dead_lettered as i64);
            let budget = flow.config.spec.delivery.freshness_budget.get().as_secs();
            m.freshness_budget_seconds.with_label_values(&[name]).set(i64::try_from(budget).unwrap_or(i64::MAX));
            if let Some(held) = self.queue.partitions_held(name) {
                m.partitions_held.with_label_values(&[name]).set(i64::from(held));
            }
            let counts = m.flow_counts(name);
            let targets: Vec<TargetStatus> =
                flow.targets.iter().map(|t| t.counters.status(t.sink.connector())).collect();
            flows.push(FlowStatus {
                name: name.clone(),
                namespace: flow.config.namespace.clone(),
                received: counts.received,
                deduplicated: counts.deduplicated,
                delivered: targets.iter().map(|t| t.delivered).sum(),
                stale: flow.targets.iter().map(|t| t.counters.stale_count()).sum(),
                dead_lettered: backlog.dead_lettered,
                dead_lettered_total: counts.dead_lettered,
                pending: backlog.pending,
                oldest_pending_seconds: oldest,
                targets,
            });
        }
        let latched = self.queue.latched();
        m.queue_latched.set(i64::from(latched.is_some()));
        let queue = QueueStatus { latched, set_aside: self.set_aside.clone() };
        Ok(RunnerStatus { flows, connectors: self.connector_statuses(), queue })
    }

    /// Each Connector's last failure. Flows that share a Connector (local mode) each
    /// have a client: the most recent failure among them is reported.
    fn connector_statuses(&self) -> Vec<ConnectorStatus> {
        let mut by_name: BTreeMap<(String, String), ConnectorStatus> = BTreeMap::new();
        for client in self.flows.values().flat_map(|f| f.connectors.values()) {
            let key = (client.namespace().to_string(), client.name().to_string());
            let entry = by_name.entry(key).or_insert_with(|| ConnectorStatus {
                name: client.name().into(),
                namespace: client.namespace().into(),
                ..ConnectorStatus::default()
            });
            if let Some(ok) = client.health.last_success()
                && entry.last_success_at.is_none_or(|at| at < ok)
            {
                entry.last_success_at = Some(ok);
            }
            if let Some(error) = client.health.last_error()
                && entry.last_error_at.is_none_or(|at| at < error.at)
            {
                entry.last_error_category = Some(error.category);
                entry.last_error_at = Some(error.at);
                entry.last_error_message = Some(error.message);
            }
        }
        for flow in self.flows.values() {
            for target in &flow.targets {
                let key = (flow.config.namespace.clone(), target.sink.connector().to_string());
                if let Some(entry) = by_name.get_mut(&key) {
                    let quota = &target.quota;
                    entry.quota = Some(QuotaStatus {
                        declared_concurrency: quota.concurrency(),
                        concurrency: quota.concurrency_limit(),
                        requests_per_second: quota.rate(),
                    });
                    let m = &self.metrics;
                    m.concurrency_limit.with_label_values(&[&key.1]).set(i64::from(quota.concurrency_limit()));
                    m.connector_in_flight
                        .with_label_values(&[&key.1])
                        .set(i64::from(quota.in_use().iter().sum::<u32>()));
                    if let Some(rate) = quota.rate() {
                        m.connector_rate.with_label_values(&[&key.1]).set(rate);
                    }
                    if let Some((rate, slots)) = quota.shares().map(|s| crate::quota::shares::total(&s)) {
                        let m = &self.metrics;
                        m.quota_share_rate.with_label_values(&[&key.1]).set(rate.unwrap_or(f64::INFINITY));
                        m.quota_share_slots.with_label_values(&[&key.1]).set(i64::from(slots));
                    }
                }
            }
        }
        by_name.into_values().collect()
    }
}

impl webhook::WebhookHost for Runtime {
    fn flow(&self, name: &str) -> Option<&Arc<Flow>> {
        self.flows.get(name)
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn accept(
        &self,
        flow: &str,
        envelope: crate::queue::Envelope,
        prepared: Option<crate::queue::Prepared>,
        delivery_expires_ms: i64,
        max_pending: u64,
    ) -> Result<crate::queue::Accepted, String> {
        // Committed together with the other webhooks arriving meanwhile (group commit).
        let max_bytes = self.flows.get(flow).map_or(u64::MAX, |f| f.config.spec.runner.queue.max_bytes);
        self.intake.accept(flow, envelope, prepared, delivery_expires_ms, (max_pending, max_bytes)).await
    }
}

/// Live unless the queue refuses writes and cannot be made to take them again (it
/// latched after a failed write, such as on a full disk): a restart then may help, and
/// nothing else will.
async fn healthz(State(rt): State<Arc<Runtime>>) -> Response {
    let checked = rt.queue.off_thread(|q| q.check()).await;
    rt.metrics.queue_latched.set(i64::from(checked.is_err()));
    match checked {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("queue unusable: {e}")).into_response(),
    }
}

async fn readyz(State(rt): State<Arc<Runtime>>) -> Response {
    if let Some(failure) = rt.supervisor.failure() {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {failure}")).into_response()
    } else if rt.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    }
}

async fn metrics(State(rt): State<Arc<Runtime>>) -> Response {
    // Refresh the backlog gauges first; a queue error leaves them as they were.
    let _ = rt.status().await;
    let ready = rt.supervisor.failure().is_none() && rt.ready.load(Ordering::SeqCst);
    rt.metrics.ready.set(i64::from(ready));
    ([("content-type", "text/plain; version=0.0.4")], rt.metrics.render()).into_response()
}

async fn status(State(rt): State<Arc<Runtime>>) -> Response {
    match rt.status().await {
        Ok(s) => Json(s).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"error": e.to_string()}))).into_response(),
    }
}

/// How a batch run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchEnd {
    /// Every source took its pass and everything it queued was delivered or
    /// dead-lettered.
    Drained,
    /// Stopped (SIGTERM, the Job's deadline) with records still queued: the next run
    /// delivers them first, from the queue's volume.
    Stopped {
        /// Records left in the queue.
        pending: u64,
    },
}

/// A batch run (`entrepot serve --once`): each source takes one pass, the workers
/// deliver what was queued (retrying as usual), and the run ends once nothing is
/// pending, or when `shutdown` turns true. The admin router is served meanwhile.
pub async fn serve_once(
    rt: Arc<Runtime>,
    admin: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<BatchEnd> {
    let (stop, workers_shutdown) = watch::channel(false);
    let (sources, workers) = rt.spawn_all(workers_shutdown.clone(), SourceMode::Once);
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let adm = tokio::spawn(http_server::serve(admin, rt.admin_router(), HEADER_READ_TIMEOUT, until(workers_shutdown)));
    let mut outside = shutdown.clone();
    let drained = async {
        for source in sources {
            let _ = source.await;
        }
        info!("every source took its pass; delivering what it queued");
        loop {
            match rt.pending().await {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot read the backlog; checking again"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let (stopped_early, failure) = tokio::select! {
        () = drained => (false, None),
        _ = outside.wait_for(|stop| *stop) => (true, None),
        failed = rt.supervisor.failed() => (true, Some(failed)),
    };
    let _ = stop.send(true);
    for w in workers {
        let _ = w.await;
    }
    adm.await.map_err(std::io::Error::other)??;
    if let Some(failed) = failure {
        return Err(std::io::Error::other(failed));
    }
    if stopped_early {
        let pending = rt.pending().await.unwrap_or_default();
        if pending > 0 {
            return Ok(BatchEnd::Stopped { pending });
        }
    }
    Ok(BatchEnd::Drained)
}

/// Serves the webhook and admin routers on their listeners and runs the workers, until
/// `shutdown` turns true; then stops accepting, lets in-flight requests finish, and
/// waits for the workers (a record being delivered stays queued).
pub async fn serve(
    rt: Arc<Runtime>,
    webhooks: TcpListener,
    admin: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_with_admin(rt, webhooks, AdminServer::start(admin), shutdown).await
}

/// [`serve`] with an admin server started before the runtime was (while the queue
/// opened): it is handed the runtime's admin router.
pub async fn serve_with_admin(
    rt: Arc<Runtime>,
    webhooks: TcpListener,
    admin: AdminServer,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // The workers and servers stop on `shutdown`, or when a supervised task fails.
    let (stop, stopping) = watch::channel(false);
    let workers = rt.spawn_workers(stopping.clone());
    admin.open(rt.admin_router());
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let web = http_server::serve(webhooks, rt.webhook_router(), HEADER_READ_TIMEOUT, until(stopping.clone()));
    let watch_stop = async {
        let failure = tokio::select! {
            () = until(shutdown) => None,
            failed = rt.supervisor.failed() => Some(failed),
        };
        let _ = stop.send(true);
        failure
    };
    let (a, failure) = tokio::join!(web, watch_stop);
    let b = admin.stop().await;
    for w in workers {
        let _ = w.await;
    }
    // A shared queue's other runners take this one's share now.
    rt.queue.off_thread(|q| q.leave()).await;
    match failure {
        Some(failed) => Err(std::io::Error::other(failed)),
        None => a.and(b),
    }
}

#[cfg(test)]
mod admin_tests;
#[cfg(test)]
mod intake_tests;
#[cfg(test)]
mod supervision_tests;
#[cfg(test)]
mod webhook_tests;
