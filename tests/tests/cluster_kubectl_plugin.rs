//! `kubectl entrepot` against a real control plane: the chart installed, the quickstart
//! flow's runner pod run by the process kubelet, its ERP a scripted target that refuses
//! the first record. The plugin, run with the cluster's kubeconfig, shows the flow in
//! `status` and its target in `describe`, lists the refused record's dead letter, and
//! `replay` delivers it.
//!
//! The API server refuses to proxy to a pod on a loopback address (pod proxy: `address
//! not allowed`; the service proxy finds no EndpointSlice, which cannot hold one), and the
//! process kubelet's pods are on 127.0.0.N: so `--via proxy` is checked here to reach the
//! API server and report its refusal clearly, and the dead letters go `--via direct`.

use std::time::Duration;

use entrepot_e2e::{
    CliRun, FLOW, ScriptedTarget, WEBHOOK_SECRET,
    cluster::{
        installed::{Cluster, pod_ip},
        poll, run_tool,
    },
    sim_process::storefront,
    test_binary, write_quickstart,
};

const NS: &str = "retail";
const RUNNER_PODS: &str = "app.kubernetes.io/name=entrepot-runner,app.kubernetes.io/instance=shopify-orders-to-erp";

async fn plugin(cluster: &Cluster, args: &[&str]) -> CliRun {
    run_tool(&test_binary("kubectl-entrepot-under-test"), &cluster.control_plane.kubeconfig(), args, None).await
}

#[tokio::test]
async fn the_plugin_shows_flows_and_lists_and_replays_a_flows_dead_letters() {
    let cluster = Cluster::start().await.unwrap();
    cluster.install_chart("helm4").await.expect_ok("helm4 install");
    let erp = ScriptedTarget::start().await;
    // The first record the ERP receives is refused as a business error: a dead letter.
    erp.fail_matching("", 422, 1);
    let manifests = tempfile::tempdir().unwrap();
    write_quickstart(manifests.path(), &erp.url);
    cluster.control_plane.namespace(NS).await.unwrap();
    cluster.kubectl(&["apply", "-n", NS, "-f", manifests.path().to_str().unwrap()]).await.expect_ok("apply");
    let pods = cluster.ready_pods(NS, RUNNER_PODS, 1).await;
    let webhook = format!("http://{}:8080/webhooks/{FLOW}", pod_ip(&pods[0]));
    storefront(&webhook, WEBHOOK_SECRET, 2, 0.0, 7).await;

    // The operator copies the runner's dead letter into the SyncFlow's status.
    poll(Duration::from_secs(120), "the SyncFlow's status counting 1 dead letter", || async {
        let out = cluster.kubectl(&["get", "syncflow", FLOW, "-n", NS, "-o", "json"]).await;
        let flow: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        Ok(flow["status"]["backlog"]["deadLettered"] == 1)
    })
    .await
    .unwrap();

    let status = plugin(&cluster, &["status", "-A"]).await.expect_ok("kubectl entrepot status -A");
    let row = status.lines().find(|l| l.starts_with(&format!("{NS} "))).unwrap_or_else(|| panic!("{status}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((cells[1], cells[5]), (FLOW, "1"), "the flow with 1 dead letter:\n{status}");
    let in_ns = plugin(&cluster, &["status", "-n", NS]).await.expect_ok("kubectl entrepot status -n");
    assert!(in_ns.lines().nth(1).is_some_and(|l| l.starts_with(FLOW)), "{in_ns}");

    let described = plugin(&cluster, &["describe", FLOW, "-n", NS]).await.expect_ok("kubectl entrepot describe");
    assert!(described.contains("Targets:") && described.contains("Conditions:"), "{described}");
    assert!(described.contains("1 dead-lettered"), "{described}");
    let target = described.lines().skip_while(|l| !l.starts_with("Targets:")).nth(2).unwrap_or_default();
    assert!(target.contains("erp"), "a line per target: {described}");
    let missing = plugin(&cluster, &["describe", "no-such-flow", "-n", NS]).await;
    assert!(!missing.success && missing.stderr.contains("no SyncFlow no-such-flow in namespace retail"), "{missing:?}");

    // Through the API server's pod proxy: it answers, and refuses the loopback pod address.
    let proxied = plugin(&cluster, &["deadletters", "list", "--syncflow", FLOW, "-n", NS]).await;
    assert!(!proxied.success && proxied.stderr.contains("address not allowed"), "{proxied:?}");

    let direct = ["--syncflow", FLOW, "-n", NS, "--via", "direct"];
    let listed = plugin(&cluster, &[&["deadletters", "list", "-o", "json"][..], &direct].concat()).await;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&listed.expect_ok("deadletters list")).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let id = entries[0]["id"].as_u64().unwrap().to_string();
    let shown = plugin(&cluster, &[&["deadletters", "show", &id][..], &direct].concat()).await.expect_ok("show");
    assert!(shown.contains("kubectl entrepot deadletters replay"), "hints name the plugin: {shown}");

    let delivered_before = erp.received().len();
    plugin(&cluster, &[&["deadletters", "replay", &id, "--why", "the ERP takes it now"][..], &direct].concat())
        .await
        .expect_ok("replay");
    poll(Duration::from_secs(60), "the replayed record delivered", || async {
        Ok(erp.received().len() > delivered_before)
    })
    .await
    .unwrap();
    let after = plugin(&cluster, &[&["deadletters", "list", "-o", "json"][..], &direct].concat()).await;
    assert_eq!(after.expect_ok("list after replay").trim(), "[]");

    let no_flow = plugin(&cluster, &["deadletters", "list", "-n", NS]).await;
    assert!(!no_flow.success && no_flow.stderr.contains("--syncflow FLOW is required"), "{no_flow:?}");
}
