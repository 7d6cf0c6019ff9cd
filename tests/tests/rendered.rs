//! The runner as the operator renders it: the quickstart SyncFlow goes through the
//! operator's validate and build steps; the ConfigMap's `runner.yaml`, the container's
//! arguments and its secret volumes (laid out here the way the kubelet's atomic writer
//! does) start a real runner process, and an order travels from a signed webhook to the
//! ERP; the admin API wants the mounted token, and a rotated token reaches the running
//! runner. No kubelet runs on these machines; this stands in for a pod.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::core::v1::KeyToPath;

use entrepot_e2e::*;
use entrepot_operator::{
    resources::{SyncFlow, SyncFlowSpec},
    sync_flow::{
        build::{CONFIG_KEY, RunnerDefaults, Workload, children},
        names::admin_token_secret_name,
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

    // The ConfigMap becomes the mounted file, the secret volumes directories under `root`.
    let config_path = dir.path().join(CONFIG_KEY);
    std::fs::write(&config_path, &built.config_map.data.as_ref().unwrap()[CONFIG_KEY]).unwrap();
    let Workload::Continuous { stateful_set, .. } = built.workload else { panic!("the quickstart is continuous") };
    let pod = stateful_set.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    assert!(container.env.as_ref().is_none_or(Vec::is_empty), "no Secret in the environment");
    let mut secrets: BTreeMap<(String, String), String> = manifests
        .secrets
        .iter()
        .flat_map(|(k, values)| values.iter().map(move |(key, v)| ((k.name.clone(), key.clone()), v.clone())))
        .collect();
    secrets.insert((admin_token_secret_name(&key.name), "token".into()), "admin-token-1".into());
    let root = dir.path().join("pod");
    // What the kubelet writes for each secret or projected volume, and again after a
    // rotation: every item of every Secret source, at the volume's mount path.
    let kubelet_writes = |generation: u32, secrets: &BTreeMap<(String, String), String>| {
        for volume in pod.volumes.iter().flatten() {
            let sources: Vec<(String, Vec<KeyToPath>)> = match (&volume.secret, &volume.projected) {
                (Some(s), _) => vec![(s.secret_name.clone().unwrap(), s.items.clone().unwrap())],
                (_, Some(p)) => p
                    .sources
                    .iter()
                    .flatten()
                    .filter_map(|s| s.secret.clone())
                    .map(|s| (s.name, s.items.unwrap()))
                    .collect(),
                _ => continue,
            };
            let mount = container.volume_mounts.iter().flatten().find(|m| m.name == volume.name).expect("mounted");
            assert!(mount.sub_path.is_none(), "a subPath mount would never be refreshed");
            let files: Vec<(&str, &str)> = sources
                .iter()
                .flat_map(|(name, items)| {
                    items.iter().map(move |i| (i.path.as_str(), secrets[&(name.clone(), i.key.clone())].as_str()))
                })
                .collect();
            kubelet_secret_volume(&root.join(mount.mount_path.trim_start_matches('/')), generation, &files);
        }
    };
    kubelet_writes(1, &secrets);

    // The container's arguments, with the pod's paths and ports moved to this machine.
    let rendered = container.args.clone().unwrap();
    let mut args = vec![rendered[0].clone()];
    for pair in rendered[1..].chunks(2) {
        match pair[0].as_str() {
            "--config" => args.extend([pair[0].clone(), config_path.display().to_string()]),
            "--data-dir" => args.extend([pair[0].clone(), dir.path().join("data").display().to_string()]),
            "--listen" | "--admin-listen" => {} // loopback ports instead
            "--admin-token-file" | "--secrets-dir" => {
                args.extend([pair[0].clone(), root.join(pair[1].trim_start_matches('/')).display().to_string()])
            }
            _ => args.extend(pair.iter().cloned()),
        }
    }
    assert_eq!(args[0], "serve");
    let runner = RunnerProcess::spawn(args, Vec::new()).await;

    let order = shopify_order(4242, "SKU-9", "2026-11-27T10:05:00-05:00");
    assert_eq!(post_webhook(&runner.webhook(FLOW), &order, "delivery-4242", None).await.status(), 200);
    eventually(Duration::from_secs(30), "the order in the ERP", || async {
        erp.order_by_external_id("shopify:4242").is_some()
    })
    .await;
    assert_eq!(status(&runner.admin_url).await.flows[0].namespace, "retail");

    // The admin API wants the mounted token.
    let letters = format!("{}/v1/deadletters", runner.admin_url);
    assert_eq!(reqwest::get(&letters).await.unwrap().status(), 401);
    let with_token = reqwest::Client::new().get(&letters).bearer_auth("admin-token-1").send().await.unwrap();
    assert_eq!(with_token.status(), 200);

    // The Secret is rotated: the kubelet swaps the files, and the next request is
    // checked against the new token, without a restart.
    secrets.insert((admin_token_secret_name(&key.name), "token".into()), "admin-token-2".into());
    kubelet_writes(2, &secrets);
    let old = reqwest::Client::new().get(&letters).bearer_auth("admin-token-1").send().await.unwrap();
    assert_eq!(old.status(), 401);
    let new = reqwest::Client::new().get(&letters).bearer_auth("admin-token-2").send().await.unwrap();
    assert_eq!(new.status(), 200);
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
