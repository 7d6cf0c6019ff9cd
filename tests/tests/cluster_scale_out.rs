//! Scale-out on a real control plane: `helm install` with the chart's `nats.url`, the
//! quickstart applied with `runner: {replicas: 3, queue: {jetstream: {}}}`, and the three
//! runner Pods that kube-controller-manager makes from the operator's Deployment run by
//! the process kubelet, sharing the flow's queue in a real nats-server: orders posted to
//! each Pod reach the simulated ERP exactly once, every runner delivers a share of them,
//! and the SyncFlow reports the flow's backlog from JetStream.

use std::{collections::BTreeMap, time::Duration};

use entrepot_e2e::{
    ERP_TOKEN, FLOW, WEBHOOK_SECRET,
    cluster::{
        installed::{Cluster, pod_ip},
        poll,
    },
    sim_process::{ErpProcess, storefront},
    write_quickstart,
};
use entrepot_sim::{nats::NatsServer, storefront::catalog::DEFAULT_SKUS};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::Api;

const NS: &str = "retail";
const RUNNER: &str = "shopify-orders-to-erp-runner";
const RUNNER_PODS: &str = "app.kubernetes.io/name=entrepot-runner,app.kubernetes.io/instance=shopify-orders-to-erp";

#[tokio::test]
async fn a_jetstream_flow_with_three_replicas_runs_three_runners_that_share_its_work() {
    let cluster = Cluster::start().await.unwrap();
    let nats = NatsServer::start().await;
    let url = format!("nats.url={}", nats.url());
    cluster.install_chart_with("helm3", &["--set", &url, "--set", "nats.replicas=1"]).await.expect_ok("helm install");

    let erp = ErpProcess::start(ERP_TOKEN, &DEFAULT_SKUS).await;
    let manifests = tempfile::tempdir().unwrap();
    write_quickstart(manifests.path(), &erp.url());
    let flow = manifests.path().join("syncflow.yaml");
    let text = std::fs::read_to_string(&flow).unwrap();
    let shared =
        format!("{}\n  runner:\n    replicas: 3\n    queue:\n      jetstream: {{partitions: 12}}\n", text.trim_end());
    std::fs::write(&flow, shared).unwrap();
    cluster.control_plane.namespace(NS).await.unwrap();
    cluster
        .kubectl(&["apply", "-n", NS, "-f", manifests.path().to_str().unwrap()])
        .await
        .expect_ok("kubectl apply -f quickstart, on JetStream with 3 replicas");

    // A Deployment of three, no StatefulSet, no volume claim; three runner processes.
    let pods = cluster.ready_pods(NS, RUNNER_PODS, 3).await;
    let deployment = Api::<Deployment>::namespaced(cluster.client(), NS).get(RUNNER).await.unwrap();
    assert_eq!(deployment.spec.unwrap().replicas, Some(3));
    assert!(Api::<StatefulSet>::namespaced(cluster.client(), NS).get_opt(RUNNER).await.unwrap().is_none());

    // Each runner works a share of the 12 partitions once the leases have settled (a
    // runner that joins last takes its share after the others' grace period).
    poll(Duration::from_secs(90), "the 12 partitions shared by the three runners", || async {
        let mut held = Vec::new();
        for pod in &pods {
            let metrics = reqwest::get(format!("http://{}:9090/metrics", pod_ip(pod))).await?.text().await?;
            held.push(partitions_held(&metrics));
        }
        Ok(held.iter().all(|h| *h > 0) && held.iter().sum::<u64>() == 12)
    })
    .await
    .unwrap();

    // Orders to each Pod (about a third delivered twice); each reaches the ERP once.
    let mut expected = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let webhook = format!("http://{}:8080/webhooks/{FLOW}", pod_ip(pod));
        let sent = storefront(&webhook, WEBHOOK_SECRET, 12, 0.35, 40 + i as u64).await;
        expected.extend(sent.iter().map(|id| format!("shopify:{id}")));
    }
    poll(Duration::from_secs(90), &format!("{} orders in the ERP", expected.len()), || async {
        Ok(erp.external_ids().await.len() >= expected.len())
    })
    .await
    .unwrap();
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for id in erp.external_ids().await {
        *stored.entry(id).or_default() += 1;
    }
    for id in &expected {
        assert_eq!(stored.get(id), Some(&1), "order {id} is in the ERP exactly once: {stored:?}");
    }

    // Every runner delivered some: the partitions are shared out.
    let mut delivered = Vec::new();
    for pod in &pods {
        let status: serde_json::Value =
            reqwest::get(format!("http://{}:9090/v1/status", pod_ip(pod))).await.unwrap().json().await.unwrap();
        delivered.push(status["flows"][0]["delivered"].as_u64().unwrap_or(0));
    }
    assert_eq!(delivered.iter().sum::<u64>(), expected.len() as u64, "delivered by the runners: {delivered:?}");
    assert!(delivered.iter().all(|d| *d > 0), "each runner delivered a share: {delivered:?}");

    // The SyncFlow's backlog, read from JetStream: nothing left.
    poll(Duration::from_secs(90), "the SyncFlow's backlog at 0, read from JetStream", || async {
        let out = cluster.kubectl(&["get", "syncflow", FLOW, "-n", NS, "-o", "json"]).await;
        let flow: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        Ok(flow["status"]["backlog"]["pending"] == 0)
    })
    .await
    .unwrap();
}

/// The flow's `entrepot_queue_partitions_held` in a runner's scrape.
fn partitions_held(metrics: &str) -> u64 {
    let series = format!("entrepot_queue_partitions_held{{flow=\"{FLOW}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(series.as_str())).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}
