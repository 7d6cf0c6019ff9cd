//! The runner as the operator renders it: the quickstart SyncFlow goes through the
//! operator's validate and build steps; the ConfigMap's `runner.yaml`, the container's
//! arguments and its `secretKeyRef` environment (resolved here the way the kubelet would)
//! start a real runner process, and an order travels from a signed webhook to the ERP.
//! No kube-apiserver or kubelet can run on these machines; this stands in for a pod.

use std::{collections::BTreeMap, time::Duration};

use entrepot_e2e::*;
use entrepot_operator::{
    resources::{SyncFlow, SyncFlowSpec},
    sync_flow::{
        build::{CONFIG_KEY, RunnerDefaults, Workload, children},
        validate::{References, validate},
    },
};
use entrepot_sim::erp::{self, ErpConfig};

#[tokio::test]
async fn an_order_reaches_the_erp_through_the_runner_the_operator_renders() {
    let dir = tempfile::tempdir().unwrap();
    let erp = erp::bind(ErpConfig { bearer_token: Some(ERP_TOKEN.into()), ..ErpConfig::default() }, "127.0.0.1:0")
        .await
        .unwrap();
    let manifests = quickstart();

    // What the cluster holds: the flow as read from the API, and what it references.
    let (key, spec) = manifests.flows.iter().next().unwrap();
    let mut flow = SyncFlow::new(&key.name, SyncFlowSpec(spec.clone()));
    flow.metadata.namespace = Some("retail".into());
    flow.metadata.uid = Some("5f1c1a52-0000-4000-8000-000000000001".into());
    let mut refs = References::default();
    for (k, c) in &manifests.connectors {
        let mut c = c.clone();
        if c.endpoint.is_some() {
            c.endpoint = Some(erp.base_url());
        }
        refs.connectors.insert(k.name.clone(), Ok(c));
    }
    for (k, m) in &manifests.mappings {
        refs.mappings.insert(k.name.clone(), Ok(m.clone()));
    }
    let config = validate(&key.name, "retail", spec, &refs).expect("the quickstart is valid");
    let built = children(&flow, &config, &RunnerDefaults::with_image("entrepot:test")).unwrap();

    // The ConfigMap becomes the mounted file, the container's env its Secrets.
    let config_path = dir.path().join(CONFIG_KEY);
    std::fs::write(&config_path, &built.config_map.data.as_ref().unwrap()[CONFIG_KEY]).unwrap();
    let Workload::Continuous { stateful_set, .. } = built.workload else { panic!("the quickstart is continuous") };
    let pod = stateful_set.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    let secrets: BTreeMap<(String, String), String> = manifests
        .secrets
        .iter()
        .flat_map(|(k, values)| values.iter().map(move |(key, v)| ((k.name.clone(), key.clone()), v.clone())))
        .collect();
    let env: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .map(|e| {
            let r = e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("only secretKeyRef env");
            assert!(e.value.is_none(), "no Secret value is rendered into the StatefulSet");
            (e.name.clone(), secrets[&(r.name.clone(), r.key.clone())].clone())
        })
        .collect();
    assert_eq!(env.len(), 2, "the webhook secret and the ERP token");

    // The container's arguments, with the pod's paths and ports moved to this machine.
    let rendered = container.args.clone().unwrap();
    let mut args = vec![rendered[0].clone()];
    for pair in rendered[1..].chunks(2) {
        match pair[0].as_str() {
            "--config" => args.extend([pair[0].clone(), config_path.display().to_string()]),
            "--data-dir" => args.extend([pair[0].clone(), dir.path().join("data").display().to_string()]),
            "--listen" | "--admin-listen" => {} // loopback ports instead
            _ => args.extend(pair.iter().cloned()),
        }
    }
    assert_eq!(args[0], "serve");
    let runner = RunnerProcess::spawn(args, env).await;

    let order = shopify_order(4242, "SKU-9", "2026-11-27T10:05:00-05:00");
    assert_eq!(post_webhook(&runner.webhook(FLOW), &order, "delivery-4242", None).await.status(), 200);
    eventually(Duration::from_secs(30), "the order in the ERP", || async {
        erp.order_by_external_id("shopify:4242").is_some()
    })
    .await;
    assert_eq!(status(&runner.admin_url).await.flows[0].namespace, "retail");
}

/// Every example's flows pass the operator's own checks (beyond the CRD schema, which
/// `crd_rules.rs` covers) and render: what a platform team applies from `examples/`
/// becomes a runner workload, not a Stalled flow.
#[test]
fn every_example_flow_is_rendered_by_the_operator() {
    let mut rendered = 0;
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let manifests = entrepot::manifest::Manifests::load_dir(&dir).unwrap();
        for (key, spec) in &manifests.flows {
            let namespace = key.namespace.clone();
            let refs = References {
                connectors: manifests
                    .connectors
                    .iter()
                    .filter(|(k, _)| k.namespace == namespace)
                    .map(|(k, c)| (k.name.clone(), Ok(c.clone())))
                    .collect(),
                mappings: manifests
                    .mappings
                    .iter()
                    .filter(|(k, _)| k.namespace == namespace)
                    .map(|(k, m)| (k.name.clone(), Ok(m.clone())))
                    .collect(),
            };
            let config = validate(&key.name, &namespace, spec, &refs)
                .unwrap_or_else(|e| panic!("{}: the operator refuses SyncFlow {}: {e}", dir.display(), key.name));
            let mut flow = SyncFlow::new(&key.name, SyncFlowSpec(spec.clone()));
            flow.metadata.namespace = Some(namespace.clone());
            flow.metadata.uid = Some("00000000-0000-4000-8000-000000000000".into());
            children(&flow, &config, &RunnerDefaults::with_image("entrepot:test"))
                .unwrap_or_else(|e| panic!("{}: SyncFlow {} cannot be rendered: {e}", dir.display(), key.name));
            rendered += 1;
        }
    }
    assert!(rendered >= 6, "every example flow was checked ({rendered})");
}
