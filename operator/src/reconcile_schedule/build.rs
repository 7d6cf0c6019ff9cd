//! The CronJob a ReconcileSchedule becomes, as a pure function of the schedule and its
//! resolved flow. Each run is a pod of the runner image running `entrepot reconcile`
//! with the flow's runner configuration (its ConfigMap, mounted), the flow's Secret keys
//! mounted as files (the same as the runner's), and the schedule's spec as JSON in
//! `ENTREPOT_RECONCILE_SPEC`; repairs go to the flow's runner through its Service, with
//! the flow's admin token (mounted too). Its pods' labels let them through the flow's
//! NetworkPolicy to the runner's admin port.

use crate::error::Category;
use std::collections::BTreeMap;

use entrepot_api::config::FlowConfig;
use k8s_openapi::api::{
    batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec},
    core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use super::validate::CRON_JOB_SUFFIX;
use crate::{
    resources::ReconcileSchedule,
    sync_flow::{
        build::{
            MANAGED_BY, RunnerDefaults, SYNC_FLOW_LABEL, admin_url, config_mount, config_path, config_volume,
            container_security_context, pod_security_context,
        },
        names::{RECONCILE_APP, runner_name},
        secret_volumes::{SECRETS_DIR, admin_token_file, admin_token_volume, secret_volumes},
        validate::secret_refs,
    },
};

/// Label naming the ReconcileSchedule a CronJob, its Jobs and their pods belong to.
pub const SCHEDULE_LABEL: &str = "entrepot.io/reconcile-schedule";
/// Name of the container that runs `entrepot reconcile`.
pub const CONTAINER: &str = "reconcile";
/// Environment variables the run reads its schedule from.
pub const NAME_ENV: &str = "ENTREPOT_RECONCILE_NAME";
/// See [`NAME_ENV`].
pub const SPEC_ENV: &str = "ENTREPOT_RECONCILE_SPEC";
const TERMINATION_LOG: &str = "/dev/termination-log";

/// Why the CronJob cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The schedule has no uid or name yet (it was not read from the API).
    #[error(
        "ReconcileSchedule has no metadata.uid or metadata.name; it must be read from the API before its CronJob is built"
    )]
    NoOwnerReference,
}

impl From<BuildError> for crate::error::Error {
    fn from(error: BuildError) -> Self {
        Self::refused(Category::InvalidObject, error)
    }
}

/// Name of the CronJob of the schedule named `schedule`.
pub fn cron_job_name(schedule: &str) -> String {
    format!("{schedule}{CRON_JOB_SUFFIX}")
}

/// Labels on the CronJob, its Jobs and their pods.
pub fn labels(schedule: &str, flow: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), RECONCILE_APP.to_string()),
        ("app.kubernetes.io/instance".to_string(), schedule.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
        ("app.kubernetes.io/part-of".to_string(), "entrepot".to_string()),
        (SCHEDULE_LABEL.to_string(), schedule.to_string()),
        (SYNC_FLOW_LABEL.to_string(), flow.to_string()),
    ])
}

