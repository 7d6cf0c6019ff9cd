//! The Mapping custom resource.

use std::ops::Deref;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The jq program, its lookup tables, the canonical entity it produces and the examples
/// it must satisfy.
//
// The runner's `entrepot::spec::MappingSpec`, unchanged. This doc comment is the
// `spec` field's `kubectl explain` text.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
// Every `printcolumn(...)` names the same keys; clippy reads them as one repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "entrepot.io",
    version = "v1alpha1",
    kind = "Mapping",
    namespaced,
    status = "MappingStatus",
    derive = "PartialEq",
    shortname = "emap",
    category = "entrepot",
    doc = "A jq transformation between one system's payload and a canonical entity, with the \
           examples it must satisfy. SyncFlows in the same namespace refer to it by name.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the program compiles and its tests pass"
    ),
    printcolumn(
        name = "Produces",
        type_ = "string",
        json_path = ".spec.produces.entity",
        description = "The canonical entity the Mapping produces"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.produces.version",
        description = "The canonical schema version the Mapping produces"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct MappingSpec(pub entrepot::spec::MappingSpec);

impl Deref for MappingSpec {
    type Target = entrepot::spec::MappingSpec;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// What the operator observed of a Mapping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappingStatus {
    /// The `metadata.generation` this status describes; -1 until the operator has looked.
    #[serde(default = "super::not_observed")]
    pub observed_generation: i64,

    /// `Ready`: the program compiles and every test passes. `Stalled`: it does not; the
    /// message names the failing test.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl Default for MappingStatus {
    fn default() -> Self {
        Self { observed_generation: super::not_observed(), conditions: Vec::new() }
    }
}
