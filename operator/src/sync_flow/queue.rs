//! The reconcile steps of a flow whose queue is in NATS JetStream: its finalizer, added
//! before anything exists in NATS and removed once nothing does; its streams and buckets
//! made as planned and read for the backlog, with the quota buckets of the Connectors it
//! sends to; and their deletion with the flow (a Connector's bucket only once no other
//! flow sends there).
//!
//! The operator reaches NATS with its own credentials ([`crate::nats_io`]); it never
//! reads the Secrets a flow names for its runners.

use kube::{Client, Resource, ResourceExt, core::DeserializeGuard};
use tracing::info;

use super::{
    jetstream::{FINALIZER, FinalizerStep, NatsDefaults, Queue, effective_url, finalizer_step, unshared_connectors},
    status::QueueState,
};
use crate::{
    error::{Category, Error},
    kube_io::{finalizers, objects},
    nats_io::{Connections, QueueError},
    resources::SyncFlow,
};
use entrepot_api::{jetstream::Layout, resource::SyncFlowSpec};

/// Why a deleted JetStream flow is kept: its streams could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum CleanupBlocked {
    /// NATS could not be reached, or refused.
    #[error(
        "SyncFlow {flow} is being deleted, but its JetStream streams and buckets cannot be: {source}; the \
         finalizer {FINALIZER} keeps the SyncFlow until they are deleted (docs/scaling.md says how to let it \
         go without them)"
    )]
    Unreachable {
        /// The flow.
        flow: String,
        /// What NATS said.
        source: QueueError,
    },
    /// Neither the flow (whose spec may not be readable) nor the chart names a server.
    #[error(
        "SyncFlow {flow} is being deleted, but no NATS server is named (spec.runner.queue.jetstream.url, \
         Helm value nats.url), so its streams and buckets cannot be deleted; the finalizer {FINALIZER} keeps the \
         SyncFlow: remove it by hand once they are gone (docs/scaling.md)"
    )]
    NoServer {
        /// The flow.
        flow: String,
    },
}

impl From<CleanupBlocked> for Error {
    fn from(blocked: CleanupBlocked) -> Self {
        Self::refused(Category::QueueUnreachable, blocked)
    }
}

/// A queue that could not be provisioned or read, as the reconcile's error.
#[derive(Debug, thiserror::Error)]
#[error("SyncFlow {flow}: {source}")]
pub struct Unreachable {
    /// The flow.
    pub flow: String,
    /// What NATS said.
    pub source: QueueError,
}

impl From<Unreachable> for Error {
    fn from(unreachable: Unreachable) -> Self {
        Self::refused(Category::QueueUnreachable, unreachable)
    }
}

/// Puts the finalizer on a flow whose queue is in JetStream, before anything is made
/// there, and takes it off a flow that moved its queue out: what it left in NATS stays
/// (with any records still in it) for whoever wants them back.
pub(super) async fn hold_finalizer(client: &Client, flow: &SyncFlow, uses_jetstream: bool) -> Result<(), Error> {
    let has = flow.finalizers().iter().any(|f| f == FINALIZER);
    match finalizer_step(has, false, uses_jetstream) {
        FinalizerStep::Add => finalizers::add::<SyncFlow>(client, &flow.metadata, FINALIZER).await,
        FinalizerStep::Release => {
            let layout = Layout::new(&flow.namespace().unwrap_or_default(), &flow.name_any());
            info!(streams = ?layout.streams(), "the queue left JetStream; its streams are kept");
            finalizers::remove::<SyncFlow>(client, &flow.metadata, FINALIZER).await
        }
        FinalizerStep::Keep | FinalizerStep::CleanUp => Ok(()),
    }
}

/// Makes the flow's streams and buckets, and the quota buckets of the Connectors it sends
/// to, as planned, then reads its backlog.
pub(super) async fn observe(nats: &Connections, flow: &str, queue: &Queue) -> Result<QueueState, Unreachable> {
    let unreachable = |source| Unreachable { flow: flow.to_string(), source };
    nats.provision(&queue.url, &queue.plans).await.map_err(unreachable)?;
    nats.provision_shared(&queue.url, &queue.connector_plans).await.map_err(unreachable)?;
    let backlog = nats.backlog(&queue.url, &queue.layout).await.map_err(unreachable)?;
    Ok(QueueState::Reachable(backlog))
}

/// The status message of a queue that cannot be reached: what NATS said, and where to look.
pub(super) fn unreachable_message(error: &QueueError) -> String {
    format!(
        "{error}; the flow's runners need it too. Check spec.runner.queue.jetstream.url (or the Helm value \
         nats.url) and the operator's own NATS credentials (Helm value nats.operatorCredentialsSecret or \
         nats.operatorTokenSecret)"
    )
}

/// For a flow being deleted: deletes its streams and buckets, and the quota bucket of
/// each Connector it sends to that no other flow of the namespace still sends to through
/// JetStream, then removes the finalizer. `Ok(None)` when there was nothing to do or it
/// is done; `Ok(Some(blocked))` when the streams could not be deleted and the flow stays.
/// A flow whose spec cannot be read leaves the Connectors' buckets: which it sent to is
/// not known.
pub(super) async fn clean_up(
    client: &Client,
    nats: &Connections,
    defaults: &NatsDefaults,
    guard: &DeserializeGuard<SyncFlow>,
) -> Result<Option<CleanupBlocked>, Error> {
    let meta = guard.meta();
    let has = meta.finalizers.iter().flatten().any(|f| f == FINALIZER);
    let spec = guard.0.as_ref().ok().and_then(|f| f.spec.runner.queue.jetstream.as_ref());
    if finalizer_step(has, true, spec.is_some()) != FinalizerStep::CleanUp {
        return Ok(None);
    }
    let flow = guard.name_any();
    let Some(url) = effective_url(spec, defaults) else {
        return Ok(Some(CleanupBlocked::NoServer { flow }));
    };
    let namespace = meta.namespace.clone().unwrap_or_default();
    let layout = Layout::new(&namespace, &flow);
    if let Err(source) = nats.remove(&url, &layout).await {
        return Ok(Some(CleanupBlocked::Unreachable { flow, source }));
    }
    if let Ok(leaving) = &guard.0 {
        let buckets = unshared_buckets(client, &namespace, &flow, &leaving.spec).await?;
        if let Err(source) = nats.remove_buckets(&url, &buckets).await {
            return Ok(Some(CleanupBlocked::Unreachable { flow, source }));
        }
    }
    finalizers::remove::<SyncFlow>(client, meta, FINALIZER).await?;
    Ok(None)
}

/// The quota buckets of the Connectors `leaving` (flow `flow`, being deleted) sends to
/// that no other SyncFlow of `namespace` needs: read from the API, not the controller's
/// cache, so that a flow created a moment ago counts.
async fn unshared_buckets(
    client: &Client,
    namespace: &str,
    flow: &str,
    leaving: &SyncFlowSpec,
) -> Result<Vec<String>, Error> {
    let flows = objects::list_guarded::<SyncFlow>(client, namespace).await?;
    let staying = flows
        .iter()
        .filter(|other| other.name_any() != flow && other.meta().deletion_timestamp.is_none())
        .map(|other| other.0.as_ref().ok().map(|f| &f.spec.0));
    let unshared = unshared_connectors(leaving, staying);
    Ok(unshared.into_iter().map(|connector| Layout::connector_bucket(namespace, connector)).collect())
}
