//! What the operator renders into every runner unless its flow says otherwise: the
//! chart's `runner.*` and `nats.*` values, read once at start from the file
//! `--runner-defaults` names.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use serde::Deserialize;

use super::{jetstream::NatsDefaults, network_policy::NetworkPolicyDefaults};

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
    /// The NATS servers of the flows whose queue is in JetStream.
    #[serde(default)]
    pub nats: NatsDefaults,
    /// Where runners (and ReconcileSchedule runs) export their traces over OTLP/HTTP
    /// (the chart's `runner.tracing.otlpEndpoint`); none: no traces are exported.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
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

    /// The runner's environment that turns its trace export on, when an endpoint is set:
    /// the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (`docs/tracing.md`).
    pub fn tracing_env(&self) -> Option<EnvVar> {
        let endpoint = self.otlp_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty())?;
        Some(EnvVar { name: OTLP_ENDPOINT_ENV.into(), value: Some(endpoint.into()), value_from: None })
    }
}

/// The standard OpenTelemetry variable the runner reads its OTLP endpoint from.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_otlp_endpoint_reaches_the_runner_s_environment_and_none_adds_nothing() {
        let mut defaults = RunnerDefaults::with_image("entrepot");
        assert_eq!(defaults.tracing_env(), None);
        defaults.otlp_endpoint = Some(" ".into());
        assert_eq!(defaults.tracing_env(), None);
        let yaml = "image: entrepot\notlpEndpoint: http://otel-collector.observability:4318\n";
        let defaults: RunnerDefaults = serde_saphyr::from_str(yaml).unwrap();
        let env = defaults.tracing_env().unwrap();
        assert_eq!(
            (env.name.as_str(), env.value.as_deref()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", Some("http://otel-collector.observability:4318"))
        );
    }

    /// The chart's policy check (`scripts/chart_policy.py`) refuses runner defaults with a key
    /// the operator does not know; its list must be the struct's, or a chart value the operator
    /// reads fails CI (as `otlpEndpoint` once did) or one it refuses slips through.
    #[test]
    fn the_chart_policy_knows_exactly_the_keys_the_operator_reads() {
        let refusal = serde_saphyr::from_str::<RunnerDefaults>(
            "image: x
noSuchKey: 1\n",
        )
        .unwrap_err()
        .to_string();
        let expected = refusal.split("expected one of").nth(1).expect("serde lists the fields it expects");
        let mut ours: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        ours.sort_unstable();
        let policy = include_str!("../../../scripts/chart_policy.py");
        let line = policy
            .lines()
            .find(|l| l.starts_with("RUNNER_DEFAULT_KEYS = {"))
            .expect("RUNNER_DEFAULT_KEYS in the policy");
        let mut theirs: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        theirs.sort_unstable();
        assert_eq!(ours, theirs, "scripts/chart_policy.py RUNNER_DEFAULT_KEYS differs from RunnerDefaults");
    }
}
