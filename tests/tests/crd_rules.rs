//! Every Entrepot manifest in `examples/` passes its CRD's schema and CEL rules, offline,
//! and each rule refuses what it is there to refuse, with its message.
//!
//! No kube-apiserver can be installed on these machines: `entrepot_e2e::crd_schema`
//! stands in for its OpenAPI validation and kube's `cel` feature (kube-cel) evaluates the
//! `x-kubernetes-validations` rules, on the committed `crds/entrepot.io.yaml`.

use std::{collections::BTreeMap, path::Path};

use entrepot_e2e::{crd_schema, repo_root};
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
            out.push(format!("{}: {} [cel: {:?}{}]", e.field_path, e.message, e.kind, if broken { ", BROKEN RULE" } else { "" }));
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

/// A manifest of `kind` with this spec.
fn manifest(kind: &str, spec: &str) -> Value {
    let spec: Value = serde_saphyr::from_str(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    serde_json::json!({"apiVersion": "entrepot.io/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec})
}

const CONNECTOR: &str = "{type: rest, endpoint: 'https://erp.example.com/api'}";
const FLOW: &str = "{source: {connectorRef: shop, entity: orders, trigger: {webhook: {}}}, \
                    targets: [{connectorRef: erp, entity: salesOrder}]}";
const MAPPING: &str = "{program: '.', tests: [{name: passes through, input: {}, output: {}}]}";

/// (kind, spec, what the refusal must say). Each CEL rule of the CRDs has at least one;
/// the schema's own keywords (required fields, bounds, oneOf, enums, list keys) too.
const REFUSED: &[(&str, &str, &str)] = &[
    // Connector: CEL.
    ("Connector", "{type: rest, endpoint: erp.example.com/api}", "endpoint must be an http or https URL"),
    ("Connector", "{type: rest, endpoint: 'https://'}", "endpoint must be an http or https URL"),
    ("Connector", "{type: rest, idempotencyHeader: Idem Key}", "idempotencyHeader must be an HTTP header name"),
    // A postgres Connector: a database URL without credentials, and only there; basic login.
    ("Connector", "{type: rest, endpoint: 'postgres://db/commerce'}", "endpoint must be an http or https URL"),
    ("Connector", "{type: postgres, endpoint: 'https://db.example.com/commerce'}", "a postgres Connector's endpoint is postgres://HOST[:PORT]/DATABASE"),
    ("Connector", "{type: postgres, endpoint: 'postgres://app:pw@db/commerce'}", "a postgres Connector's endpoint is postgres://HOST[:PORT]/DATABASE"),
    ("Connector", "{type: postgres, endpoint: 'postgres://db:5432'}", "a postgres Connector's endpoint is postgres://HOST[:PORT]/DATABASE"),
    ("Connector", "{type: postgres}", "a postgres Connector's endpoint is postgres://HOST[:PORT]/DATABASE"),
    (
        "Connector",
        "{type: postgres, endpoint: 'postgres://db/commerce', auth: {bearer: {secretRef: {name: s, key: k}}}}",
        "a postgres Connector logs in with auth.basic",
    ),
    ("Connector", "{type: rest, database: {sslMode: disable}}", "database settings (sslMode, caSecretRef) are for type postgres"),
    ("Connector", "{type: postgres, endpoint: 'postgres://db/c', database: {sslMode: require}}", "\"require\" is not one of"),
    (
        "Connector",
        "{type: rest, auth: {header: {name: X Api Key, secretRef: {name: s, key: k}}}}",
        "name must be an HTTP header name",
    ),
    (
        "Connector",
        "{type: rest, auth: {oauth2ClientCredentials: {tokenUrl: login.example.com/token, \
          clientIdSecretRef: {name: s, key: id}, clientSecretSecretRef: {name: s, key: secret}}}}",
        "tokenUrl must be an http or https URL",
    ),
    (
        "Connector",
        "{type: rest, auth: {token: {secretRef: {name: s, key: k}}}}",
        "auth.token is for types whose token header is known",
    ),
    (
        "Connector",
        "{type: rest, webhook: {signature: hmac-sha256, secretRef: {name: s, key: k}}}",
        "signatures hmac-sha256 and api-key need header",
    ),
    (
        "Connector",
        "{type: rest, webhook: {signature: api-key, header: 'X Api Key', secretRef: {name: s, key: k}}}",
        "header must be an HTTP header name",
    ),
    (
        "Connector",
        "{type: amazon-sp, limits: {operations: [{name: getOrders, method: GET, path: orders/v0/orders, \
          requestsPerSecond: 0.0167, burst: 20}]}}",
        "path must start with /",
    ),
    // Connector: schema. Limits are positive.
    ("Connector", "{type: rest, limits: {requestsPerSecond: 0}}", ".spec.limits.requestsPerSecond: 0 is below the minimum"),
    ("Connector", "{type: rest, limits: {burst: 0}}", ".spec.limits.burst: 0 is below the minimum"),
    ("Connector", "{type: rest, limits: {concurrency: 0}}", ".spec.limits.concurrency: 0 is below the minimum"),
    // A webhook needs its signature scheme and its secret.
    ("Connector", "{type: shopify, webhook: {signature: shopify-hmac-sha256}}", ".spec.webhook: secretRef is required"),
    ("Connector", "{type: shopify, webhook: {secretRef: {name: s, key: k}}}", ".spec.webhook: signature is required"),
    ("Connector", "{type: shopify, webhook: {signature: sha1, secretRef: {name: s, key: k}}}", "\"sha1\" is not one of"),
    // An auth scheme: exactly one, with its required fields.
    (
        "Connector",
        "{type: rest, auth: {bearer: {secretRef: {name: a, key: b}}, header: {name: X, secretRef: {name: a, key: b}}}}",
        ".spec.auth: must match exactly one",
    ),
    ("Connector", "{type: rest, auth: {basic: {usernameSecretRef: {name: s, key: u}}}}", "passwordSecretRef is required"),
    ("Connector", "{type: rest, auth: {bearer: {}}}", ".spec.auth.bearer: secretRef is required"),
    ("Connector", "{type: rest, auth: {header: {secretRef: {name: s, key: k}}}}", ".spec.auth.header: name is required"),
    // SyncFlow: CEL.
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {refetch: {path: /v2/orders, id: .data.id}}}}, \
          targets: [{connectorRef: erp, entity: x}]}",
        "path must contain {id}",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {poll: {interval: 1m, path: /x, sql: 'SELECT 1'}}}, \
          targets: [{connectorRef: erp, entity: x}]}",
        "set path (an HTTP API source) or sql (a postgres source)",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {poll: {interval: 1m}}}, targets: [{connectorRef: erp, entity: x}]}",
        "set path (an HTTP API source) or sql (a postgres source)",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, \
          targets: [{connectorRef: shop, entity: x, graphql: {mutation: 'query { shop { name } }'}}]}",
        "mutation must be a GraphQL mutation document",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, \
          targets: [{connectorRef: erp, entity: x, table: {name: t, key: []}}]}",
        ".spec.targets[0].table.key: fewer than minItems 1 items",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}, poll: {interval: 1m, path: /x}}}, \
          targets: [{connectorRef: erp, entity: x}]}",
        "set exactly one of webhook, poll or file",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {}}, targets: [{connectorRef: erp, entity: x}]}",
        "set exactly one of webhook, poll or file",
    ),
    ("SyncFlow", "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, targets: []}", "a flow needs at least one target"),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, targets: [{connectorRef: erp, entity: x}], \
          mode: batch, schedule: '0 2 * * *'}",
        "a webhook source must always be up to answer its sender",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {poll: {interval: 1h, path: /x}}}, \
          targets: [{connectorRef: erp, entity: x}], mode: batch}",
        "a batch flow needs a schedule",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {poll: {interval: 1h, path: /x}}}, \
          targets: [{connectorRef: erp, entity: x}], schedule: '0 2 * * *'}",
        "a continuous flow runs all the time",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {poll: {interval: 1h, path: /x}}}, \
          targets: [{connectorRef: erp, entity: x}], timeZone: Europe/Paris}",
        "a continuous flow runs all the time",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, \
          targets: [{connectorRef: erp, entity: x}, {connectorRef: wms, entity: stock, operation: upsert}]}",
        "an upsert is sent to <path>/<ordering key>: set spec.delivery.orderingKey",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {file: {directory: /in, format: csv, processedDirectory: /in}}}, \
          targets: [{connectorRef: erp, entity: x}]}",
        "processedDirectory must differ from directory",
    ),
    // SyncFlow: schema.
    ("SyncFlow", "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}}", ".spec: targets is required"),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, targets: [{connectorRef: erp, entity: x}], \
          mode: nightly}",
        "\"nightly\" is not one of",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, targets: [{connectorRef: erp, entity: x}], \
          delivery: {retry: {maxAttempts: 0}}}",
        ".spec.delivery.retry.maxAttempts: 0 is below the minimum",
    ),
    // Mapping: CEL.
    ("Mapping", "{program: '.', tests: [{name: '', input: {}, output: {}}]}", "a test needs a name that says what it shows"),
    ("Mapping", "{program: '.', tests: [{name: '  ', input: {}, output: {}}]}", "a test needs a name that says what it shows"),
    // Mapping: schema.
    ("Mapping", "{program: '.', tests: [{input: {}, output: {}}]}", ".spec.tests[0]: name is required"),
    (
        "Mapping",
        "{program: '.', tests: [{name: a, input: 1, output: 1}, {name: a, input: 2, output: 2}]}",
        ".spec.tests[1]: duplicate entry",
    ),
    ("Mapping", "{program: ''}", ".spec.program: \"\" is shorter than minLength"),
    ("Mapping", "{program: '.', tests: [{name: a, input: {}}]}", ".spec.tests[0]: output is required"),
];

#[test]
fn the_bases_of_the_refused_cases_are_accepted() {
    let schemas = schemas();
    let database = "{type: postgres, endpoint: 'postgres://db.retail.svc:5432/commerce', \
                    auth: {basic: {usernameSecretRef: {name: s, key: u}, passwordSecretRef: {name: s, key: p}}}, \
                    database: {sslMode: verify-full, caSecretRef: {name: s, key: ca.crt}}}";
    for (kind, spec) in [("Connector", CONNECTOR), ("Connector", database), ("SyncFlow", FLOW), ("Mapping", MAPPING)] {
        assert_eq!(refusals(&schemas, &manifest(kind, spec)), Vec::<String>::new(), "{kind} {spec}");
    }
}

#[test]
fn each_rule_refuses_what_it_is_there_to_refuse_with_its_message() {
    let schemas = schemas();
    let mut wrong = Vec::new();
    for (kind, spec, want) in REFUSED {
        let found = refusals(&schemas, &manifest(kind, spec));
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
