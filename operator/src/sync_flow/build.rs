//! Builders: the runner workload a SyncFlow becomes, as pure functions of the flow and
//! its resolved configuration: a ConfigMap, and either a StatefulSet (each pod's queue
//! on its own volume claim), a PodDisruptionBudget and a Service (`mode: continuous`), a
//! Deployment, a PodDisruptionBudget and a Service (`continuous` with the queue in
//! JetStream: the pods share it), or a CronJob and one queue claim (`mode: batch`; no
//! claim with JetStream). The runner pod itself is [`super::pod`]'s.

use crate::error::Category;
use std::collections::{BTreeMap, BTreeSet};

use entrepot_api::{
    config::{FlowConfig, RunnerConfig},
    resource::{FlowMode, SecretKeySelector},
};
use k8s_openapi::{
    api::{
        apps::v1::{
            Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
            StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
        },
        batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec},
        core::v1::{
            ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, Secret, Service, ServicePort, ServiceSpec,
            VolumeResourceRequirements,
        },
        networking::v1::NetworkPolicy,
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::Resource;
use sha2::{Digest, Sha256};

pub use super::{
    defaults::{QueueDefaults, RunnerDefaults},
    names::{ADMIN_PORT, SYNC_FLOW_LABEL, queue_claim_name, selector_labels},
    pod::{
        CHECKSUM_ANNOTATION, CONFIG_KEY, config_mount, config_path, config_volume, container_security_context,
        pod_security_context,
    },
};
use super::{
    names::{QUEUE_VOLUME, WEBHOOK_PORT, runner_name},
    network_policy::network_policy,
    pod::{DataDir, pod_template},
    secret_volumes::admin_token_secret,
    validate::secret_refs,
};
use crate::resources::SyncFlow;

/// `app.kubernetes.io/managed-by` of everything the operator creates; its watches
/// select on it.
pub const MANAGED_BY: &str = "entrepot-operator";

/// Size of a queue claim when neither the flow nor the operator says.
const DEFAULT_QUEUE_SIZE: &str = "1Gi";

/// The objects a SyncFlow becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// The runner's configuration.
    pub config_map: ConfigMap,
    /// What runs the runner.
    pub workload: Workload,
    /// The admin token's Secret, without its value: created once, with a random token,
    /// and never read back or updated.
    pub admin_token: Secret,
    /// Who may reach the runner pods, when the chart enables it.
    pub network_policy: Option<NetworkPolicy>,
    /// SHA-256 of the configuration and the referenced Secret keys.
    pub checksum: String,
}

/// What runs a flow's runner, by `spec.mode` and where its queue is.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// `continuous`: pods that are always up, each with its queue on its own volume claim.
    Continuous {
        /// The runner pods and their queue claims.
        stateful_set: StatefulSet,
        /// At most one runner pod down at a time for a drain or an upgrade.
        disruption_budget: PodDisruptionBudget,
        /// The runner's webhook and admin endpoints.
        service: Service,
    },
    /// `continuous` with the queue in JetStream: interchangeable pods that share it.
    Shared {
        /// The runner pods, `spec.runner.replicas` of them, no claim.
        deployment: Deployment,
        /// At most one runner pod down at a time for a drain or an upgrade.
        disruption_budget: PodDisruptionBudget,
        /// The runner's webhook and admin endpoints, in front of every pod.
        service: Service,
    },
    /// `batch`: a CronJob; every run mounts the same queue claim, unless the queue is in
    /// JetStream.
    Batch {
        /// The scheduled runs.
        cron_job: CronJob,
        /// The queue, kept between runs; none when it is in JetStream.
        queue_claim: Option<PersistentVolumeClaim>,
    },
}

impl Workload {
    /// `Kind/name` of the workload, as the flow's status names it.
    pub fn reference(&self, flow: &str) -> String {
        let kind = match self {
            Self::Continuous { .. } => "StatefulSet",
            Self::Shared { .. } => "Deployment",
            Self::Batch { .. } => "CronJob",
        };
        format!("{kind}/{}", runner_name(flow))
    }
}

/// Why the children cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The flow has no uid or name yet (it was not read from the API).
    #[error("SyncFlow has no metadata.uid or metadata.name; it must be read from the API before children are built")]
    NoOwnerReference,
    /// A batch flow without a schedule (validation refuses it first).
    #[error("SyncFlow {flow}: spec.schedule is required when spec.mode is batch")]
    NoSchedule {
        /// The flow.
        flow: String,
    },
    /// The runner configuration cannot be serialized.
    #[error("SyncFlow {flow}: cannot render the runner configuration: {source}")]
    Render {
        /// The flow.
        flow: String,
        /// The serializer's error.
        source: serde_saphyr::ser::Error,
    },
}

