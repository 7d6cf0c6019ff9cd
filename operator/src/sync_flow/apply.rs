//! Step 4 of a SyncFlow reconcile: the children that build rendered, sent to the API
//! with server-side apply, then whatever an earlier spec (or an older operator)
//! rendered instead removed. The only step of the five that writes children.

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    batch::v1::CronJob,
    core::v1::{PersistentVolumeClaim, Service},
    networking::v1::NetworkPolicy,
    policy::v1::PodDisruptionBudget,
};

use super::{
    build::{Children, Workload},
    names::{queue_claim_name, runner_name},
    secret_volumes::with_random_token,
};
use crate::{
    error::Error,
    kube_io::objects::{apply, create_once, remove_owned},
};

/// The workload as the API holds it after the apply, status included.
#[derive(Clone, Debug)]
pub enum Applied {
    /// A continuous flow's StatefulSet.
    Continuous(Box<StatefulSet>),
    /// A continuous JetStream flow's Deployment.
    Shared(Box<Deployment>),
    /// A batch flow's CronJob.
    Batch(Box<CronJob>),
}

/// Where the children go and what they replace.
pub struct Target<'a> {
    /// The flow's name.
    pub flow: &'a str,
    /// The flow's namespace.
    pub namespace: &'a str,
    /// The flow's uid: only children it owns are ever removed.
    pub owner_uid: &'a str,
    /// The workload the last reconcile rendered (`StatefulSet/orders-runner`), from the
    /// flow's status. Anything else of the flow's is pruned when it differs: the mode
    /// changed, the queue moved to or from JetStream (StatefulSet ↔ Deployment), or an
    /// older operator rendered something else.
    pub rendered_before: Option<&'a str>,
}

/// Applies `children` (the ConfigMap and the admin token first, so new pods find them)
/// and removes the workload kinds the flow no longer renders. The admin token Secret is
/// created once with a random value and never read back: an existing one is kept.
pub async fn children(client: &kube::Client, target: &Target<'_>, children: &Children) -> Result<Applied, Error> {
    let Target { flow, namespace, owner_uid, rendered_before } = *target;
    apply(client, namespace, &children.config_map).await?;
    create_once(client, namespace, &with_random_token(children.admin_token.clone())).await?;
    let runner = runner_name(flow);
    match &children.network_policy {
        Some(policy) => {
            apply(client, namespace, policy).await?;
        }
        None => remove_owned::<NetworkPolicy>(client, namespace, &runner, owner_uid).await?,
    }
    let prune = |kind: &str| rendered_before != Some(&format!("{kind}/{runner}"));
    match &children.workload {
        Workload::Continuous { stateful_set, disruption_budget, service } => {
            apply(client, namespace, service).await?;
            apply(client, namespace, disruption_budget).await?;
            let stateful_set = apply(client, namespace, stateful_set).await?;
            if prune("StatefulSet") {
                remove_owned::<CronJob>(client, namespace, &runner, owner_uid).await?;
                remove_owned::<Deployment>(client, namespace, &runner, owner_uid).await?;
            }
            Ok(Applied::Continuous(Box::new(stateful_set)))
        }
        Workload::Shared { deployment, disruption_budget, service } => {
            apply(client, namespace, service).await?;
            apply(client, namespace, disruption_budget).await?;
            let deployment = apply(client, namespace, deployment).await?;
            if prune("Deployment") {
                // The StatefulSet's own claims go with it (its retention policy); a batch
                // flow's queue claim is the flow's, so it is removed here.
                remove_owned::<StatefulSet>(client, namespace, &runner, owner_uid).await?;
                remove_owned::<CronJob>(client, namespace, &runner, owner_uid).await?;
                remove_owned::<PersistentVolumeClaim>(client, namespace, &queue_claim_name(flow), owner_uid).await?;
            }
            Ok(Applied::Shared(Box::new(deployment)))
        }
        Workload::Batch { cron_job, queue_claim } => {
            match queue_claim {
                Some(queue_claim) => {
                    apply(client, namespace, queue_claim).await?;
                }
                // The queue moved to JetStream: the claim of the embedded one goes.
                None => {
                    remove_owned::<PersistentVolumeClaim>(client, namespace, &queue_claim_name(flow), owner_uid).await?
                }
            }
            let cron_job = apply(client, namespace, cron_job).await?;
            if prune("CronJob") {
                remove_owned::<StatefulSet>(client, namespace, &runner, owner_uid).await?;
                remove_owned::<PodDisruptionBudget>(client, namespace, &runner, owner_uid).await?;
                remove_owned::<Service>(client, namespace, &runner, owner_uid).await?;
                remove_owned::<Deployment>(client, namespace, &runner, owner_uid).await?;
            }
            Ok(Applied::Batch(Box::new(cron_job)))
        }
    }
}
