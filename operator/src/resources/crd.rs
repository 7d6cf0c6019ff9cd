//! The CustomResourceDefinitions, as `entrepot-operator crd` prints them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, JSONSchemaProps};
use kube::CustomResourceExt;
use serde_json::json;

use super::{Connector, Mapping, ReconcileSchedule, SyncFlow};

/// The four CRDs, in the order they are printed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![Connector::crd(), Mapping::crd(), SyncFlow::crd(), ReconcileSchedule::crd()];
    for crd in &mut crds {
        *crd = kubernetes_formats(crd);
        for version in &mut crd.spec.versions {
            if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
                default_status_to_empty(schema);
            }
        }
    }
    crds
}

/// The CRDs as one multi-document YAML text.
pub fn render_crds() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

/// schemars marks unsigned integers `format: uint64` (or `uint32`, ...) with `minimum: 0`;
/// the API server knows only `int32` and `int64` and warns at every apply about the rest.
fn kubernetes_formats(crd: &CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(node: &mut serde_json::Value) {
        match node {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(format)) = map.get_mut("format") {
                    match format.as_str() {
                        "uint64" | "uint" => *format = "int64".into(),
                        "uint32" | "uint16" | "uint8" => *format = "int32".into(),
                        _ => {}
                    }
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(crd).expect("a CRD serializes");
    walk(&mut value);
    serde_json::from_value(value).expect("a CRD with other formats is still a CRD")
}

/// Defaults go into nested fields only when their parent exists, so without this a
/// new object would have no `status` at all, and `status.observedGeneration` would
/// never get its -1 default before the operator writes the first status.
fn default_status_to_empty(root: &mut JSONSchemaProps) {
    if let Some(status) = root.properties.as_mut().and_then(|p| p.get_mut("status")) {
        status.default = Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(json!({})));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::Value;

    use super::*;

    const REGENERATE: &str = "cargo run -p entrepot-operator -- crd > crds/entrepot.io.yaml && cp crds/entrepot.io.yaml charts/entrepot/crds/";

    fn schemas() -> Vec<(String, Value)> {
        crds()
            .into_iter()
            .map(|crd| {
                let schema = crd.spec.versions[0].schema.clone().and_then(|s| s.open_api_v3_schema);
                (crd.spec.names.kind, serde_json::to_value(schema).unwrap())
            })
            .collect()
    }

    #[test]
    fn the_committed_crds_are_up_to_date() {
        let rendered = render_crds().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for copy in ["crds/entrepot.io.yaml", "charts/entrepot/crds/entrepot.io.yaml"] {
            let committed = std::fs::read_to_string(root.join(copy)).unwrap_or_default();
            assert!(committed == rendered, "{copy} is stale or missing; regenerate it with:\n  {REGENERATE}");
        }
    }

    #[test]
    fn the_rendered_yaml_reads_back_as_the_same_crds() {
        let docs: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&render_crds().unwrap()).unwrap();
        assert_eq!(docs, crds());
    }

    #[test]
    fn every_field_has_a_description() {
        fn walk(path: &str, node: &Value, missing: &mut Vec<String>) {
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (name, field) in props {
                    let field_path = format!("{path}.{name}");
                    if field.get("description").and_then(Value::as_str).is_none_or(|d| d.trim().is_empty()) {
                        missing.push(field_path.clone());
                    }
                    walk(&field_path, field, missing);
                }
            }
            for key in ["items", "additionalProperties"] {
                if let Some(child) = node.get(key).filter(|c| c.is_object()) {
                    walk(&format!("{path}[]"), child, missing);
                }
            }
        }
        for (kind, schema) in schemas() {
            let mut missing = Vec::new();
            assert!(schema.get("description").is_some(), "{kind} has no description");
            walk(&kind, &schema, &mut missing);
            assert!(missing.is_empty(), "fields without a description (the `kubectl explain` text): {missing:#?}");
        }
    }

    /// The rules an API server applies before it accepts a CRD's schema ("structural
    /// schema"), checked here because no kube-apiserver can be installed on these machines.
    fn structural_errors(path: &str, node: &Value, in_junctor: bool, errors: &mut Vec<String>) {
        let Some(obj) = node.as_object() else {
            errors.push(format!("{path}: a schema must be an object"));
            return;
        };
        for key in
            ["$ref", "$schema", "definitions", "$defs", "id", "dependencies", "additionalItems", "patternProperties"]
        {
            if obj.contains_key(key) {
                errors.push(format!("{path}: `{key}` is not allowed in a CRD schema"));
            }
        }
        if obj.get("uniqueItems") == Some(&Value::Bool(true)) {
            errors.push(format!("{path}: uniqueItems: true is not allowed"));
        }
        if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
            errors.push(format!("{path}: properties and additionalProperties are mutually exclusive"));
        }
        if obj.get("additionalProperties") == Some(&Value::Bool(false)) {
            // Pruning already drops unknown fields; the API server refuses an explicit false.
            errors.push(format!("{path}: additionalProperties: false is not allowed"));
        }
        let flag = |k: &str| obj.get(k) == Some(&Value::Bool(true));
        if in_junctor {
            for (key, _) in obj.iter().filter(|(k, _)| {
                ["type", "description", "default", "additionalProperties", "nullable", "title"].contains(&k.as_str())
                    || k.starts_with("x-kubernetes-")
            }) {
                errors.push(format!("{path}: `{key}` is not allowed inside allOf/anyOf/oneOf/not"));
            }
        } else {
            match obj.get("type").and_then(Value::as_str) {
                Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
                Some(other) => errors.push(format!("{path}: unknown type {other}")),
                None if flag("x-kubernetes-preserve-unknown-fields") || flag("x-kubernetes-int-or-string") => {}
                None => errors.push(format!("{path}: no type (nor x-kubernetes-preserve-unknown-fields)")),
            }
        }
        if obj.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
            let items = obj.get("items").cloned().unwrap_or_default();
            let required: Vec<&str> = items
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for key in obj.get("x-kubernetes-list-map-keys").and_then(Value::as_array).into_iter().flatten() {
                let key = key.as_str().unwrap_or_default();
                let defaulted = items.pointer(&format!("/properties/{key}/default")).is_some();
                if !required.contains(&key) && !defaulted {
                    errors.push(format!("{path}: list map key `{key}` must be required or defaulted"));
                }
            }
        }
        let outer_props = obj.get("properties").and_then(Value::as_object);
        if let Some(props) = outer_props {
            for (name, field) in props {
                structural_errors(&format!("{path}.{name}"), field, in_junctor, errors);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = obj.get(key).filter(|c| c.is_object()) {
                structural_errors(&format!("{path}[]"), child, in_junctor, errors);
            }
        }
        for junctor in ["allOf", "anyOf", "oneOf"] {
            for (i, branch) in obj.get(junctor).and_then(Value::as_array).into_iter().flatten().enumerate() {
                let branch_path = format!("{path}.{junctor}[{i}]");
                // A field named in a junctor must also be specified outside of it.
                for name in branch.get("properties").and_then(Value::as_object).into_iter().flatten().map(|(n, _)| n) {
                    if !outer_props.is_some_and(|p| p.contains_key(name)) {
                        errors.push(format!("{branch_path}: field `{name}` is not specified outside the junctor"));
                    }
                }
                structural_errors(&branch_path, branch, true, errors);
            }
        }
        if let Some(not) = obj.get("not") {
            structural_errors(&format!("{path}.not"), not, true, errors);
        }
    }

    #[test]
    fn schemas_are_structural() {
        for (kind, schema) in schemas() {
            let mut errors = Vec::new();
            structural_errors(&kind, &schema, false, &mut errors);
            assert!(errors.is_empty(), "{kind}'s schema would be refused by an API server: {errors:#?}");
        }
    }

    #[test]
    fn the_structural_check_catches_what_an_api_server_refuses() {
        let bad = serde_json::json!({
            "type": "object",
            "properties": {
                "untyped": {"description": "no type"},
                "auth": {"type": "object", "properties": {"a": {"type": "string"}},
                         "oneOf": [{"required": ["b"], "properties": {"b": {"type": "string"}}}]},
                "map": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            }
        });
        let mut errors = Vec::new();
        structural_errors("Bad", &bad, false, &mut errors);
        assert_eq!(errors.len(), 4, "{errors:#?}");
    }

    #[test]
    fn every_kind_has_a_status_that_starts_unobserved() {
        for (kind, schema) in schemas() {
            let status = &schema["properties"]["status"];
            assert_eq!(status["default"], serde_json::json!({}), "{kind}");
            assert_eq!(status["properties"]["observedGeneration"]["default"], -1, "{kind}");
            assert_eq!(status["properties"]["conditions"]["x-kubernetes-list-type"], "map", "{kind}");
        }
        for crd in crds() {
            let version = &crd.spec.versions[0];
            assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{}", crd.spec.names.kind);
            assert_eq!(crd.spec.names.categories.as_deref(), Some(&["entrepot".to_string()][..]));
            assert_eq!(crd.spec.group, "entrepot.io");
            assert_eq!(version.name, "v1alpha1");
            assert_eq!(crd.spec.scope, "Namespaced");
        }
    }

    #[test]
    fn short_names_do_not_collide_with_built_in_ones() {
        const BUILT_IN: &[&str] = &[
            "cm",
            "cs",
            "csr",
            "ds",
            "deploy",
            "ep",
            "ev",
            "hpa",
            "ing",
            "limits",
            "no",
            "ns",
            "pdb",
            "po",
            "psp",
            "pv",
            "pvc",
            "quota",
            "rc",
            "rs",
            "sa",
            "sc",
            "sts",
            "svc",
            "cj",
            "crd",
            "crds",
            "netpol",
            "pc",
            "ingclass",
            "csinode",
            "csidriver",
            "vac",
        ];
        for crd in crds() {
            for short in crd.spec.names.short_names.unwrap_or_default() {
                assert!(!BUILT_IN.contains(&short.as_str()), "{short} is a built-in short name");
            }
        }
    }

    #[test]
    fn sync_flow_prints_the_columns_users_expect() {
        let crd = crds().into_iter().find(|c| c.spec.names.kind == "SyncFlow").unwrap();
        let names: Vec<String> =
            crd.spec.versions[0].additional_printer_columns.iter().flatten().map(|c| c.name.to_uppercase()).collect();
        assert_eq!(names, ["READY", "SOURCE", "TARGETS", "BACKLOG", "OLDEST", "DLQ", "DELIVERED", "AGE"]);
    }
}
