//! What the operator renders into every runner unless its flow says otherwise: the
//! chart's `runner.*` and `nats.*` values, read once at start from the file
//! `--runner-defaults` names.

use k8s_openapi::api::core::v1::ResourceRequirements;
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
