//! Builders: the runner workload a SyncFlow becomes, as pure functions of the flow and
//! its resolved configuration: a ConfigMap, and either a StatefulSet (each pod's queue
//! on its own volume claim), a PodDisruptionBudget and a Service (`mode: continuous`), or
//! a CronJob and one queue claim (`mode: batch`).

use crate::error::Category;
use std::collections::{BTreeMap, BTreeSet};

use entrepot_api::{
    config::{FlowConfig, RunnerConfig},
    resource::{FlowMode, SecretKeySelector},
};
use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec},
        batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
            HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret,
            SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
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
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use super::names::{ADMIN_PORT, SYNC_FLOW_LABEL, selector_labels};
use super::{
    names::{WEBHOOK_PORT, runner_name},
    network_policy::{NetworkPolicyDefaults, network_policy},
    secret_volumes::{SECRETS_DIR, admin_token_file, admin_token_secret, admin_token_volume, secret_volumes},
    validate::secret_refs,
};
use crate::resources::SyncFlow;

/// Pod template annotation whose change rolls the runner pods.
pub const CHECKSUM_ANNOTATION: &str = "entrepot.io/config-checksum";
/// `app.kubernetes.io/managed-by` of everything the operator creates; its watches
/// select on it.
pub const MANAGED_BY: &str = "entrepot-operator";
/// Key of the runner configuration in the ConfigMap.
pub const CONFIG_KEY: &str = "runner.yaml";

const CONFIG_DIR: &str = "/etc/entrepot";
const DATA_DIR: &str = "/var/lib/entrepot";
/// Name of the queue volume (and of a StatefulSet's claim template).
const QUEUE_VOLUME: &str = "queue";
/// Size of a queue claim when neither the flow nor the operator says.
const DEFAULT_QUEUE_SIZE: &str = "1Gi";
/// The `nonroot` user of distroless images; any non-zero id satisfies the restricted
/// Pod Security profile, a fixed one keeps the data directory's owner stable.
const RUNNER_UID: i64 = 65532;

/// What the operator renders into every runner unless its flow says otherwise: the
/// chart's `runner.*` values, read from the file `--runner-defaults` names.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunnerDefaults {
    /// Image used when a flow names none (`spec.runner.image`).
    pub image: String,
    /// `imagePullPolicy` of the runner container.
    #[serde(default)]
    pub image_pull_policy: Option<String>,
    /// CPU and memory of the runner container.
    #[serde(default)]
    pub resources: Option<ResourceRequirements>,
    /// The queue's volume claim.
    #[serde(default)]
    pub queue: QueueDefaults,
    /// Whether, and how, each flow's runner pods get a NetworkPolicy.
    #[serde(default)]
    pub network_policy: NetworkPolicyDefaults,
}

/// Defaults of a flow's queue volume claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueDefaults {
    /// StorageClass of the claim; the cluster's default class when unset.
    #[serde(default)]
    pub storage_class_name: Option<String>,
    /// Size of the claim; `1Gi` when unset.
    #[serde(default)]
    pub size: Option<String>,
}

impl RunnerDefaults {
    /// Defaults that only name the image.
    pub fn with_image(image: impl Into<String>) -> Self {
        Self { image: image.into(), ..Self::default() }
    }
}

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

