//! What the controllers of kinds without a workload (Connector, Mapping) share: they
//! look at the object and at the SyncFlows that reference it, and write a status. Their
//! context, their watches, their metrics and their retry policy are the same.

use std::{
    fmt::Debug,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource,
    api::ListParams,
    core::DeserializeGuard,
    runtime::{Controller, controller::Action, events::Recorder, reflector::ObjectRef, watcher},
};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::{
    error::Error,
    events,
    kube_io::objects::{ApiScope, kube_error},
    metrics::Metrics,
    resources::SyncFlow,
};

/// How often an object is looked at again even if nothing changed: a flow that stopped
/// referencing it wakes it only through this.
pub const RESYNC: Duration = Duration::from_secs(300);
/// How long to wait after a failed reconcile (an API error) before trying again.
const RETRY: Duration = Duration::from_secs(15);

/// What every reconcile of a Connector or Mapping controller shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Reconcile counters.
    pub metrics: Metrics,
    /// Publishes the Events seen in `kubectl describe`.
    pub recorder: Recorder,
}

impl Context {
    /// A context for a controller that talks to the API through `client`.
    pub fn new(client: Client, metrics: Metrics) -> Self {
        Self { recorder: events::recorder(client.clone()), client, metrics }
    }
}

/// Runs a controller of `K` named `controller` until `shutdown` completes. A change to a
/// SyncFlow reconciles the objects `named_by` the flow.
pub(crate) async fn run<K, Fut>(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    controller: &'static str,
    named_by: fn(&SyncFlow) -> Vec<&str>,
    reconcile: fn(Arc<DeserializeGuard<K>>, Arc<Context>) -> Fut,
) where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let scope = ApiScope(ctx.client.clone(), namespace.map(str::to_string));
    let mapper = move |guard: DeserializeGuard<SyncFlow>| -> Vec<ObjectRef<DeserializeGuard<K>>> {
        let namespace = guard.meta().namespace.clone().unwrap_or_default();
        let Ok(flow) = &guard.0 else { return Vec::new() };
        named_by(flow).into_iter().map(|name| ObjectRef::new(name).within(&namespace)).collect()
    };
    let timed = move |guard: Arc<DeserializeGuard<K>>, ctx: Arc<Context>| {
        let started = Instant::now();
        let reconciled = reconcile(guard, ctx.clone());
        async move {
            let result = reconciled.await;
            ctx.metrics.reconciled(controller, started.elapsed(), result.as_ref().err());
            result
        }
    };
    let error_policy = move |guard: Arc<DeserializeGuard<K>>, error: &Error, _: Arc<Context>| {
        warn!(
            controller,
            namespace = guard.meta().namespace,
            name = guard.meta().name,
            category = error.category().as_str(),
            error = %error,
            "reconcile failed"
        );
        Action::requeue(RETRY)
    };
    Controller::new(scope.api::<DeserializeGuard<K>>(), watcher::Config::default())
        .watches(scope.api::<DeserializeGuard<SyncFlow>>(), watcher::Config::default(), mapper)
        .graceful_shutdown_on(shutdown)
        .run(timed, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The SyncFlows of `namespace` whose spec `names` the object `name` (flows that cannot
/// be read name nothing).
pub(crate) async fn flows_naming(
    client: &Client,
    namespace: &str,
    name: &str,
    names: fn(&SyncFlow) -> Vec<&str>,
) -> Result<Vec<SyncFlow>, Error> {
    let flows = Api::<DeserializeGuard<SyncFlow>>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|source| kube_error::<SyncFlow>("list", namespace, "", source))?;
    Ok(flows.items.into_iter().filter_map(|guard| guard.0.ok()).filter(|flow| names(flow).contains(&name)).collect())
}
