//! The Mapping controller: compiles each Mapping's jq program with its lookup tables,
//! runs its declared tests, and reports the outcome, the canonical entity it produces
//! and the SyncFlows using it in its status.
//!
//! The SyncFlow controller runs the same checks itself before it renders a Mapping
//! into a runner's configuration, so a flow never waits on this status to refuse a
//! bad Mapping; this controller is what a human reads.

pub mod status;

#[cfg(test)]
mod controller_tests;

use std::{future::Future, sync::Arc};

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt, core::DeserializeGuard, runtime::controller::Action};
use tracing::info;

use self::status::Verdict;
pub use crate::observer::Context;
use crate::{
    error::Error,
    events, kube_io, observer,
    resources::{Mapping, MappingStatus, ProducedEntity, SyncFlow},
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "mapping";

/// Runs the Mapping controller until `shutdown` completes; then finishes the
/// reconciles in flight and returns. `namespace` limits it to one namespace.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // For `usedBy`: a flow created, deleted or pointed elsewhere.
    observer::run(ctx, namespace, shutdown, CONTROLLER, referenced_by, reconcile).await;
}

fn referenced_by(flow: &SyncFlow) -> Vec<&str> {
    flow.spec.mapping_refs()
}

#[tracing::instrument(skip_all, fields(namespace = guard.meta().namespace, mapping = guard.meta().name))]
async fn reconcile(guard: Arc<DeserializeGuard<Mapping>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = guard.meta().namespace.clone().unwrap_or_default();
    let name = guard.name_any();
    let generation = guard.meta().generation.unwrap_or_default();

    // Validate: compile and run the tests.
    let (verdict, produces) = match &guard.0 {
        Err(unreadable) => (Verdict::Unreadable(unreadable.error.clone()), None),
        Ok(mapping) => (
            {
                // Off the reconcile threads: each example may run for its whole jq budget.
                let spec = mapping.spec.clone();
                let evaluated = tokio::task::spawn_blocking(move || status::evaluate(&spec)).await;
                evaluated.unwrap_or_else(|e| Verdict::CompileFailed(format!("the test run failed: {e}")))
            },
            mapping
                .spec
                .produces
                .as_ref()
                .map(|p| ProducedEntity { entity: p.entity.clone(), version: p.version.clone() }),
        ),
    };
    // Dereference: the flows that use it.
    let flows = observer::flows_naming(&ctx.client, &namespace, &name, referenced_by).await?;
    let used_by = flows.iter().map(ResourceExt::name_any).collect();
    // Status, and the Events of its transitions.
    let previous: MappingStatus = kube_io::status::read::<Mapping, _>(&ctx.client, &namespace, &name).await?;
    let next = status::desired_status(&previous, generation, &name, &verdict, produces, used_by, Timestamp::now());
    if next != previous {
        // Published before the status is written: if writing fails, the next reconcile
        // sees the same transition and publishes again (the recorder folds repeats).
        for notice in status::notices(&previous.conditions, &next.conditions) {
            events::publish(&ctx.recorder, &notice, &*guard).await;
            if let Some(flow_notice) = status::notice_for_flow(&name, &notice) {
                for flow in &flows {
                    events::publish(&ctx.recorder, &flow_notice, flow).await;
                }
            }
        }
        kube_io::status::write::<Mapping, _>(&ctx.client, &namespace, &name, &next).await?;
        info!(tests = next.tests.as_ref().map(|t| t.summary.as_str()), "status updated");
    }
    Ok(Action::requeue(observer::RESYNC))
}
