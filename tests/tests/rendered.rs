//! The runner as the operator renders it: the quickstart SyncFlow goes through the
//! operator's validate and build steps; the ConfigMap's `runner.yaml`, the container's
//! arguments and its secret volumes (laid out here the way the kubelet's atomic writer
//! does) start a real runner process, and an order travels from a signed webhook to the
//! ERP; the admin API wants the mounted token, and a rotated token reaches the running
//! runner. No kubelet runs on these machines; this stands in for a pod.

use std::time::Duration;

use entrepot_e2e::{
    rendered_pod::{RenderedPod, flow_in_cluster, secret_values},
    *,
};
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
    let uid = "5f1c1a52-0000-4000-8000-000000000001";
    let (flow, refs) = flow_in_cluster(&manifests, &key.name, spec.clone(), &erp.base_url(), uid);
    let config = validate(&key.name, "retail", spec, &refs).expect("the quickstart is valid");
    let built = children(&flow, &config, &RunnerDefaults::with_image("entrepot:test")).unwrap();

    // The ConfigMap becomes the mounted file, the secret volumes directories of the pod.
    let Workload::Continuous { stateful_set, .. } = built.workload else { panic!("the quickstart is continuous") };
    let pod = RenderedPod::new(
        dir.path(),
        &built.config_map.data.as_ref().unwrap()[CONFIG_KEY],
        stateful_set.spec.unwrap().template.spec.unwrap(),
    );
    assert!(pod.container().env.as_ref().is_none_or(Vec::is_empty), "no Secret in the environment");
    let mut secrets = secret_values(&manifests);
    secrets.insert((admin_token_secret_name(&key.name), "token".into()), "admin-token-1".into());
    pod.write_secrets(1, &secrets);
    let runner = RunnerProcess::spawn(pod.args(), Vec::new()).await;

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
    pod.write_secrets(2, &secrets);
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
