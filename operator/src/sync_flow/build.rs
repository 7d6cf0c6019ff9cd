//! Builders: the runner workload a SyncFlow becomes (ConfigMap, Deployment, Service),
//! as pure functions of the flow and its resolved configuration.

use std::collections::{BTreeMap, BTreeSet};

use entrepot::{
    config::{FlowConfig, RunnerConfig},
    spec::SecretKeySelector,
};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
            EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
            SecretKeySelector as KubeSecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, Volume,
            VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::Resource;
use sha2::{Digest, Sha256};

use super::validate::secret_refs;
use crate::resources::SyncFlow;

/// Appended to a flow's name to name its ConfigMap, Deployment and Service.
pub const RUNNER_SUFFIX: &str = "-runner";
/// Pod template annotation whose change rolls the runner pods.
pub const CHECKSUM_ANNOTATION: &str = "entrepot.io/config-checksum";
/// Label naming the SyncFlow a child belongs to.
pub const SYNC_FLOW_LABEL: &str = "entrepot.io/sync-flow";
/// `app.kubernetes.io/managed-by` of everything the operator creates; its watches
/// select on it.
pub const MANAGED_BY: &str = "entrepot-operator";
/// Key of the runner configuration in the ConfigMap.
pub const CONFIG_KEY: &str = "runner.yaml";

const CONFIG_DIR: &str = "/etc/entrepot";
const DATA_DIR: &str = "/var/lib/entrepot";
const WEBHOOK_PORT: i32 = 8080;
const ADMIN_PORT: i32 = 9090;
/// The `nonroot` user of distroless images; any non-zero id satisfies the restricted
/// Pod Security profile, a fixed one keeps the data directory's owner stable.
const RUNNER_UID: i64 = 65532;

/// What the operator renders into every runner, whatever the flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerDefaults {
    /// Image used when a flow names none (`spec.runner.image`).
    pub image: String,
}

/// The objects a SyncFlow becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// The runner's configuration.
    pub config_map: ConfigMap,
    /// The runner pods.
    pub deployment: Deployment,
    /// The runner's webhook and admin endpoints.
    pub service: Service,
    /// SHA-256 of the configuration and the referenced Secret keys.
    pub checksum: String,
}

/// Why the children cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The flow has no uid or name yet (it was not read from the API).
    #[error("SyncFlow has no metadata.uid or metadata.name; it must be read from the API before children are built")]
    NoOwnerReference,
    /// The runner configuration cannot be serialized.
    #[error("SyncFlow {flow}: cannot render the runner configuration: {source}")]
    Render {
        /// The flow.
        flow: String,
        /// The serializer's error.
        source: serde_saphyr::ser::Error,
    },
}

/// Name of the ConfigMap, Deployment and Service of the flow named `flow`.
pub fn runner_name(flow: &str) -> String {
    format!("{flow}{RUNNER_SUFFIX}")
}

/// Labels that select a flow's runner pods. Kept to two because a Deployment's
/// selector cannot change once created.
pub fn selector_labels(flow: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "entrepot-runner".to_string()),
        ("app.kubernetes.io/instance".to_string(), flow.to_string()),
    ])
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
    Ok(Children {
        config_map: ConfigMap {
            metadata: meta.clone(),
            data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), rendered)])),
            ..ConfigMap::default()
        },
        deployment: deployment(meta.clone(), config, defaults, &secrets, &checksum),
        service: service(meta, &config.name),
        checksum,
    })
}

fn deployment(
    meta: ObjectMeta,
    config: &FlowConfig,
    defaults: &RunnerDefaults,
    secrets: &BTreeSet<SecretKeySelector>,
    checksum: &str,
) -> Deployment {
    let runner = &config.spec.runner;
    let env = secret_env(secrets);
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let container = Container {
        name: "runner".into(),
        image: Some(runner.image.clone().unwrap_or_else(|| defaults.image.clone())),
        args: Some(
            [
                "serve",
                "--config",
                &config_path(),
                "--data-dir",
                DATA_DIR,
                "--listen",
                &format!("0.0.0.0:{WEBHOOK_PORT}"),
                "--admin-listen",
                &format!("0.0.0.0:{ADMIN_PORT}"),
            ]
            .map(String::from)
            .to_vec(),
        ),
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
        env: Some(env),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(probe("/healthz")),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![
            config_mount(),
            VolumeMount { name: "data".into(), mount_path: DATA_DIR.into(), ..VolumeMount::default() },
        ]),
        ..Container::default()
    };
    let pod_meta = ObjectMeta {
        labels: meta.labels.clone(),
        annotations: Some(BTreeMap::from([(CHECKSUM_ANNOTATION.to_string(), checksum.to_string())])),
        ..ObjectMeta::default()
    };
    let name = meta.name.clone().unwrap_or_default();
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(runner.replicas),
            selector: LabelSelector { match_labels: Some(selector_labels(&config.name)), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(pod_meta),
                spec: Some(PodSpec {
                    containers: vec![container],
                    // The runner holds no Kubernetes credentials (it is told everything
                    // through its config and environment).
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security_context()),
                    volumes: Some(vec![
                        config_volume(&name),
                        // The embedded queue lives in an emptyDir for now, so a pod's undelivered
                        // records go with the pod; a later issue moves it to a StatefulSet's volume
                        // claim of this size.
                        Volume {
                            name: "data".into(),
                            empty_dir: Some(EmptyDirVolumeSource {
                                size_limit: Some(Quantity(runner.queue.embedded.storage.clone())),
                                ..EmptyDirVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The environment that carries each referenced Secret key into a runner container
/// (`ENTREPOT_SECRET_<NAME>_<KEY>`, see [`SecretKeySelector::env_var`]), by reference:
/// the operator never reads the values.
pub fn secret_env(secrets: &BTreeSet<SecretKeySelector>) -> Vec<EnvVar> {
    secrets
        .iter()
        .map(|s| EnvVar {
            name: s.env_var(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(KubeSecretKeySelector { name: s.name.clone(), key: s.key.clone(), optional: None }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        })
        .collect()
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
    VolumeMount { name: "config".into(), mount_path: CONFIG_DIR.into(), read_only: Some(true), ..VolumeMount::default() }
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
