//! `kubectl entrepot` against a real control plane: the chart installed, the quickstart
//! flow's runner pod run by the process kubelet, its ERP a scripted target that refuses
//! the first records. The plugin, run with the cluster's kubeconfig, shows the flow in
//! `status` and its target in `describe`, and handles its dead letters through the API
//! server's pod proxy (the kubelet's pods are on routed addresses, which the API server
//! proxies to, where it refuses loopback ones) and `--via direct`.
//!
//! Who acts: the admin's kubeconfig holds a client certificate, so the plugin falls back
//! to the flow's admin token; a service account's token (`kubectl create token`), bound
//! to the chart's on-call ClusterRole, is checked by the runner with the API server and
//! named in the audit trail; a user whose RBAC lacks `syncflows/deadletters` is refused
//! by the runner, saying which rule is missing.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use entrepot_e2e::{
    CliRun, FLOW, ScriptedTarget, WEBHOOK_SECRET,
    cluster::{
        control_plane::{KubeUser, kubeconfig_text},
        installed::{Cluster, pod_ip},
        kubelet::PodNetwork,
        poll, run_tool,
    },
    sim_process::storefront,
    test_binary, write_quickstart,
};

const NS: &str = "retail";
const RUNNER_PODS: &str = "app.kubernetes.io/name=entrepot-runner,app.kubernetes.io/instance=shopify-orders-to-erp";

async fn plugin(cluster: &Cluster, args: &[&str]) -> CliRun {
    plugin_as(&cluster.control_plane.kubeconfig(), args).await
}

async fn plugin_as(kubeconfig: &Path, args: &[&str]) -> CliRun {
    run_tool(&test_binary("kubectl-entrepot-under-test"), kubeconfig, args, None).await
}

/// A kubeconfig of service account `name` in [`NS`] (created here), with a token from
/// the TokenRequest API (in a `tokenFile`, or issued by an exec plugin when `exec`),
/// after `rbac` (YAML, may be empty) is applied.
async fn user(cluster: &Cluster, dir: &Path, name: &str, rbac: &str, exec: bool) -> PathBuf {
    cluster.kubectl(&["create", "serviceaccount", name, "-n", NS]).await.expect_ok("create serviceaccount");
    cluster.control_plane.service_account(NS, name).await.unwrap();
    if !rbac.is_empty() {
        let applied = cluster
            .control_plane
            .kubectl_as(&cluster.control_plane.kubeconfig(), &["apply", "-f", "-"], Some(rbac))
            .await;
        applied.expect_ok("apply RBAC");
    }
    let token =
        cluster.kubectl(&["create", "token", name, "-n", NS, "--duration", "1h"]).await.expect_ok("create token");
    let token_file = dir.join(format!("{name}.token"));
    std::fs::write(&token_file, token.trim()).unwrap();
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    let (server, ca) = (cluster.control_plane.server_url(), cluster.control_plane.ca_pem());
    let user = if exec { KubeUser::Exec(token_file) } else { KubeUser::TokenFile(token_file) };
    std::fs::write(&kubeconfig, kubeconfig_text(&server, &ca, &user, Some(NS))).unwrap();
    kubeconfig
}

/// A RoleBinding of service account `name` to ClusterRole `role` in [`NS`].
fn binding(name: &str, role: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {name}, namespace: {NS}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
         subjects: [{{kind: ServiceAccount, name: {name}, namespace: {NS}}}]\n"
    )
}

/// A ClusterRole that reaches the runner pods but grants nothing on dead letters.
const PODS_ONLY: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: pods-only}\n\
    rules:\n- {apiGroups: [''], resources: [pods, pods/proxy], verbs: [get, list, create]}\n\
    - {apiGroups: [entrepot.io], resources: [syncflows], verbs: [get, list]}\n";

