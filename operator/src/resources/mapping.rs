//! The Mapping custom resource.

use std::ops::Deref;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The jq program, its lookup tables, the canonical entity it produces and the examples
/// it must satisfy.
//
// The runner's `entrepot_api::resource::MappingSpec`, unchanged. This doc comment is the
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
        name = "Entity",
        type_ = "string",
        json_path = ".status.produces.entity",
        description = "The canonical entity the Mapping produces"
    ),
    printcolumn(
        name = "Tests",
        type_ = "string",
        json_path = ".status.tests.summary",
        description = "How many of the Mapping's tests passed and failed"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct MappingSpec(pub entrepot_api::resource::MappingSpec);

impl Deref for MappingSpec {
    type Target = entrepot_api::resource::MappingSpec;

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

    /// `Ready`: the program compiles and every test passes. `Stalled`: it does not
    /// (reason `CompileFailed` or `TestsFailing`); the message names the first failing
    /// test. While a Mapping is not Ready, the SyncFlows using it are not Ready either
    /// (`MappingTestsFailing`) and keep running with the last good version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The outcome of the Mapping's tests; absent when the program does not compile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<MappingTestsStatus>,

    /// The canonical entity and version the Mapping produces, from `spec.produces`;
    /// absent for a Mapping from the canonical model to a system's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produces: Option<ProducedEntity>,

    /// The SyncFlows in this namespace that reference the Mapping, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

impl Default for MappingStatus {
    fn default() -> Self {
        Self {
            observed_generation: super::not_observed(),
            conditions: Vec::new(),
            tests: None,
            produces: None,
            used_by: Vec::new(),
        }
    }
}

/// The outcome of a Mapping's tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappingTestsStatus {
    /// Tests whose output was the expected one.
    pub passed: i64,
    /// Tests whose output differed or that raised an error.
    pub failed: i64,
    /// `<passed> passed, <failed> failed`, for `kubectl get`.
    pub summary: String,
    /// The first failing test, in declaration order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<MappingTestFailure>,
}

/// One failing test of a Mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappingTestFailure {
    /// The test's name.
    pub name: String,
    /// What differs, one line per jq path (`.total: expected "10.00", got "12.00"`), or
    /// the error the program raised. Cut at 2 KiB.
    pub diff: String,
}

/// A canonical entity at a schema version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProducedEntity {
    /// Entity name, e.g. `SalesOrder`.
    pub entity: String,
    /// Schema version, e.g. `v1`.
    pub version: String,
}