/// The CronJob of `schedule`, whose flow `flow` resolves.
pub fn cron_job(
    schedule: &ReconcileSchedule,
    flow: &FlowConfig,
    defaults: &RunnerDefaults,
) -> Result<CronJob, BuildError> {
    let owner = schedule.controller_owner_ref(&()).ok_or(BuildError::NoOwnerReference)?;
    let name = schedule.metadata.name.clone().ok_or(BuildError::NoOwnerReference)?;
    let spec = &schedule.spec;
    let labels = labels(&name, &flow.name);
    let mut env = vec![
        EnvVar { name: NAME_ENV.into(), value: Some(name.clone()), ..EnvVar::default() },
        EnvVar {
            name: SPEC_ENV.into(),
            value: Some(serde_json::to_string(&spec.0).expect("a spec always serializes")),
            ..EnvVar::default()
        },
    ];
    env.extend(defaults.tracing_env());
    let (mut volumes, mut mounts) = secret_volumes(&secret_refs(flow));
    let (token_volume, token_mount) = admin_token_volume(&flow.name);
    volumes.extend([config_volume(&runner_name(&flow.name)), token_volume]);
    mounts.extend([config_mount(), token_mount]);
    let container = Container {
        name: CONTAINER.into(),
        image: Some(flow.spec.runner.image.clone().unwrap_or_else(|| defaults.image.clone())),
        image_pull_policy: defaults.image_pull_policy.clone(),
        resources: defaults.resources.clone(),
        args: Some(vec![
            "reconcile".into(),
            "--config".into(),
            config_path(),
            "--runner".into(),
            admin_url(&flow.name),
            "--admin-token-file".into(),
            admin_token_file(),
            "--secrets-dir".into(),
            SECRETS_DIR.into(),
            "--termination-log".into(),
            TERMINATION_LOG.into(),
        ]),
        env: Some(env),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        termination_message_path: Some(TERMINATION_LOG.into()),
        // The summary when the run wrote one; the log's tail when it died before.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        // A failed run is reported as failed, and the next schedule runs again.
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(pod_security_context()),
        volumes: Some(volumes),
        ..PodSpec::default()
    };
    let template_meta = ObjectMeta { labels: Some(labels.clone()), ..ObjectMeta::default() };
    Ok(CronJob {
        metadata: ObjectMeta {
            name: Some(cron_job_name(&name)),
            namespace: schedule.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(CronJobSpec {
            schedule: spec.schedule.clone(),
            time_zone: spec.time_zone.clone(),
            concurrency_policy: Some(spec.concurrency_policy.as_str().into()),
            suspend: Some(spec.suspend),
            successful_jobs_history_limit: Some(spec.successful_jobs_history_limit as i32),
            failed_jobs_history_limit: Some(spec.failed_jobs_history_limit as i32),
            job_template: JobTemplateSpec {
                metadata: Some(template_meta.clone()),
                spec: Some(JobSpec {
                    backoff_limit: Some(0),
                    template: PodTemplateSpec { metadata: Some(template_meta), spec: Some(pod) },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        reconcile_schedule::validate::{self, FlowRef},
        sync_flow::validate::References,
        test_support::fixtures,
    };

    fn built() -> CronJob {
        let f = fixtures::reconcile();
        let refs = References {
            connectors: f.connectors.iter().map(|c| (c.metadata.name.clone().unwrap(), Ok(c.spec.0.clone()))).collect(),
            mappings: f.mappings.iter().map(|m| (m.metadata.name.clone().unwrap(), Ok(m.spec.0.clone()))).collect(),
        };
        let flow: FlowRef = Some(Ok(f.flow().spec.0.clone()));
        let schedule = &f.schedules[0];
        let valid = validate::validate("orders-hourly", "retail", &schedule.spec, &flow, &refs).unwrap();
        cron_job(schedule, &valid.flow, &RunnerDefaults::with_image("ghcr.io/entrepot-io/entrepot:test")).unwrap()
    }

    #[test]
    fn the_cron_job_renders_as_its_snapshot() {
        insta::assert_yaml_snapshot!("orders_hourly", built());
    }

    #[test]
    fn the_cron_job_its_jobs_and_their_pods_name_their_schedule() {
        // The controller maps Jobs and pods back to their schedule by this label.
        let cron = built();
        let owner = &cron.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("ReconcileSchedule", "orders-hourly", Some(true))
        );
        let spec = cron.spec.unwrap();
        let job_labels = spec.job_template.metadata.unwrap().labels.unwrap();
        assert_eq!(job_labels[SCHEDULE_LABEL], "orders-hourly");
        let job = spec.job_template.spec.unwrap();
        assert_eq!(job.template.metadata.unwrap().labels.unwrap()[SCHEDULE_LABEL], "orders-hourly");
    }

    #[test]
    fn the_run_pod_is_restricted_and_reads_the_flow_s_config_and_secrets() {
        let pod = built().spec.unwrap().job_template.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true));
        let volumes = pod.volumes.as_ref().unwrap();
        let config = volumes.iter().find_map(|v| v.config_map.as_ref()).unwrap();
        assert_eq!(config.name, "orders-runner");
        let c = &pod.containers[0];
        assert_eq!(c.name, CONTAINER);
        let security = c.security_context.as_ref().unwrap();
        assert_eq!(
            (security.read_only_root_filesystem, security.allow_privilege_escalation),
            (Some(true), Some(false))
        );
        assert_eq!(c.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));
        let args = c.args.clone().unwrap();
        assert_eq!(args[..3], ["reconcile", "--config", "/etc/entrepot/runner.yaml"]);
        assert!(args.windows(2).any(|w| w == ["--runner", "http://orders-runner:9090"]), "{args:?}");
        assert!(args.windows(2).any(|w| w == ["--admin-token-file", "/var/run/secrets/entrepot-admin/token"]));
        let env = c.env.clone().unwrap();
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [NAME_ENV, SPEC_ENV], "no Secret in the environment");
        let spec: entrepot_api::resource::ReconcileScheduleSpec =
            serde_json::from_str(env[1].value.as_deref().unwrap()).unwrap();
        assert_eq!(spec, fixtures::reconcile().schedules[0].spec.0);
        // Secrets as files, by reference only: the flow's keys and its admin token.
        let projected = volumes.iter().find_map(|v| v.projected.as_ref()).unwrap().sources.clone().unwrap();
        let secrets: Vec<String> = projected.iter().map(|s| s.secret.as_ref().unwrap().name.clone()).collect();
        assert_eq!(secrets, ["erp-api", "shop-webhook"]);
        let token = volumes.iter().find_map(|v| v.secret.as_ref()?.secret_name.clone());
        assert_eq!(token.as_deref(), Some("orders-runner-admin-token"));
        let mounts: Vec<&str> = c.volume_mounts.as_ref().unwrap().iter().map(|m| m.mount_path.as_str()).collect();
        assert!(mounts.contains(&"/var/run/secrets/entrepot"), "{mounts:?}");
        assert!(args.windows(2).any(|w| w == ["--secrets-dir", "/var/run/secrets/entrepot"]), "{args:?}");
    }
}