#[tokio::test]
async fn the_plugin_shows_flows_and_lists_and_replays_a_flows_dead_letters() {
    let cluster = Cluster::start_on(PodNetwork::Routed).await.unwrap();
    cluster.install_chart("helm4").await.expect_ok("helm4 install");
    let erp = ScriptedTarget::start().await;
    // The first two records the ERP receives are refused as a business error: dead letters.
    erp.fail_matching("", 422, 2);
    let manifests = tempfile::tempdir().unwrap();
    write_quickstart(manifests.path(), &erp.url);
    cluster.control_plane.namespace(NS).await.unwrap();
    cluster.kubectl(&["apply", "-n", NS, "-f", manifests.path().to_str().unwrap()]).await.expect_ok("apply");
    let pods = cluster.ready_pods(NS, RUNNER_PODS, 1).await;
    let webhook = format!("http://{}:8080/webhooks/{FLOW}", pod_ip(&pods[0]));
    storefront(&webhook, WEBHOOK_SECRET, 3, 0.0, 7).await;

    // The operator copies the runner's dead letters into the SyncFlow's status.
    poll(Duration::from_secs(120), "the SyncFlow's status counting 2 dead letters", || async {
        let out = cluster.kubectl(&["get", "syncflow", FLOW, "-n", NS, "-o", "json"]).await;
        let flow: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        Ok(flow["status"]["backlog"]["deadLettered"] == 2)
    })
    .await
    .unwrap();

    let status = plugin(&cluster, &["status", "-A"]).await.expect_ok("kubectl entrepot status -A");
    let row = status.lines().find(|l| l.starts_with(&format!("{NS} "))).unwrap_or_else(|| panic!("{status}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((cells[1], cells[5]), (FLOW, "2"), "the flow with 2 dead letters:\n{status}");
    let in_ns = plugin(&cluster, &["status", "-n", NS]).await.expect_ok("kubectl entrepot status -n");
    assert!(in_ns.lines().nth(1).is_some_and(|l| l.starts_with(FLOW)), "{in_ns}");

    let described = plugin(&cluster, &["describe", FLOW, "-n", NS]).await.expect_ok("kubectl entrepot describe");
    assert!(described.contains("Targets:") && described.contains("Conditions:"), "{described}");
    assert!(described.contains("2 dead-lettered"), "{described}");
    let target = described.lines().skip_while(|l| !l.starts_with("Targets:")).nth(2).unwrap_or_default();
    assert!(target.contains("erp"), "a line per target: {described}");
    let missing = plugin(&cluster, &["describe", "no-such-flow", "-n", NS]).await;
    assert!(!missing.success && missing.stderr.contains("no SyncFlow no-such-flow in namespace retail"), "{missing:?}");

    // The admin (a client certificate, no token: the flow's admin token is used), through
    // the API server's pod proxy.
    let flow = ["--syncflow", FLOW, "-n", NS];
    let listed = plugin(&cluster, &[&["deadletters", "list", "-o", "json"][..], &flow].concat()).await;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&listed.expect_ok("deadletters list")).unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let ids: Vec<String> = entries.iter().map(|e| e["id"].as_u64().unwrap().to_string()).collect();
    let shown = plugin(&cluster, &[&["deadletters", "show", &ids[0]][..], &flow].concat()).await.expect_ok("show");
    assert!(shown.contains("kubectl entrepot deadletters replay"), "hints name the plugin: {shown}");
    // And straight to the pod's address.
    let direct = [&flow[..], &["--via", "direct"]].concat();
    let listed = plugin(&cluster, &[&["deadletters", "list", "-o", "json"][..], &direct].concat()).await;
    assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&listed.expect_ok("list direct")).unwrap().len(), 2);

    // Ana is on call: her own token, the chart's on-call role. She replays one.
    let users = tempfile::tempdir().unwrap();
    let ana = user(&cluster, users.path(), "ana", &binding("ana", "entrepot-oncall"), false).await;
    let delivered_before = erp.received().len();
    let why = "the ERP takes it now";
    plugin_as(&ana, &[&["deadletters", "replay", &ids[0], "--why", why][..], &flow].concat())
        .await
        .expect_ok("replay as ana");
    poll(Duration::from_secs(60), "the replayed record delivered", || async {
        Ok(erp.received().len() > delivered_before)
    })
    .await
    .unwrap();
    let after = plugin_as(&ana, &[&["deadletters", "list", "-o", "json"][..], &flow].concat()).await;
    let left: Vec<serde_json::Value> = serde_json::from_str(&after.expect_ok("list after replay")).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    // The admin discards the other with the admin token, directly.
    plugin(&cluster, &[&["deadletters", "discard", &ids[1], "--why", "a duplicate test order"][..], &direct].concat())
        .await
        .expect_ok("discard as admin");

    // The trail names Ana, verified by the API server, and the admin token for the discard.
    let history = plugin_as(&ana, &[&["deadletters", "history", "-o", "json"][..], &flow].concat()).await;
    let trail: Vec<serde_json::Value> = serde_json::from_str(&history.expect_ok("history as ana")).unwrap();
    let entry =
        |action: &str| trail.iter().find(|e| e["action"] == action).unwrap_or_else(|| panic!("{action}: {trail:?}"));
    assert_eq!(entry("replay")["identity"], "kubernetes user system:serviceaccount:retail:ana", "{trail:?}");
    assert_eq!(entry("replay")["why"], why);
    assert!(entry("discard")["identity"].as_str().unwrap().starts_with("admin token sha256:"), "{trail:?}");

    // Bob (his token from an exec plugin, as on a managed cluster) reaches the pods but RBAC
    // gives him no dead letters: the runner refuses, naming him and the rule.
    let rbac = format!("{PODS_ONLY}---\n{}", binding("bob", "pods-only"));
    let bob = user(&cluster, users.path(), "bob", &rbac, true).await;
    let refused = plugin_as(&bob, &[&["deadletters", "list"][..], &flow].concat()).await;
    assert!(!refused.success, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("system:serviceaccount:retail:bob may not get syncflows/deadletters in namespace retail")
            && refused.stderr.contains("entrepot.io"),
        "{refused:?}"
    );
    // A forged token is not taken by the runner: the API server does not know it.
    let forged = reqwest::Client::new()
        .get(format!("http://{}:9090/v1/deadletters", pod_ip(&pods[0])))
        .header("x-entrepot-kube-token", "not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let said = forged.text().await.unwrap();
    assert!(said.contains("did not accept the token in x-entrepot-kube-token"), "{said}");

    let no_flow = plugin(&cluster, &["deadletters", "list", "-n", NS]).await;
    assert!(!no_flow.success && no_flow.stderr.contains("--syncflow FLOW is required"), "{no_flow:?}");
}