impl From<BuildError> for crate::error::Error {
    fn from(error: BuildError) -> Self {
        let category = match error {
            BuildError::NoOwnerReference => Category::InvalidObject,
            BuildError::NoSchedule { .. } => Category::InvalidSpec,
            BuildError::Render { .. } => Category::Serialize,
        };
        Self::refused(category, error)
    }
}

/// Labels on every child of a flow.
pub fn labels(flow: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(flow);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels.insert("app.kubernetes.io/part-of".into(), "entrepot".into());
    labels.insert(SYNC_FLOW_LABEL.into(), flow.into());
    labels
}

/// The configuration text the runner reads (`entrepot serve --config`).
///
/// `spec.runner.replicas` and `spec.runner.image` are left out: they shape the
/// Deployment, not the runner process, and keeping them out of the checksum means
/// scaling a flow does not restart its pods.
pub fn render_config(config: &FlowConfig) -> Result<String, serde_saphyr::ser::Error> {
    let mut config = config.clone();
    config.spec.runner.replicas = 1;
    config.spec.runner.image = None;
    serde_saphyr::to_string(&RunnerConfig { flows: vec![config] })
}

/// SHA-256 (hex) over the rendered configuration and the Secret keys it references.
/// The operator never reads Secret values; a changed Secret name or key changes this,
/// and so rolls the pods.
pub fn checksum(rendered: &str, secrets: &BTreeSet<SecretKeySelector>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(rendered.as_bytes());
    for secret in secrets {
        // Separators no Secret name or key can contain keep the fields apart.
        hasher.update(format!("\0secret\0{}\0{}", secret.name, secret.key).as_bytes());
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the children of `flow`, whose references `config` resolves.
pub fn children(flow: &SyncFlow, config: &FlowConfig, defaults: &RunnerDefaults) -> Result<Children, BuildError> {
    let owner = flow.controller_owner_ref(&()).ok_or(BuildError::NoOwnerReference)?;
    let rendered = render_config(config).map_err(|source| BuildError::Render { flow: config.name.clone(), source })?;
    let secrets = secret_refs(config);
    let checksum = checksum(&rendered, &secrets);
    let meta = ObjectMeta {
        name: Some(runner_name(&config.name)),
        namespace: Some(config.namespace.clone()),
        labels: Some(labels(&config.name)),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    let shared = config.spec.runner.queue.jetstream.is_some();
    let workload = match config.spec.mode {
        FlowMode::Continuous if shared => Workload::Shared {
            deployment: deployment(meta.clone(), config, defaults, &secrets, &checksum),
            disruption_budget: disruption_budget(meta.clone(), &config.name, true),
            service: service(meta.clone(), &config.name),
        },
        FlowMode::Continuous => Workload::Continuous {
            stateful_set: stateful_set(meta.clone(), config, defaults, &secrets, &checksum),
            disruption_budget: disruption_budget(meta.clone(), &config.name, false),
            service: service(meta.clone(), &config.name),
        },
        FlowMode::Batch => {
            let schedule =
                config.spec.schedule.clone().ok_or_else(|| BuildError::NoSchedule { flow: config.name.clone() })?;
            let claim_meta = ObjectMeta { name: Some(queue_claim_name(&config.name)), ..meta.clone() };
            let data = if shared { DataDir::Scratch } else { DataDir::Claim(queue_claim_name(&config.name)) };
            Workload::Batch {
                cron_job: cron_job(meta.clone(), config, defaults, &secrets, &checksum, schedule, data),
                queue_claim: (!shared).then(|| PersistentVolumeClaim {
                    metadata: claim_meta,
                    spec: Some(claim_spec(config, defaults)),
                    status: None,
                }),
            }
        }
    };
    Ok(Children {
        admin_token: admin_token_secret(meta.clone()),
        network_policy: network_policy(meta.clone(), &config.name, &defaults.network_policy),
        config_map: ConfigMap {
            metadata: meta,
            data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), rendered)])),
            ..ConfigMap::default()
        },
        workload,
        checksum,
    })
}

