//! The CRDs, the examples and the refused manifests against a real kube-apiserver
//! (`entrepot_e2e::cluster`): structural schemas, CEL rules and their cost budgets are
//! the API server's to judge, and `kubectl explain` shows our field docs.

use std::{collections::BTreeSet, path::Path, time::Duration};

use entrepot_e2e::{
    cluster::{ControlPlane, wait_for},
    refused::{self, CONNECTOR, FLOW, MAPPING, REFUSED},
    repo_root,
};
use serde_json::Value;

/// Whitespace collapsed, so text wrapped by kubectl compares with the CRD's.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The committed CRD of `kind`.
fn crd(kind: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("crds/entrepot.io.yaml")).unwrap();
    let crds: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    crds.into_iter().find(|c| c["spec"]["names"]["kind"] == kind).unwrap_or_else(|| panic!("no CRD of kind {kind}"))
}

/// The namespaces the documents of an example name (none when they leave it open).
fn named_namespaces(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let docs: Vec<Value> = serde_saphyr::from_multiple(&std::fs::read_to_string(&path).unwrap()).unwrap();
            out.extend(docs.iter().filter_map(|d| d["metadata"]["namespace"].as_str().map(String::from)));
        }
    }
    out
}

#[tokio::test]
async fn the_api_server_accepts_the_crds_and_examples_and_refuses_bad_manifests_with_their_messages() {
    let cluster = ControlPlane::start().await.unwrap();
    let crds = repo_root().join("crds");

    // The CRDs, applied the way a GitOps tool does.
    let applied = cluster.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]).await;
    assert!(!applied.stderr.contains("Warning"), "the API server warns about the CRDs:\n{}", applied.stderr);
    applied.expect_ok("kubectl apply --server-side -f crds/");
    cluster
        .kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])
        .await
        .expect_ok("the CRDs are established");

    // `kubectl explain` prints our field docs, from the API server's OpenAPI.
    // The API server publishes a new CRD's OpenAPI a moment after it is established.
    let explained = wait_for(Duration::from_secs(30), "kubectl explain syncflow.spec.delivery", || async {
        let out = cluster.kubectl(&["explain", "syncflow.spec.delivery"]).await;
        Ok(out.success.then(|| words(&out.stdout)))
    })
    .await
    .unwrap();
    let delivery = &crd("SyncFlow")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["delivery"];
    let doc = words(delivery["description"].as_str().expect("spec.delivery has a description"));
    assert!(
        explained.contains(&doc),
        "kubectl explain syncflow.spec.delivery lacks the field doc {doc:?}:\n{explained}"
    );
    for (field, schema) in delivery["properties"].as_object().unwrap() {
        assert!(explained.contains(field.as_str()), "kubectl explain lists no {field}:\n{explained}");
        let first = words(schema["description"].as_str().unwrap_or_default());
        let first: String = first.chars().take(40).collect();
        assert!(explained.contains(&first), "kubectl explain lacks the doc of {field} ({first:?}):\n{explained}");
    }

    // Every example, in a namespace of its own unless it names one.
    let mut examples = 0;
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let named = named_namespaces(&dir);
        let mut args = vec!["apply", "--server-side", "-f", dir.to_str().unwrap()];
        if named.is_empty() {
            cluster.namespace(&name).await.unwrap();
            args.extend(["-n", &name]);
        }
        for ns in &named {
            if cluster.kubectl(&["get", "namespace", ns]).await.success {
                continue;
            }
            cluster.namespace(ns).await.unwrap();
        }
        let applied = cluster.kubectl(&args).await.expect_ok(&format!("kubectl apply -f examples/{name}"));
        assert!(!applied.trim().is_empty(), "examples/{name} applied nothing");
        examples += 1;
    }
    assert!(examples >= 10, "{examples} examples");
    // The category and short names reach everything Entrepot's.
    let all = cluster.kubectl(&["get", "entrepot", "-A", "-o", "name"]).await.expect_ok("kubectl get entrepot");
    for kind in ["connector", "mapping", "syncflow", "reconcileschedule"] {
        assert!(
            all.lines().any(|l| l.starts_with(&format!("{kind}.entrepot.io/"))),
            "kubectl get entrepot lists no {kind}:\n{all}"
        );
    }

    // The bases of the refused cases are accepted (dry run: nothing is stored)...
    cluster.namespace("refused").await.unwrap();
    let bases: Vec<Value> = [("Connector", CONNECTOR), ("SyncFlow", FLOW), ("Mapping", MAPPING)]
        .iter()
        .map(|(kind, spec)| refused::manifest(kind, "base", spec))
        .collect();
    let bases = bases.iter().map(|d| serde_json::to_string(d).unwrap()).collect::<Vec<_>>().join("\n---\n");
    cluster
        .kubectl_as(&cluster.kubeconfig(), &["apply", "--dry-run=server", "-n", "refused", "-f", "-"], Some(&bases))
        .await
        .expect_ok("the bases of the refused cases");

    // ... and every refused case is refused, a CEL rule with its own message. One kubectl
    // run: it reports each object's refusal under the object's name and goes on.
    let docs: Vec<String> = REFUSED
        .iter()
        .enumerate()
        .map(|(i, (kind, spec, _))| {
            serde_json::to_string(&refused::manifest(kind, &format!("case-{i}"), spec)).unwrap()
        })
        .collect();
    let out = cluster
        .kubectl_as(
            &cluster.kubeconfig(),
            &["apply", "--dry-run=server", "-n", "refused", "-f", "-"],
            Some(&docs.join("\n---\n")),
        )
        .await;
    assert!(!out.success, "kubectl accepted every refused case:\n{}", out.stdout);
    let mut wrong = Vec::new();
    for (i, (kind, spec, want)) in REFUSED.iter().enumerate() {
        let name = format!("\"case-{i}\"");
        // `The SyncFlow "case-3" is invalid: ...`, one line per refused object.
        let Some(line) = out.stderr.lines().find(|l| l.contains(&name) && l.contains("is invalid")) else {
            wrong.push(format!("{kind} {spec}: accepted (want a refusal saying {want:?})"));
            continue;
        };
        // A CEL rule's own message; for a schema keyword, the field it names (the
        // offline checker words the rest differently).
        let expected = match want.strip_prefix('.') {
            _ if refused::is_cel_message(want) => want,
            Some(path) => path.split(':').next().unwrap(),
            None => "is invalid",
        };
        if !line.contains(expected) {
            wrong.push(format!("{kind} {spec}\n  want: {expected}\n  got:  {line}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the API server's refusals differ:\n{}\n\nkubectl said:\n{}",
        wrong.join("\n"),
        out.stderr
    );
}
