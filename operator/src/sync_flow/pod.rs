//! The runner pod every workload kind shares: its container (arguments, probes, the
//! restricted security context), its configuration, Secrets, admin token and data
//! directory, and the file trigger's claim.

use std::collections::{BTreeMap, BTreeSet};

use entrepot_api::{config::FlowConfig, resource::SecretKeySelector};
use k8s_openapi::{
    api::core::v1::{
        Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
        HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
        PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Volume, VolumeMount,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};

use super::{
    defaults::RunnerDefaults,
    names::{ADMIN_PORT, QUEUE_VOLUME, WEBHOOK_PORT, runner_name},
    secret_volumes::{KUBE_CA_DIR, SECRETS_DIR, admin_token_file, admin_token_volume, kube_ca_volume, secret_volumes},
};

/// Pod template annotation whose change rolls the runner pods.
pub const CHECKSUM_ANNOTATION: &str = "entrepot.io/config-checksum";
/// Key of the runner configuration in the ConfigMap.
pub const CONFIG_KEY: &str = "runner.yaml";

const CONFIG_DIR: &str = "/etc/entrepot";
const DATA_DIR: &str = "/var/lib/entrepot";
/// The `nonroot` user of distroless images; any non-zero id satisfies the restricted
/// Pod Security profile, a fixed one keeps the data directory's owner stable.
const RUNNER_UID: i64 = 65532;
/// The data directory of a runner whose queue is in JetStream: what little it keeps
/// there (a previous webhook secret's grace hour) may go with the pod.
const SCRATCH_DATA_SIZE: &str = "256Mi";

/// Where a runner pod's data directory (`--data-dir`, which holds the embedded queue) is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataDir {
    /// Each pod's own claim, from the StatefulSet's claim template [`QUEUE_VOLUME`].
    ClaimTemplate,
    /// The claim of this name, which a batch flow's runs share.
    Claim(String),
    /// An emptyDir: the queue is in JetStream, so the pod keeps nothing worth a claim.
    Scratch,
}

impl DataDir {
    fn volume_name(&self) -> &'static str {
        match self {
            Self::ClaimTemplate | Self::Claim(_) => QUEUE_VOLUME,
            Self::Scratch => "data",
        }
    }

    /// The pod's volume; none for a claim template, which the StatefulSet adds.
    fn volume(&self) -> Option<Volume> {
        let name = self.volume_name().to_string();
        match self {
            Self::ClaimTemplate => None,
            Self::Claim(claim) => Some(Volume {
                name,
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: None,
                }),
                ..Volume::default()
            }),
            Self::Scratch => Some(Volume {
                name,
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity(SCRATCH_DATA_SIZE.into())),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            }),
        }
    }
}

/// The runner container and its pod: a server (continuous) or one run (`batch`), its
/// data directory on `data`.
pub fn pod_template(
    meta: &ObjectMeta,
    config: &FlowConfig,
    defaults: &RunnerDefaults,
    secrets: &BTreeSet<SecretKeySelector>,
    checksum: &str,
    batch: bool,
    data: DataDir,
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
    // People reach the admin API with their own Kubernetes token, checked by the API
    // server with that token (SelfSubjectReview, SelfSubjectAccessReview): the runner
    // itself holds no credentials, only the cluster's CA.
    if let Some(namespace) = &meta.namespace {
        args.extend([
            "--kube-users-ca".into(),
            format!("{KUBE_CA_DIR}/ca.crt"),
            "--kube-users-namespace".into(),
            namespace.clone(),
        ]);
    }
    if batch {
        // One pass of the source, deliver what it queued, exit.
        args.push("--once".into());
    }
    let mut mounts = vec![
        config_mount(),
        VolumeMount { name: data.volume_name().into(), mount_path: DATA_DIR.into(), ..VolumeMount::default() },
        // The root filesystem is read-only; the runner's scratch space.
        VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..VolumeMount::default() },
    ];
    let (secret_volumes, secret_mounts) = secret_volumes(secrets);
    let (token_volume, token_mount) = admin_token_volume(&config.name);
    let (ca_volume, ca_mount) = kube_ca_volume();
    mounts.extend(secret_mounts.into_iter().chain([token_mount, ca_mount]));
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
    volumes.extend(secret_volumes.into_iter().chain([token_volume, ca_volume]));
    volumes.extend(data.volume());
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
    // Runners sharing a JetStream queue know each other by name (their partition leases):
    // the pod's, so that a restarted container takes its leases back at once. The
    // downward API, never a Secret: nothing secret is in the environment.
    let pod_name = runner.queue.jetstream.is_some().then(|| EnvVar {
        name: "POD_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }),
            ..EnvVarSource::default()
        }),
        value: None,
    });
    let env: Vec<EnvVar> = pod_name.into_iter().chain(defaults.tracing_env()).collect();
    let env = (!env.is_empty()).then_some(env);
    let container = Container {
        name: "runner".into(),
        image: Some(runner.image.clone().unwrap_or_else(|| defaults.image.clone())),
        image_pull_policy: defaults.image_pull_policy.clone(),
        args: Some(args),
        env,
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
