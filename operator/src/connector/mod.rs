//! The Connector controller: a Connector has no workload of its own. Its status says
//! whether its spec is valid (`Ready`), whether its system answered the runners that
//! call it (`Reachable`, read from the SyncFlows' `status.connectors`, never by calling
//! the system or reading a Secret), and which SyncFlows use it.

pub mod status;

#[cfg(test)]
mod controller_tests;

use std::{future::Future, sync::Arc};

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt, core::DeserializeGuard, runtime::controller::Action};
use tracing::info;

use self::status::UsingFlow;
pub use crate::observer::Context;
use crate::{
    error::Error,
    events, kube_io, observer,
    resources::{Connector, ConnectorStatus, SyncFlow},
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "connector";

/// Runs the Connector controller until `shutdown` completes; then finishes the
/// reconciles in flight and returns. `namespace` limits it to one namespace.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // A flow's refs or its runners' reports changed: the Connectors it names are looked at again.
    observer::run(ctx, namespace, shutdown, CONTROLLER, named_by, reconcile).await;
}

/// The Connectors a flow references or has runner reports about.
fn named_by(flow: &SyncFlow) -> Vec<&str> {
    let mut names = referenced_by(flow);
    names.extend(flow.status.iter().flat_map(|s| s.connectors.iter().map(|r| r.name.as_str())));
    names.sort_unstable();
    names.dedup();
    names
}

fn referenced_by(flow: &SyncFlow) -> Vec<&str> {
    flow.spec.connector_refs()
}

#[tracing::instrument(skip_all, fields(namespace = guard.meta().namespace, connector = guard.meta().name))]
async fn reconcile(guard: Arc<DeserializeGuard<Connector>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = guard.meta().namespace.clone().unwrap_or_default();
    let name = guard.name_any();
    let generation = guard.meta().generation.unwrap_or_default();

    // Validate: the runner's own rules, so a Connector Ready here is one a runner accepts.
    let invalid = match &guard.0 {
        Err(unreadable) => {
            Some(format!("Connector {name}: the spec cannot be read: {}; fix the field it names", unreadable.error))
        }
        Ok(connector) => entrepot_api::rules::connector::validate(&name, &connector.spec).err().map(|e| e.to_string()),
    };
    // Dereference: the flows that use it, with their runners' reports.
    let using: Vec<UsingFlow> = observer::flows_naming(&ctx.client, &namespace, &name, referenced_by)
        .await?
        .into_iter()
        .map(|flow| UsingFlow { name: flow.name_any(), reports: flow.status.map(|s| s.connectors).unwrap_or_default() })
        .collect();
    // Status, and the Events of its transitions.
    let previous: ConnectorStatus = kube_io::status::read::<Connector, _>(&ctx.client, &namespace, &name).await?;
    let next = status::desired_status(&previous, generation, &name, invalid.as_deref(), &using, Timestamp::now());
    if next != previous {
        // Published before the status is written: if writing fails, the next reconcile
        // sees the same transition and publishes again (the recorder folds repeats).
        for notice in status::notices(&previous.conditions, &next.conditions) {
            events::publish(&ctx.recorder, &notice, &*guard).await;
        }
        kube_io::status::write::<Connector, _>(&ctx.client, &namespace, &name, &next).await?;
        info!(valid = invalid.is_none(), used_by = next.used_by.len(), "status updated");
    }
    Ok(Action::requeue(observer::RESYNC))
}
