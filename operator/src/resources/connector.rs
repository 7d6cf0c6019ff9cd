//! The Connector custom resource.

use std::ops::Deref;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The system: its type, endpoint, credentials (as Secret references) and webhook
/// signature scheme.
//
// The runner's `entrepot_api::resource::ConnectorSpec`, unchanged. This doc comment is the
// `spec` field's `kubectl explain` text.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
// Every `printcolumn(...)` names the same keys; clippy reads them as one repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "entrepot.io",
    version = "v1alpha1",
    kind = "Connector",
    namespaced,
    status = "ConnectorStatus",
    derive = "PartialEq",
    shortname = "econn",
    category = "entrepot",
    doc = "One external system Entrepot talks to (a storefront, an ERP, a marketplace, a WMS): \
           where it is, how to authenticate, how its webhooks are signed. SyncFlows in the same \
           namespace refer to it by name.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the Connector is valid and can be used by SyncFlows"
    ),
    printcolumn(
        name = "Reachable",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Reachable\")].status",
        description = "Whether the system answered the runners that call it, as they last reported"
    ),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type", description = "The kind of system"),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".spec.endpoint",
        description = "Base URL of the system's API"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct ConnectorSpec(pub entrepot_api::resource::ConnectorSpec);

impl Deref for ConnectorSpec {
    type Target = entrepot_api::resource::ConnectorSpec;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// What the operator observed of a Connector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStatus {
    /// The `metadata.generation` this status describes; -1 until the operator has looked.
    #[serde(default = "super::not_observed")]
    pub observed_generation: i64,

    /// `Ready`: the spec is valid, so SyncFlows can use the Connector. `Stalled`: it
    /// cannot be used as written; the message names the field to change. `Reachable`:
    /// whether the system answered the runners of the SyncFlows that call it, as they
    /// last reported (reasons `Answering`, `AuthFailing`, `Unreachable`, `Throttled`,
    /// `ServerFailing`, `NotReported`). Reachable is kept apart from Ready: a system
    /// that is down is not fixed by editing the Connector, and its flows report the
    /// resulting backlog themselves. The operator never calls the system nor reads a
    /// Secret to find out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The SyncFlows in this namespace that reference the Connector, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_by: Vec<String>,
}

impl Default for ConnectorStatus {
    fn default() -> Self {
        Self { observed_generation: super::not_observed(), conditions: Vec::new(), used_by: Vec::new() }
    }
}
