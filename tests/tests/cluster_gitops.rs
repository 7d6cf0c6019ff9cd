//! The GitOps path on a real control plane, as a user takes it: `helm install` of the
//! chart (Helm 3), the operator running as the chart's ServiceAccount, `kubectl apply`
//! of the quickstart, the runner Pod that kube-controller-manager makes from the
//! operator's StatefulSet run by the process kubelet, and signed storefront webhooks to
//! the Pod's address ending in the simulated ERP exactly once, the simulators running as
//! local processes. Then what goes wrong: a Mapping whose tests fail, the ERP down and
//! the runner process killed with orders queued, the SyncFlow deleted.

use std::{collections::BTreeMap, time::Duration};

use entrepot_e2e::{
    ERP_TOKEN, FLOW, WEBHOOK_SECRET,
    cluster::{
        installed::{Cluster, RELEASE, SYSTEM_NAMESPACE, pod_ip},
        poll, wait_for,
    },
    sim_process::{ErpProcess, storefront},
    write_quickstart,
};
use entrepot_sim::storefront::catalog::DEFAULT_SKUS;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{Api, api::ListParams};
use serde_json::Value;

const NS: &str = "retail";
const RUNNER: &str = "shopify-orders-to-erp-runner";
const RUNNER_PODS: &str = "app.kubernetes.io/name=entrepot-runner,app.kubernetes.io/instance=shopify-orders-to-erp";

/// The ERP token after the rotation.
const ROTATED_TOKEN: &str = "rotated-erp-token";

/// The SyncFlow as JSON.
async fn flow(cluster: &Cluster) -> Value {
    let out =
        cluster.kubectl(&["get", "syncflow", FLOW, "-n", NS, "-o", "json"]).await.expect_ok("kubectl get syncflow");
    serde_json::from_str(&out).unwrap()
}

/// The SyncFlow's condition `type`: (status, reason).
fn condition(flow: &Value, type_: &str) -> Option<(String, String)> {
    flow["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).map(|c| {
        (c["status"].as_str().unwrap_or_default().to_string(), c["reason"].as_str().unwrap_or_default().to_string())
    })
}

/// Waits until the SyncFlow's Ready condition is `status` with `reason`, and returns it.
async fn wait_ready(cluster: &Cluster, status: &str, reason: Option<&str>, limit: Duration) -> Value {
    let what = format!("SyncFlow Ready={status} ({reason:?})");
    let waited = wait_for(limit, &what, || async {
        let flow = flow(cluster).await;
        let ready = condition(&flow, "Ready");
        Ok(ready.is_some_and(|(s, r)| s == status && reason.is_none_or(|want| r == want)).then_some(flow))
    })
    .await;
    match waited {
        Ok(flow) => flow,
        Err(e) => panic!("{e:#}\nstatus: {:#}\n{}", flow(cluster).await["status"], cluster.describe_pods(NS).await),
    }
}

/// Sends `count` signed orders (a third delivered twice) to the runner pod's webhook
/// from the storefront simulator, and returns the external ids the ERP must end up with.
async fn send_orders(url: &str, count: usize, seed: u64) -> Vec<String> {
    storefront(url, WEBHOOK_SECRET, count, 0.35, seed).await.iter().map(|id| format!("shopify:{id}")).collect()
}

/// Waits until the ERP holds exactly `expected` orders, each once.
async fn wait_erp(erp: &ErpProcess, expected: &[String]) {
    poll(Duration::from_secs(60), &format!("{} orders in the ERP", expected.len()), || async {
        Ok(erp.external_ids().await.len() >= expected.len())
    })
    .await
    .unwrap();
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for id in erp.external_ids().await {
        *stored.entry(id).or_default() += 1;
    }
    for id in expected {
        assert_eq!(stored.get(id), Some(&1), "order {id} is in the ERP exactly once: {stored:?}");
    }
    assert_eq!(stored.len(), expected.len(), "no other orders: {stored:?}");
}

