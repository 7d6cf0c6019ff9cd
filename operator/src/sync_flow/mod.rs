//! The SyncFlow controller: each SyncFlow becomes a runner workload (ConfigMap,
//! StatefulSet, PodDisruptionBudget, Service, or a CronJob for a batch flow), and the
//! runner's health comes back into its status.
//!
//! A reconcile runs in five steps: dereference (read the referenced Connectors and
//! Mappings) → validate (pure) → build (pure) → apply (server-side apply) → status.
//! A flow that cannot be run is marked `Stalled` and its existing children are left
//! alone: a failed reconcile never tears down the last good runner.

pub mod build;
pub mod events;
pub mod runner_status;
pub mod status;
pub mod validate;

#[cfg(test)]
mod controller_tests;

use std::{
    fmt::Debug,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{Deployment, StatefulSet},
        batch::v1::CronJob,
        core::v1::{ConfigMap, Service},
        policy::v1::PodDisruptionBudget,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::Action,
        events::Recorder,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::info;

use self::{
    build::{MANAGED_BY, RunnerDefaults, Workload},
    runner_status::RunnerStatusReader,
    status::{Budget, Outcome, Rollout},
    validate::{Invalid, References},
};
use crate::{
    error::Error,
    failures::Failures,
    metrics::Metrics,
    resources::{Connector, Mapping, SyncFlow, SyncFlowStatus, conditions},
    status_patch,
};

/// Field manager of every server-side apply the operator sends.
pub const FIELD_MANAGER: &str = "entrepot-operator";
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
            recorder,
            ready: Arc::default(),
            failures: Failures::default(),
        }
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

/// An `Api` for any namespaced kind, in one namespace or all of them.
pub(crate) struct ApiScope(pub(crate) Client, pub(crate) Option<String>);

impl ApiScope {
    pub(crate) fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.1 {
            Some(ns) => Api::namespaced(self.0.clone(), ns),
            None => Api::all(self.0.clone()),
        }
    }
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
    let previous = read_status(&ctx.client, &namespace, &name).await?;
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
    let refs = dereference(&ctx.client, &namespace, flow).await?;
    // 2. Validate.
    let outcome = match validate::validate(&name, &namespace, &flow.spec, &refs) {
        Err(invalid) => {
            // Stalled: the children stay as they are, so the last good runner keeps running.
            update_status(ctx, guard, &previous, &Outcome::Stalled(&invalid)).await?;
            return Err(invalid.into());
        }
        Ok(config) => {
            // 3. Build.
            let children = build::children(flow, &config, &ctx.defaults)?;
            // 4. Apply, then remove what an earlier spec (or version) rendered instead.
            apply(&ctx.client, &namespace, &children.config_map).await?;
            let runner = build::runner_name(&name);
            // What the last reconcile rendered: anything else of the flow's is pruned
            // when the kind of workload changes (mode, or an older operator's Deployment).
            let rendered_before = previous.runner.as_ref().map(|r| r.workload.as_str());
            let prune = |kind: &str| rendered_before != Some(&format!("{kind}/{runner}"));
            match children.workload {
                Workload::Continuous { stateful_set, disruption_budget, service } => {
                    apply(&ctx.client, &namespace, &service).await?;
                    apply(&ctx.client, &namespace, &disruption_budget).await?;
                    // The answer to the apply is the StatefulSet as the API holds it, status included.
                    let stateful_set = apply(&ctx.client, &namespace, &stateful_set).await?;
                    if prune("StatefulSet") {
                        remove::<CronJob>(&ctx.client, &namespace, &runner, guard).await?;
                        remove::<Deployment>(&ctx.client, &namespace, &runner, guard).await?;
                    }
                    let rollout = Rollout::of(&stateful_set);
                    let report = if rollout.desired > 0 {
                        Some(Box::new(runner_status::read(&ctx.client, &ctx.runner_status, &namespace, &name).await))
                    } else {
                        None
                    };
                    Outcome::Applied {
                        workload: format!("StatefulSet/{runner}"),
                        checksum: children.checksum,
                        rollout,
                        suspended: flow.spec.suspend,
                        report,
                    }
                }
                Workload::Batch { cron_job, queue_claim } => {
                    apply(&ctx.client, &namespace, &queue_claim).await?;
                    let cron_job = apply(&ctx.client, &namespace, &cron_job).await?;
                    if prune("CronJob") {
                        remove::<StatefulSet>(&ctx.client, &namespace, &runner, guard).await?;
                        remove::<PodDisruptionBudget>(&ctx.client, &namespace, &runner, guard).await?;
                        remove::<Service>(&ctx.client, &namespace, &runner, guard).await?;
                        remove::<Deployment>(&ctx.client, &namespace, &runner, guard).await?;
                    }
                    Outcome::Scheduled {
                        workload: format!("CronJob/{runner}"),
                        checksum: children.checksum,
                        suspended: flow.spec.suspend,
                        last_schedule: cron_job.status.and_then(|s| s.last_schedule_time).map(|t| t.0),
                    }
                }
            }
        }
    };
    // 5. Status.
    update_status(ctx, guard, &previous, &outcome).await?;
    Ok(Action::requeue(RESYNC))
}

