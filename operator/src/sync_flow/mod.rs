//! The SyncFlow controller: each SyncFlow becomes a runner workload (ConfigMap,
//! StatefulSet, PodDisruptionBudget, Service; a Deployment instead of the StatefulSet
//! when the queue is in NATS JetStream; or a CronJob for a batch flow), and the runner's
//! health comes back into its status.
//!
//! A reconcile runs in five steps: dereference (read the referenced Connectors and
//! Mappings) → validate (pure) → build (pure) → apply (server-side apply) → status.
//! A flow that cannot be run is marked `Stalled` and its existing children are left
//! alone: a failed reconcile never tears down the last good runner. A JetStream flow
//! also gets its streams and buckets made before the status step, and a finalizer that
//! deletes them with the flow ([`queue`]).

pub mod apply;
pub mod build;
pub mod defaults;
pub(crate) mod dereference;
pub mod events;
pub mod jetstream;
pub mod names;
pub mod network_policy;
pub mod pod;
pub(crate) mod queue;
pub mod reason;
pub mod runner_status;
pub mod secret_volumes;
pub mod status;
pub mod validate;

#[cfg(test)]
mod controller_tests;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        batch::v1::CronJob,
        core::v1::{ConfigMap, Service},
        policy::v1::PodDisruptionBudget,
    },
    jiff::Timestamp,
};
use kube::{
    Client, Resource, ResourceExt,
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::Action,
        events::Recorder,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tracing::info;

use self::{
    apply::Applied,
    build::{MANAGED_BY, RunnerDefaults},
    runner_status::RunnerStatusReader,
    status::{Budget, Outcome, QueueState, Rollout},
    validate::Invalid,
};
use crate::{
    error::Error,
    failures::Failures,
    kube_io::{self, objects::ApiScope},
    metrics::Metrics,
    nats_io::Connections,
    resources::{Connector, Mapping, SyncFlow, SyncFlowStatus, conditions},
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "syncflow";
/// How often a healthy flow is looked at again even if nothing changed.
pub const RESYNC: Duration = Duration::from_secs(30);

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// What every runner gets unless its flow says otherwise.
    pub defaults: RunnerDefaults,
    /// Reconcile counters.
    pub metrics: Metrics,
    /// Reads the runner pods' `/v1/status`.
    pub runner_status: RunnerStatusReader,
    /// The operator's connections to the NATS servers of JetStream flows.
    pub nats: Connections,
    /// Writes Events on the flows.
    pub recorder: Recorder,
    /// Set once the SyncFlow cache has been filled; `/readyz` reports it.
    pub ready: Arc<AtomicBool>,
    /// Consecutive failures per object, for the retry backoff.
    failures: Failures<DeserializeGuard<SyncFlow>>,
}

impl Context {
    /// A context for a controller that talks to the API through `client`.
    pub fn new(client: Client, defaults: RunnerDefaults, metrics: Metrics) -> Self {
        Self::with_runner_status(client, defaults, metrics, RunnerStatusReader::default())
    }

    /// As [`new`](Self::new), reading runner status with `reader` (tests point it at a
    /// local address).
    pub fn with_runner_status(
        client: Client,
        defaults: RunnerDefaults,
        metrics: Metrics,
        reader: RunnerStatusReader,
    ) -> Self {
        let recorder = crate::events::recorder(client.clone());
        Self {
            client,
            defaults,
            metrics,
            runner_status: reader,
            nats: Connections::default(),
            recorder,
            ready: Arc::default(),
            failures: Failures::default(),
        }
    }

    /// This context, reaching NATS through `nats` (with the operator's credentials).
    pub fn with_nats(self, nats: Connections) -> Self {
        Self { nats, ..self }
    }
}

/// Runs the SyncFlow controller until `shutdown` completes; then finishes the
/// reconciles in flight and returns. `namespace` limits it to one namespace.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let scope = ApiScope(ctx.client.clone(), namespace.map(str::to_string));
    // Children are found by their label; the owner references then name the flow.
    let children = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));

    let controller = Controller::new(scope.api::<DeserializeGuard<SyncFlow>>(), watcher::Config::default());
    let flows = controller.store();
    let ready = ctx.ready.clone();
    let ready_store = flows.clone();
    tokio::spawn(async move {
        // The store wakes only the last task waiting on it (kube-runtime's DelayedInit
        // keeps one waker), and the controller's own runner waits on it too: asking
        // again now and then is what makes this waiter see it.
        while tokio::time::timeout(Duration::from_millis(250), ready_store.wait_until_ready()).await.is_err() {}
        ready.store(true, Ordering::Relaxed);
    });
    let by_connector = flows.clone();
    let by_mapping = flows;

    controller
        .owns(scope.api::<ConfigMap>(), children.clone())
        .owns(scope.api::<StatefulSet>(), children.clone())
        .owns(scope.api::<Deployment>(), children.clone())
        .owns(scope.api::<CronJob>(), children.clone())
        .owns(scope.api::<PodDisruptionBudget>(), children.clone())
        .owns(scope.api::<Service>(), children)
        // A flow waiting for a Connector or Mapping goes on as soon as it appears or changes.
        .watches(scope.api::<DeserializeGuard<Connector>>(), watcher::Config::default(), move |c| {
            referencing(&by_connector, &c, |flow, name| flow.spec.connector_refs().contains(&name))
        })
        .watches(scope.api::<DeserializeGuard<Mapping>>(), watcher::Config::default(), move |m| {
            referencing(&by_mapping, &m, |flow, name| flow.spec.mapping_refs().contains(&name))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The flows in `referenced`'s namespace that name it.
fn referencing<R: Resource>(
    flows: &Store<DeserializeGuard<SyncFlow>>,
    referenced: &R,
    names_it: impl Fn(&SyncFlow, &str) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<SyncFlow>>> {
    let (Some(name), namespace) = (referenced.meta().name.as_deref(), referenced.meta().namespace.as_deref()) else {
        return Vec::new();
    };
    flows
        .state()
        .iter()
        .filter(|guard| guard.meta().namespace.as_deref() == namespace)
        .filter(|guard| guard.0.as_ref().is_ok_and(|flow| names_it(flow, name)))
        .map(|guard| ObjectRef::from_obj(guard.as_ref()))
        .collect()
}

async fn reconcile(guard: Arc<DeserializeGuard<SyncFlow>>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.failures.run(&ctx.metrics, CONTROLLER, &guard, reconcile_flow(&guard, &ctx)).await
}

#[tracing::instrument(skip_all, fields(namespace = guard.meta().namespace, flow = guard.meta().name))]
async fn reconcile_flow(guard: &DeserializeGuard<SyncFlow>, ctx: &Context) -> Result<Action, Error> {
    let namespace = guard.meta().namespace.clone().unwrap_or_default();
    let name = guard.name_any();
    let previous: SyncFlowStatus = kube_io::status::read::<SyncFlow, _>(&ctx.client, &namespace, &name).await?;
    if guard.meta().deletion_timestamp.is_some() {
        return finalize(ctx, guard, &previous).await;
    }
    let flow = match &guard.0 {
        Ok(flow) => flow,
        Err(unreadable) => {
            // The object passed the CRD schema but not our types (say a duration the
            // schema's pattern allows and the parser does not): report it on the object.
            let invalid = Invalid::UnreadableSpec { flow: name.clone(), error: unreadable.error.clone() };
            update_status(ctx, guard, &previous, &Outcome::Stalled(&invalid)).await?;
            return Err(invalid.into());
        }
    };

    // 1. Dereference.
    let refs = dereference::references(&ctx.client, &namespace, flow).await?;
    // 2. Validate, with the operator's NATS defaults filled into a JetStream flow.
    let config = match validate::validate(&name, &namespace, &flow.spec, &refs)
        .and_then(|config| jetstream::with_defaults(config, &ctx.defaults.nats))
    {
        Ok(config) => config,
        Err(invalid) => {
            // Stalled: the children stay as they are, so the last good runner keeps running.
            update_status(ctx, guard, &previous, &Outcome::Stalled(&invalid)).await?;
            return Err(invalid.into());
        }
    };
    let jetstream = jetstream::queue_of(&config);
    // The finalizer before anything is made in NATS, so that nothing outlives the flow.
    queue::hold_finalizer(&ctx.client, flow, jetstream.is_some()).await?;
    // 3. Build.
    let children = build::children(flow, &config, &ctx.defaults)?;
    // 4. Apply.
    let target = apply::Target {
        flow: &name,
        namespace: &namespace,
        owner_uid: guard.meta().uid.as_deref().unwrap_or_default(),
        rendered_before: previous.runner.as_ref().map(|r| r.workload.as_str()),
    };
    let applied = apply::children(&ctx.client, &target, &children).await?;
    // 4b. The queue in JetStream: its streams and buckets as planned, and its backlog.
    let (queue_state, unreachable) = match &jetstream {
        None => (None, None),
        Some(q) => match queue::observe(&ctx.nats, &name, q).await {
            Ok(state) => (Some(state), None),
            Err(e) => (Some(QueueState::Unreachable(queue::unreachable_message(&e.source))), Some(e)),
        },
    };
    // 5. Status, with what the runners say about themselves.
    let workload = children.workload.reference(&name);
    let rollout = match &applied {
        Applied::Continuous(stateful_set) => Rollout::of(stateful_set),
        Applied::Shared(deployment) => Rollout::of_deployment(deployment),
        Applied::Batch(_) => Rollout::default(),
    };
    let outcome = match applied {
        Applied::Batch(cron_job) => Outcome::Scheduled {
            workload,
            checksum: children.checksum,
            suspended: flow.spec.suspend,
            last_schedule: cron_job.status.and_then(|s| s.last_schedule_time).map(|t| t.0),
            queue: queue_state,
        },
        Applied::Continuous(_) | Applied::Shared(_) => {
            let report = if rollout.desired > 0 {
                Some(Box::new(runner_status::read(&ctx.client, &ctx.runner_status, &namespace, &name).await))
            } else {
                None
            };
            Outcome::Applied {
                workload,
                checksum: children.checksum,
                rollout,
                suspended: flow.spec.suspend,
                report,
                queue: queue_state,
            }
        }
    };
    update_status(ctx, guard, &previous, &outcome).await?;
    match unreachable {
        // Retried with the error policy's backoff.
        Some(unreachable) => Err(unreachable.into()),
        None => Ok(Action::requeue(RESYNC)),
    }
}

/// A flow being deleted: a JetStream flow's streams and buckets are deleted and its
/// finalizer removed; its children go by their owner references. While NATS cannot be
/// reached the flow stays, and its status says why.
async fn finalize(
    ctx: &Context,
    guard: &DeserializeGuard<SyncFlow>,
    previous: &SyncFlowStatus,
) -> Result<Action, Error> {
    match queue::clean_up(&ctx.client, &ctx.nats, &ctx.defaults.nats, guard).await? {
        None => Ok(Action::await_change()),
        Some(blocked) => {
            update_status(ctx, guard, previous, &Outcome::CleanupBlocked(blocked.to_string())).await?;
            Err(blocked.into())
        }
    }
}

/// Merges this reconcile's outcome into the flow's status and writes it, unless that
/// changes nothing; then raises an Event for each transition worth one.
///
/// `previous` is read from the API at the start of the reconcile, not from the
/// controller's cache: a cached flow can predate the status this controller wrote a
/// moment ago, and merging into that would move a condition's `lastTransitionTime`
/// without a transition.
async fn update_status(
    ctx: &Context,
    guard: &DeserializeGuard<SyncFlow>,
    previous: &SyncFlowStatus,
    outcome: &Outcome<'_>,
) -> Result<(), Error> {
    let (namespace, name) = (guard.meta().namespace.clone().unwrap_or_default(), guard.name_any());
    let (namespace, name) = (namespace.as_str(), name.as_str());
    let generation = guard.meta().generation.unwrap_or_default();
    let freshness = guard.0.as_ref().map_or(Duration::from_secs(300), |f| f.spec.delivery.freshness_budget.get());
    let status = status::desired_status(previous, generation, outcome, Budget { freshness }, Timestamp::now());
    if &status == previous {
        return Ok(());
    }
    kube_io::status::write::<SyncFlow, _>(&ctx.client, namespace, name, &status).await?;
    info!(ready = conditions::is_true(&status.conditions, conditions::READY), "status updated");
    for notice in events::transitions(previous, &status) {
        crate::events::publish(&ctx.recorder, &notice, guard).await;
    }
    Ok(())
}

fn error_policy(guard: Arc<DeserializeGuard<SyncFlow>>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.failures.failed(CONTROLLER, &guard, error)
}