#[tokio::test]
async fn gitops_from_helm_install_and_kubectl_apply_to_orders_in_the_erp_and_back_from_failures() {
    let cluster = Cluster::start().await.unwrap();

    // helm install: the operator pods run as the chart's ServiceAccount, with a token
    // from the TokenRequest API; one of them takes the Lease.
    cluster.install_chart("helm3").await.expect_ok("helm3 install");
    let operators = cluster
        .ready_pods(SYSTEM_NAMESPACE, "app.kubernetes.io/name=entrepot,app.kubernetes.io/component=operator", 2)
        .await;
    for pod in &operators {
        assert_eq!(pod.spec.as_ref().unwrap().service_account_name.as_deref(), Some(RELEASE));
    }
    let sa = format!("system:serviceaccount:{SYSTEM_NAMESPACE}:{RELEASE}");
    let secrets = cluster.kubectl(&["auth", "can-i", "get", "secrets", "--all-namespaces", "--as", &sa]).await;
    assert_eq!(secrets.stdout.trim(), "no", "the operator may not read Secrets: {secrets:?}");
    let statefulsets = cluster.kubectl(&["auth", "can-i", "create", "statefulsets", "-n", NS, "--as", &sa]).await;
    assert_eq!(statefulsets.stdout.trim(), "yes", "{statefulsets:?}");

    // kubectl apply of the quickstart, its ERP Connector pointed at the simulated ERP.
    let mut erp = ErpProcess::start(ERP_TOKEN, &DEFAULT_SKUS).await;
    let manifests = tempfile::tempdir().unwrap();
    write_quickstart(manifests.path(), &erp.url());
    cluster.control_plane.namespace(NS).await.unwrap();
    cluster
        .kubectl(&["apply", "-n", NS, "-f", manifests.path().to_str().unwrap()])
        .await
        .expect_ok("kubectl apply -f quickstart");

    // The operator renders the StatefulSet; kube-controller-manager makes its Pod; the
    // process kubelet runs `entrepot serve` on the Pod's own address.
    let pod = cluster.ready_pods(NS, RUNNER_PODS, 1).await.remove(0);
    let webhook = format!("http://{}:8080/webhooks/{FLOW}", pod_ip(&pod));
    let mut expected = send_orders(&webhook, 12, 7).await;
    wait_erp(&erp, &expected).await;

    // kubectl get shows it Ready, nothing pending, and what was delivered.
    wait_ready(&cluster, "True", None, Duration::from_secs(90)).await;
    poll(Duration::from_secs(90), "kubectl get syncflows shows the deliveries", || async {
        let table = cluster.kubectl(&["get", "syncflows", "-n", NS]).await.expect_ok("kubectl get syncflows");
        let row: Vec<String> = table.lines().nth(1).unwrap_or_default().split_whitespace().map(String::from).collect();
        let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
        let col =
            |name: &str| header.iter().position(|h| *h == name).and_then(|i| row.get(i)).cloned().unwrap_or_default();
        Ok(col("READY") == "True"
            && col("BACKLOG") == "0"
            && col("DLQ") == "0"
            && col("DELIVERED") == expected.len().to_string())
    })
    .await
    .unwrap();
    let described = cluster.kubectl(&["describe", "syncflow", FLOW, "-n", NS]).await.expect_ok("kubectl describe");
    let events = described.split("Events:").nth(1).unwrap_or_default();
    assert!(events.contains("entrepot-operator"), "kubectl describe shows the operator's Events:\n{described}");

    // A rotated Secret reaches the running runner (issue 13): the kubelet refreshes the
    // mounted file, the ERP takes only the new token from then on, and the next orders go
    // through with it, from the same runner process.
    let pod_name = pod.metadata.name.clone().unwrap();
    let pid = cluster.kubelet.pid(NS, &pod_name, "runner").expect("the runner's process");
    let log = cluster.kubelet.log_path(NS, &pod_name, "runner").expect("the runner's log");
    let token_file = log.parent().and_then(|logs| logs.parent()).unwrap().join("volumes/secrets/erp-demo/token");
    // Rotated where the manifests are kept, so that the later `kubectl apply` of the
    // directory keeps it.
    let secrets = manifests.path().join("secrets.yaml");
    let text = std::fs::read_to_string(&secrets).unwrap();
    std::fs::write(&secrets, text.replace(&format!("token: {ERP_TOKEN}"), &format!("token: {ROTATED_TOKEN}"))).unwrap();
    cluster.kubectl(&["apply", "-n", NS, "-f", secrets.to_str().unwrap()]).await.expect_ok("rotate the ERP token");
    poll(Duration::from_secs(30), "the kubelet refreshed the mounted token", || async {
        Ok(std::fs::read_to_string(&token_file).is_ok_and(|t| t == ROTATED_TOKEN))
    })
    .await
    .unwrap();
    erp.rotate_token(ROTATED_TOKEN).await;
    expected = send_orders(&webhook, 4, 17).await;
    wait_erp(&erp, &expected).await;
    assert_eq!(cluster.kubelet.pid(NS, &pod_name, "runner"), Some(pid), "the same runner process, not restarted");

    // A Mapping whose tests fail: not Ready with MappingTestsFailing, and the last good
    // runner keeps running, untouched.
    let config_before = Api::<ConfigMap>::namespaced(cluster.client(), NS).get(RUNNER).await.unwrap();
    let broken = r#"{"spec": {"program": "{orderId: \"wrong\"}"}}"#;
    cluster
        .kubectl(&["patch", "mapping", "shopify-order-to-canonical", "-n", NS, "--type", "merge", "-p", broken])
        .await
        .expect_ok("break the mapping");
    wait_ready(&cluster, "False", Some("MappingTestsFailing"), Duration::from_secs(60)).await;
    let described = cluster.kubectl(&["describe", "syncflow", FLOW, "-n", NS]).await.expect_ok("kubectl describe");
    assert!(described.contains("MappingTestsFailing"), "the stall is an Event:\n{described}");
    let still = cluster.ready_pods(NS, RUNNER_PODS, 1).await.remove(0);
    assert_eq!(still.metadata.uid, pod.metadata.uid, "the last good runner pod keeps running");
    let config_after = Api::<ConfigMap>::namespaced(cluster.client(), NS).get(RUNNER).await.unwrap();
    assert_eq!(config_after.data, config_before.data, "the runner's configuration is left as it was");
    expected.extend(send_orders(&webhook, 3, 11).await);
    wait_erp(&erp, &expected).await;
    cluster
        .kubectl(&["apply", "-n", NS, "-f", manifests.path().to_str().unwrap()])
        .await
        .expect_ok("restore the mapping");
    wait_ready(&cluster, "True", None, Duration::from_secs(60)).await;

    // The runner process killed with orders queued behind an ERP outage: not Ready
    // (RunnerNotAvailable) until the kubelet restarts it; then the ERP, back with an
    // empty ledger, gets exactly the orders of the outage: none lost, none sent again.
    erp.stop();
    let queued = send_orders(&webhook, 5, 13).await;
    let pid = cluster.kubelet.pid(NS, &pod.metadata.name.clone().unwrap(), "runner").expect("the runner's process");
    // SAFETY: a plain kill(2) of a process this test's kubelet started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    // Within one status period (the operator reads its runners every 30 s, and at once
    // when the StatefulSet's status changes), with a margin for two busy cores.
    let killed = std::time::Instant::now();
    wait_ready(&cluster, "False", Some("RunnerNotAvailable"), Duration::from_secs(35)).await;
    eprintln!("RunnerNotAvailable {:?} after the runner was killed", killed.elapsed());
    // The ERP comes back while the runner restarts (the quickstart retries for about 20 s).
    erp.restart().await;
    let restarted = cluster.ready_pods(NS, RUNNER_PODS, 1).await.remove(0);
    let restarts = restarted.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].restart_count;
    assert!(restarts >= 1, "the kubelet restarted the runner: {restarts}");
    wait_erp(&erp, &queued).await;
    wait_ready(&cluster, "True", None, Duration::from_secs(90)).await;

    // Deleting the SyncFlow: kube-controller-manager's garbage collector removes what the
    // operator made for it, through their owner references.
    cluster.kubectl(&["delete", "syncflow", FLOW, "-n", NS, "--wait=true"]).await.expect_ok("kubectl delete syncflow");
    let client = cluster.client();
    poll(Duration::from_secs(90), "the flow's children garbage-collected", || async {
        let gone = Api::<StatefulSet>::namespaced(client.clone(), NS).get_opt(RUNNER).await?.is_none()
            && Api::<ConfigMap>::namespaced(client.clone(), NS).get_opt(RUNNER).await?.is_none()
            && Api::<Service>::namespaced(client.clone(), NS).get_opt(RUNNER).await?.is_none()
            && Api::<PodDisruptionBudget>::namespaced(client.clone(), NS).get_opt(RUNNER).await?.is_none()
            && Api::<Pod>::namespaced(client.clone(), NS)
                .list(&ListParams::default().labels(RUNNER_PODS))
                .await?
                .items
                .is_empty()
            && Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS)
                .list(&ListParams::default())
                .await?
                .items
                .is_empty();
        Ok(gone)
    })
    .await
    .unwrap();
}