/// What runs a flow's runner, by `spec.mode`.
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
    /// `batch`: a CronJob; every run mounts the same queue claim.
    Batch {
        /// The scheduled runs.
        cron_job: CronJob,
        /// The queue, kept between runs.
        queue_claim: PersistentVolumeClaim,
    },
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
    let workload = match config.spec.mode {
        FlowMode::Continuous => Workload::Continuous {
            stateful_set: stateful_set(meta.clone(), config, defaults, &secrets, &checksum),
            disruption_budget: disruption_budget(meta.clone(), &config.name),
            service: service(meta.clone(), &config.name),
        },
        FlowMode::Batch => {
            let schedule =
                config.spec.schedule.clone().ok_or_else(|| BuildError::NoSchedule { flow: config.name.clone() })?;
            let claim_meta = ObjectMeta { name: Some(queue_claim_name(&config.name)), ..meta.clone() };
            Workload::Batch {
                cron_job: cron_job(meta.clone(), config, defaults, &secrets, &checksum, schedule),
                queue_claim: PersistentVolumeClaim {
                    metadata: claim_meta,
                    spec: Some(claim_spec(config, defaults)),
                    status: None,
                },
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

/// Name of a batch flow's queue claim.
pub fn queue_claim_name(flow: &str) -> String {
    format!("{}-queue", runner_name(flow))
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

/// The runner container and its pod, for `args` after the config and data flags.
fn pod_template(
    meta: &ObjectMeta,
    config: &FlowConfig,
    defaults: &RunnerDefaults,
    secrets: &BTreeSet<SecretKeySelector>,
    checksum: &str,
    batch: bool,
) -> PodTemplateSpec {
    let runner = &config.spec.runner;
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    // A runner repairing its queue at start answers /healthz 503 until the queue is
    // open: up to 30 minutes (360 x 5 s) before liveness takes over.
    let startup = Probe { failure_threshold: Some(360), ..probe("/healthz", 5) };
    let mut args: Vec<String> = [
        "serve",
        "--config",
        &config_path(),
        "--data-dir",
        DATA_DIR,
        "--listen",
        &format!("0.0.0.0:{WEBHOOK_PORT}"),
        "--admin-listen",
        &format!("0.0.0.0:{ADMIN_PORT}"),
        "--admin-token-file",
        &admin_token_file(),
        "--secrets-dir",
        SECRETS_DIR,
    ]
    .map(String::from)
    .to_vec();
    if batch {
        // One pass of the source, deliver what it queued, exit.
        args.push("--once".into());
    }
    let mut mounts = vec![
        config_mount(),
        VolumeMount { name: QUEUE_VOLUME.into(), mount_path: DATA_DIR.into(), ..VolumeMount::default() },
        // The root filesystem is read-only; the runner's scratch space.
        VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..VolumeMount::default() },
    ];
    let (secret_volumes, secret_mounts) = secret_volumes(secrets);
    let (token_volume, token_mount) = admin_token_volume(&config.name);
    mounts.extend(secret_mounts.into_iter().chain([token_mount]));
    let mut volumes = vec![
        config_volume(&runner_name(&config.name)),
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    volumes.extend(secret_volumes.into_iter().chain([token_volume]));
    if batch {
        volumes.push(Volume {
            name: QUEUE_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: queue_claim_name(&config.name),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    // A file trigger reads its directory, and moves files aside inside it, on the volume
    // claim the flow names (validation requires it).
    if let Some((file, claim)) =
        config.spec.source.trigger.file.as_ref().and_then(|f| Some((f, f.volume_claim_name.clone()?)))
    {
        mounts.push(VolumeMount { name: "files".into(), mount_path: file.directory.clone(), ..VolumeMount::default() });
        volumes.push(Volume {
            name: "files".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: claim, read_only: None }),
            ..Volume::default()
        });
    }
    let container = Container {
        name: "runner".into(),
        image: Some(runner.image.clone().unwrap_or_else(|| defaults.image.clone())),
        image_pull_policy: defaults.image_pull_policy.clone(),
        args: Some(args),
        ports: Some(vec![
            ContainerPort {
                name: Some("webhooks".into()),
                container_port: WEBHOOK_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: ADMIN_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        resources: defaults.resources.clone(),
        // A batch run is not a server: no probes; its exit code says how it went.
        startup_probe: (!batch).then_some(startup),
        readiness_probe: (!batch).then(|| probe("/readyz", 10)),
        liveness_probe: (!batch).then(|| probe("/healthz", 10)),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: meta.labels.clone(),
            annotations: Some(BTreeMap::from([(CHECKSUM_ANNOTATION.to_string(), checksum.to_string())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            // The runner holds no Kubernetes credentials (it is told everything
            // through its config and mounted Secrets).
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            restart_policy: batch.then(|| "OnFailure".into()),
            // Time to finish the deliveries in flight after SIGTERM.
            termination_grace_period_seconds: Some(30),
            security_context: Some(pod_security_context()),
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
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
    let template = pod_template(&meta, config, defaults, secrets, checksum, false);
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

/// One runner pod down at a time, voluntarily. `maxUnavailable` rather than
/// `minAvailable`: with one replica, `minAvailable: 1` would block every node drain.
fn disruption_budget(meta: ObjectMeta, flow: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(flow)), ..LabelSelector::default() }),
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
) -> CronJob {
    let template = pod_template(&meta, config, defaults, secrets, checksum, true);
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

fn runtime_default() -> Option<SeccompProfile> {
    Some(SeccompProfile { type_: "RuntimeDefault".into(), ..SeccompProfile::default() })
}

/// A runner container's security context: the restricted Pod Security profile, a
/// read-only root filesystem, a fixed non-root user.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUNNER_UID),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
        seccomp_profile: runtime_default(),
        ..SecurityContext::default()
    }
}

/// A runner pod's security context (see [`container_security_context`]).
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUNNER_UID),
        run_as_group: Some(RUNNER_UID),
        fs_group: Some(RUNNER_UID),
        seccomp_profile: runtime_default(),
        ..PodSecurityContext::default()
    }
}

/// The volume `config` of the flow's runner ConfigMap named `config_map`, mounted by
/// [`config_mount`].
pub fn config_volume(config_map: &str) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource { name: config_map.into(), ..ConfigMapVolumeSource::default() }),
        ..Volume::default()
    }
}

/// Where the runner configuration is mounted: [`config_path`]'s directory, read-only.
pub fn config_mount() -> VolumeMount {
    VolumeMount {
        name: "config".into(),
        mount_path: CONFIG_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The path of the runner configuration inside a runner container.
pub fn config_path() -> String {
    format!("{CONFIG_DIR}/{CONFIG_KEY}")
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
