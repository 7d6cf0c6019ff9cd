//! The operator's life cycle on a real control plane, with the chart installed by Helm 4:
//! of its two replicas only the Lease holder reconciles, and when the holder dies
//! without a word a live replica takes over once the Lease expires; a batch flow's
//! CronJob, started by kube-controller-manager on its schedule, runs a Job whose Pod
//! imports a settlement report into the ERP and completes.

use std::time::Duration;

use entrepot_e2e::{
    ScriptedTarget,
    cluster::{
        installed::{Cluster, RELEASE, SYSTEM_NAMESPACE, pod_ip},
        poll, wait_for,
    },
    repo_root,
};
use k8s_openapi::api::{batch::v1::Job, coordination::v1::Lease, core::v1::Pod};
use kube::{Api, api::ListParams};

const NS: &str = "finance";
const FLOW: &str = "processor-settlements-to-erp";
const REPORT: &str = "settlement-2026-11-27.csv";

/// The holder of the operator's Lease.
async fn holder(cluster: &Cluster) -> Option<String> {
    let lease = Api::<Lease>::namespaced(cluster.client(), SYSTEM_NAMESPACE).get_opt(RELEASE).await.ok()??;
    lease.spec?.holder_identity
}

/// How many reconciles an operator pod has run, from its /metrics.
async fn reconciles(pod: &Pod) -> u64 {
    let text = reqwest::get(format!("http://{}:8080/metrics", pod_ip(pod))).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("entrepot_operator_reconciles_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn one_operator_leads_another_takes_over_when_it_dies_and_a_batch_flows_cronjob_completes_a_job() {
    let cluster = Cluster::start().await.unwrap();
    cluster.install_chart("helm4").await.expect_ok("helm4 install");
    let operators = cluster
        .ready_pods(SYSTEM_NAMESPACE, "app.kubernetes.io/name=entrepot,app.kubernetes.io/component=operator", 2)
        .await;
    let leader =
        wait_for(Duration::from_secs(60), "a Lease holder", || async { Ok(holder(&cluster).await) }).await.unwrap();
    let (leading, standby): (Vec<&Pod>, Vec<&Pod>) =
        operators.iter().partition(|p| p.metadata.name.as_deref() == Some(leader.as_str()));
    assert_eq!((leading.len(), standby.len()), (1, 1), "the holder {leader} is one of the two operator pods");

    // The batch flow: the settlement import on a schedule of every minute, its ERP an
    // HTTP target in this process.
    let erp = ScriptedTarget::start().await;
    let claim = cluster.kubelet.claim_path(NS, "settlement-drop");
    std::fs::create_dir_all(&claim).unwrap();
    cluster.control_plane.namespace(NS).await.unwrap();
    let manifests = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_root().join("examples/settlement-import")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("http://127.0.0.1:8081", &erp.url)
                .replace("\"0 2 * * *\"", "\"* * * * *\"")
                // The runner reads the directory from its config file, which the process
                // kubelet does not rewrite: the claim's own folder maps to itself.
                .replace("/imports/settlements", claim.to_str().unwrap());
            std::fs::write(manifests.path().join(path.file_name().unwrap()), text).unwrap();
        }
    }
    // The drop folder the uploader writes to: a claim of the user's, which the flow names.
    std::fs::write(
        manifests.path().join("claim.yaml"),
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: settlement-drop}\n\
         spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    )
    .unwrap();
    cluster
        .kubectl(&["apply", "-n", NS, "-f", manifests.path().to_str().unwrap()])
        .await
        .expect_ok("kubectl apply settlement-import");

    // Only the holder acts: it reconciles the flow, the standby has run no reconcile.
    poll(Duration::from_secs(60), "the leader reconciles the flow", || async { Ok(reconciles(leading[0]).await > 0) })
        .await
        .unwrap();
    assert_eq!(
        reconciles(standby[0]).await,
        0,
        "the standby replica reconciles nothing while it does not hold the Lease"
    );

    // A report in the drop folder (the flow's claim, a folder of the kubelet's), then the
    // CronJob's next run imports it: a Job whose Pod completes.
    let sample = std::fs::read_to_string(repo_root().join("examples/settlement-import/sample").join(REPORT)).unwrap();
    let transactions = sample.lines().count() - 1;
    let report = claim.join(REPORT);
    std::fs::write(&report, &sample).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&report)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(120))
        .unwrap();
    let jobs = Api::<Job>::namespaced(cluster.client(), NS);
    let succeeded = poll(Duration::from_secs(150), "a Job of the CronJob succeeded", || async {
        Ok(jobs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|j| j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) >= 1))
    })
    .await;
    if let Err(e) = succeeded {
        panic!("{e:#}\n{}", cluster.describe_pods(NS).await);
    }
    let pods = Api::<Pod>::namespaced(cluster.client(), NS).list(&ListParams::default()).await.unwrap().items;
    assert!(
        pods.iter().any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")),
        "the Job's Pod completed"
    );
    assert_eq!(erp.received().len(), transactions, "each settlement transaction posted once");
    let flow = cluster.kubectl(&["get", "syncflow", FLOW, "-n", NS, "-o", "jsonpath={.status.lastScheduleTime}"]).await;
    assert!(!flow.stdout.trim().is_empty(), "the flow shows when its CronJob last ran: {flow:?}");

    // The holder dies without resigning (its pod force-deleted, its process killed): a
    // live replica (the standby, or the pod the ReplicaSet starts in its place) takes
    // the Lease once it expires (15 s), and only that one reconciles.
    let started = std::time::Instant::now();
    cluster
        .kubectl(&["delete", "pod", &leader, "-n", SYSTEM_NAMESPACE, "--grace-period=0", "--force"])
        .await
        .expect_ok("force-delete the leader");
    // 15 s of lease, up to 5 s until a candidate tries again, and a margin for two busy cores.
    let new = wait_for(Duration::from_secs(30), "another replica holds the Lease", || async {
        Ok(holder(&cluster).await.filter(|h| *h != leader))
    })
    .await
    .unwrap();
    let took = started.elapsed();
    eprintln!("{new} took the Lease over {took:?} after its holder {leader} was killed");
    let operators = cluster
        .ready_pods(SYSTEM_NAMESPACE, "app.kubernetes.io/name=entrepot,app.kubernetes.io/component=operator", 2)
        .await;
    let (leading, standby): (Vec<&Pod>, Vec<&Pod>) =
        operators.iter().partition(|p| p.metadata.name.as_deref() == Some(new.as_str()));
    assert_eq!((leading.len(), standby.len()), (1, 1), "the new holder {new} is one of the two live operator pods");
    poll(Duration::from_secs(60), "the new leader reconciles", || async { Ok(reconciles(leading[0]).await > 0) })
        .await
        .unwrap();
    assert_eq!(reconciles(standby[0]).await, 0, "the other live replica reconciles nothing");
}