/// Reads the Connectors and Mappings `flow` references, tolerating ones that exist but
/// do not parse (validation reports those).
pub(crate) async fn dereference(client: &Client, namespace: &str, flow: &SyncFlow) -> Result<References, Error> {
    let mut refs = References::default();
    for name in flow.spec.connector_refs() {
        if let Some(found) = get_guarded::<Connector>(client, namespace, name).await? {
            refs.connectors.insert(name.to_string(), found.0.map(|c| c.spec.0).map_err(|e| e.error));
        }
    }
    for name in flow.spec.mapping_refs() {
        if let Some(found) = get_guarded::<Mapping>(client, namespace, name).await? {
            refs.mappings.insert(name.to_string(), found.0.map(|m| m.spec.0).map_err(|e| e.error));
        }
    }
    Ok(refs)
}

pub(crate) async fn get_guarded<K>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<DeserializeGuard<K>>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    Api::<DeserializeGuard<K>>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| kube_error::<K>("get", namespace, name, source))
}

/// Server-side applies `object` (force: the operator owns these fields) and returns
/// the object as the API holds it afterwards.
pub(crate) async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(|source| kube_error::<K>("apply", namespace, &name, source))
}

/// Deletes the `K` named `name` if the flow owns it: what the flow rendered before its
/// mode changed (or what an older operator rendered). Anything else of that name is not
/// ours and is left alone.
async fn remove<K>(client: &Client, namespace: &str, name: &str, flow: &DeserializeGuard<SyncFlow>) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    let Some(existing) = api.get_opt(name).await.map_err(|source| kube_error::<K>("get", namespace, name, source))?
    else {
        return Ok(());
    };
    let ours = existing.owner_references().iter().any(|o| Some(&o.uid) == flow.meta().uid.as_ref());
    if ours {
        api.delete(name, &DeleteParams::background())
            .await
            .map_err(|source| kube_error::<K>("delete", namespace, name, source))?;
        info!(kind = %K::kind(&()), child = name, "removed what the flow no longer renders");
    }
    Ok(())
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
    status_patch::write::<SyncFlow, _>(&ctx.client, namespace, name, &status).await?;
    info!(ready = conditions::is_true(&status.conditions, conditions::READY), "status updated");
    for notice in events::transitions(previous, &status) {
        crate::events::publish(&ctx.recorder, &notice, guard).await;
    }
    Ok(())
}

/// The flow's current status, as the API holds it (see [`status_patch::read`]).
async fn read_status(client: &Client, namespace: &str, name: &str) -> Result<SyncFlowStatus, Error> {
    status_patch::read::<SyncFlow, _>(client, namespace, name).await
}

pub(crate) fn kube_error<K: Resource<DynamicType = ()>>(
    action: &'static str,
    namespace: &str,
    name: &str,
    source: kube::Error,
) -> Error {
    Error::KubeApi { action, kind: K::kind(&()).into_owned(), namespace: namespace.into(), name: name.into(), source }
}

fn error_policy(guard: Arc<DeserializeGuard<SyncFlow>>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.failures.failed(CONTROLLER, &guard, error)
}

/// When to try a failed flow again: doubling from 5 s up to 5 min. A flow waiting for a
/// Connector or Mapping is woken by its watch as soon as that appears, so it only
/// needs the slow end of the backoff.
pub fn retry_delay(error: &Error, attempt: u32) -> Duration {
    const FIRST: Duration = Duration::from_secs(5);
    const LAST: Duration = Duration::from_secs(300);
    if error.category() == "reference_missing" {
        return LAST;
    }
    FIRST.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(LAST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync_flow::build::BuildError;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let error = Error::Build(BuildError::NoOwnerReference);
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(&error, n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retry_delay(&error, u32::MAX).as_secs(), 300);
    }

    #[test]
    fn a_missing_reference_waits_for_its_watch() {
        let error = Error::Invalid(Invalid::Resolve(entrepot_api::config::ResolveError::ConnectorNotFound {
            flow: "f".into(),
            namespace: "n".into(),
            field: "spec.source.connectorRef".into(),
            name: "c".into(),
        }));
        assert_eq!(retry_delay(&error, 1).as_secs(), 300);
    }
}
