//! Every Entrepot manifest in `examples/` passes its CRD's schema and CEL rules, offline,
//! and each rule refuses what it is there to refuse, with its message.
//!
//! These run in milliseconds, without an API server: `entrepot_e2e::crd_schema` stands in
//! for its OpenAPI validation and kube's `cel` feature (kube-cel) evaluates the
//! `x-kubernetes-validations` rules, on the committed `crds/entrepot.io.yaml`. The real
//! API server is the final judge: `tests/tests/cluster_crds.rs` applies the same cases.

use std::{collections::BTreeMap, path::Path};

use entrepot_e2e::{
    crd_schema,
    refused::{self, CONNECTOR, FLOW, MAPPING, REFUSED},
    repo_root,
};
use kube::core::cel::{ErrorKind, Validator};
use serde_json::Value;

/// Each kind's `openAPIV3Schema`, from the committed CRDs.
fn schemas() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(repo_root().join("crds/entrepot.io.yaml")).unwrap();
    let crds: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    crds.into_iter()
        .map(|crd| {
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            (kind, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone())
        })
        .collect()
}

/// What the API server would say about `object`: schema problems, then failed CEL rules
/// (as `path: message [cel: kind]`). Empty when it would accept it.
fn refusals(schemas: &BTreeMap<String, Value>, object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let Some(schema) = schemas.get(kind) else { return vec![format!("no CRD for kind {kind:?}")] };
    assert_eq!(object["apiVersion"], "entrepot.io/v1alpha1", "{object}");
    let mut out = crd_schema::problems(schema, object);
    let schema_refused = !out.is_empty();
    if let Err(errors) = Validator::new().validate(schema, object, None) {
        for e in errors.iter() {
            // A rule that cannot run on an object the schema accepts is a bug of ours. On
            // one the schema refuses (a required field missing) the API server refuses
            // it anyway.
            let broken = !matches!(e.kind, ErrorKind::ValidationFailure) && !schema_refused;
            out.push(format!(
                "{}: {} [cel: {:?}{}]",
                e.field_path,
                e.message,
                e.kind,
                if broken { ", BROKEN RULE" } else { "" }
            ));
        }
    }
    out
}

fn yaml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_example_passes_the_crd_schema_and_its_cel_rules() {
    let schemas = schemas();
    let mut files = Vec::new();
    yaml_files(&repo_root().join("examples"), &mut files);
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for file in files {
        let docs: Vec<Value> = serde_saphyr::from_multiple(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in docs.iter().filter(|d| d["apiVersion"].as_str().is_some_and(|v| v.starts_with("entrepot.io/"))) {
            *checked.entry(doc["kind"].as_str().unwrap_or_default().to_string()).or_default() += 1;
            for problem in refusals(&schemas, doc) {
                failures.push(format!("{} {}: {problem}", file.display(), doc["metadata"]["name"]));
            }
        }
    }
    assert!(failures.is_empty(), "examples the API server would refuse:\n{}", failures.join("\n"));
    for kind in ["Connector", "Mapping", "SyncFlow"] {
        assert!(checked.get(kind).copied().unwrap_or(0) >= 4, "too few {kind} examples checked: {checked:?}");
    }
}

#[test]
fn the_bases_of_the_refused_cases_are_accepted() {
    let schemas = schemas();
    let database = "{type: postgres, endpoint: 'postgres://db.retail.svc:5432/commerce', \
                    auth: {basic: {usernameSecretRef: {name: s, key: u}, passwordSecretRef: {name: s, key: p}}}, \
                    database: {sslMode: verify-full, caSecretRef: {name: s, key: ca.crt}}}";
    for (kind, spec) in [("Connector", CONNECTOR), ("Connector", database), ("SyncFlow", FLOW), ("Mapping", MAPPING)] {
        assert_eq!(refusals(&schemas, &refused::manifest(kind, "x", spec)), Vec::<String>::new(), "{kind} {spec}");
    }
}

#[test]
fn each_rule_refuses_what_it_is_there_to_refuse_with_its_message() {
    let schemas = schemas();
    let mut wrong = Vec::new();
    for (kind, spec, want) in REFUSED {
        let found = refusals(&schemas, &refused::manifest(kind, "x", spec));
        if !found.iter().any(|f| f.contains(want)) {
            wrong.push(format!("{kind} {spec}\n  want: {want}\n  got:  {found:?}"));
        }
        if let Some(f) = found.iter().find(|f| f.contains("BROKEN RULE")) {
            wrong.push(format!("{kind} {spec}: a rule failed to evaluate: {f}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_cel_rule_of_the_crds_has_a_refused_case() {
    fn messages(node: &Value, out: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                for rule in map.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
                    out.push(rule["message"].as_str().expect("every rule has a message").to_string());
                    assert!(rule["rule"].is_string(), "{rule}");
                }
                map.values().for_each(|v| messages(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| messages(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    for schema in schemas().values() {
        messages(schema, &mut all);
    }
    assert!(all.len() >= 10, "{all:#?}");
    for message in all {
        assert!(
            REFUSED.iter().any(|(_, _, want)| message.contains(want) || want.contains(message.as_str())),
            "no case in REFUSED shows the rule with message {message:?}"
        );
    }
}
