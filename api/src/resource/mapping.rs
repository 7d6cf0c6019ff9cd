use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A transformation between one system's payload and a canonical entity, written in jq.
///
/// The program receives the record as `.` and the lookup tables as `$lookups`
/// (`$lookups.warehouses["DC-1"]`). It must produce exactly one JSON value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappingSpec {
    /// The canonical entity and version this mapping produces, when it maps a system's
    /// payload into the canonical model (e.g. `SalesOrder` `v1`). Empty for a mapping
    /// from the canonical model to a system's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produces: Option<CanonicalRef>,

    /// The jq program.
    #[schemars(length(min = 1))]
    pub program: String,

    /// Lookup tables, by name, each a map from a key to a value: warehouse codes, tax
    /// codes, units of measure. Available to the program as `$lookups`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lookups: BTreeMap<String, BTreeMap<String, String>>,

    /// Examples the program must satisfy: run by `entrepot test` and by the operator
    /// before any runner uses the mapping. Keyed by name: two tests cannot share one.
    /// At most 500.
    // The bounds here and on a test's name keep its CEL rule within the API server's
    // cost budget (a real kube-apiserver refuses the CRD without them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub tests: Vec<MappingTest>,
}

/// A canonical entity at a schema version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanonicalRef {
    /// Entity name, e.g. `SalesOrder`, `InventorySnapshot`.
    pub entity: String,
    /// Schema version, e.g. `v1`.
    pub version: String,
}

/// One example: this input must map to exactly this output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.name.matches('[^ \\t]')",
    "message": "a test needs a name that says what it shows, e.g. `order with a discount`",
    "fieldPath": ".name",
    "reason": "FieldValueRequired"
}]))]
pub struct MappingTest {
    /// What the example shows, e.g. `order with a discount`. At most 256 characters.
    #[schemars(length(max = 256))]
    pub name: String,
    /// The record given to the program.
    #[schemars(schema_with = "super::any_json")]
    pub input: serde_json::Value,
    /// The value the program must produce. An object member that is `null` and one that
    /// is missing count as the same: Kubernetes does not keep null members in the
    /// objects it stores.
    #[schemars(schema_with = "super::any_json")]
    pub output: serde_json::Value,
}