/// The queue's volume claim: the flow's size and class, else the operator's defaults.
fn claim_spec(config: &FlowConfig, defaults: &RunnerDefaults) -> PersistentVolumeClaimSpec {
    let queue = &config.spec.runner.queue.embedded;
    let size =
        queue.storage.clone().or_else(|| defaults.queue.size.clone()).unwrap_or_else(|| DEFAULT_QUEUE_SIZE.into());
    PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        storage_class_name: queue.storage_class_name.clone().or_else(|| defaults.queue.storage_class_name.clone()),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size))])),
            ..VolumeResourceRequirements::default()
        }),
        ..PersistentVolumeClaimSpec::default()
    }
}

fn stateful_set(
    meta: ObjectMeta,
    config: &FlowConfig,
    defaults: &RunnerDefaults,
    secrets: &BTreeSet<SecretKeySelector>,
    checksum: &str,
) -> StatefulSet {
    let runner = &config.spec.runner;
    let template = pod_template(&meta, config, defaults, secrets, checksum, false, DataDir::ClaimTemplate);
    let name = meta.name.clone().unwrap_or_default();
    StatefulSet {
        metadata: meta,
        spec: Some(StatefulSetSpec {
            // Suspended: no pod, and the claims (the queues) stay.
            replicas: Some(if config.spec.suspend { 0 } else { runner.replicas }),
            selector: LabelSelector { match_labels: Some(selector_labels(&config.name)), ..LabelSelector::default() },
            service_name: Some(name),
            // Runner pods do not depend on one another: start and stop them together.
            pod_management_policy: Some("Parallel".into()),
            template,
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some(QUEUE_VOLUME.into()), ..ObjectMeta::default() },
                spec: Some(claim_spec(config, defaults)),
                status: None,
            }]),
            // The queues go with the flow, and stay while it is scaled down.
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Delete".into()),
                when_scaled: Some("Retain".into()),
            }),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// The runner pods of a JetStream flow: a Deployment, since they share the queue and
/// hold nothing of their own. A rollout starts a new pod before it stops an old one, so
/// the flow keeps its runners (and their partitions move one pod at a time).
fn deployment(
    meta: ObjectMeta,
    config: &FlowConfig,
    defaults: &RunnerDefaults,
    secrets: &BTreeSet<SecretKeySelector>,
    checksum: &str,
) -> Deployment {
    let template = pod_template(&meta, config, defaults, secrets, checksum, false, DataDir::Scratch);
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            // Suspended: no pod; the queue stays in JetStream.
            replicas: Some(if config.spec.suspend { 0 } else { config.spec.runner.replicas }),
            selector: LabelSelector { match_labels: Some(selector_labels(&config.name)), ..LabelSelector::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// One runner pod down at a time, voluntarily. `maxUnavailable` rather than
/// `minAvailable`: with one replica, `minAvailable: 1` would block every node drain, and
/// with several it holds as the flow scales. Runners sharing a JetStream queue keep no
/// record of their own, so an unhealthy one may always be evicted: a few crash-looping
/// runners then never block a drain.
fn disruption_budget(meta: ObjectMeta, flow: &str, shared: bool) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(flow)), ..LabelSelector::default() }),
            unhealthy_pod_eviction_policy: shared.then(|| "AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

fn cron_job(
    meta: ObjectMeta,
    config: &FlowConfig,
    defaults: &RunnerDefaults,
    secrets: &BTreeSet<SecretKeySelector>,
    checksum: &str,
    schedule: String,
    data: DataDir,
) -> CronJob {
    let template = pod_template(&meta, config, defaults, secrets, checksum, true, data);
    CronJob {
        metadata: meta,
        spec: Some(CronJobSpec {
            schedule,
            time_zone: config.spec.time_zone.clone(),
            // One run at a time: runs share the queue's claim.
            concurrency_policy: Some("Forbid".into()),
            suspend: Some(config.spec.suspend),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(&config.name)), ..ObjectMeta::default() }),
                spec: Some(JobSpec { backoff_limit: Some(3), template, ..JobSpec::default() }),
            },
            ..CronJobSpec::default()
        }),
        status: None,
    }
}

/// The URL of a flow's runner admin API inside the cluster (its Service).
pub fn admin_url(flow: &str) -> String {
    format!("http://{}:{ADMIN_PORT}", runner_name(flow))
}

fn service(meta: ObjectMeta, flow: &str) -> Service {
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(flow)),
            ports: Some(vec![port("webhooks", WEBHOOK_PORT), port("admin", ADMIN_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
