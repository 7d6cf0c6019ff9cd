//! The Node this kubelet stands for: registered Ready, kept alive by a node Lease and
//! Ready heartbeats so kube-controller-manager's node lifecycle controller never marks it
//! NotReady, taints or evicts it.

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::{
    api::{
        coordination::v1::{Lease, LeaseSpec},
        core::v1::{DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{MicroTime, ObjectMeta, Time},
    },
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use tokio::sync::watch;

use super::env::{NODE_CPU, NODE_MEMORY};

/// The kubelet's version this Node reports (that of the control plane).
pub const KUBELET_VERSION: &str = "v1.37.2";
/// How often the Lease is renewed and the Ready condition's heartbeat refreshed.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Taints the node lifecycle controller puts on a node it thinks is down.
const DOWN_TAINTS: [&str; 2] = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];

/// What the Node reports about itself.
pub struct Endpoint {
    pub name: String,
    /// When it became Ready.
    pub since: Timestamp,
    /// The port of the kubelet's HTTPS endpoint.
    pub port: u16,
}

/// Creates (or takes over) the Node, Ready, and its Lease.
pub async fn register(client: &Client, node: &Endpoint) -> anyhow::Result<()> {
    let name = node.name.as_str();
    let nodes: Api<Node> = Api::all(client.clone());
    let object = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name.to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("kubernetes.io/arch".to_string(), arch()),
            ])),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(status(node)),
    };
    match nodes.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(anyhow::anyhow!("cannot register Node {name:?}: {e}")),
    }
    // The status again through its subresource: a create may drop it.
    heartbeat(client, node).await
}

fn status(node: &Endpoint) -> NodeStatus {
    let (name, since) = (node.name.as_str(), node.since);
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(NODE_CPU.into())),
        ("memory".to_string(), Quantity(NODE_MEMORY.into())),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]);
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: "127.0.0.1".into() },
            NodeAddress { type_: "Hostname".into(), address: name.into() },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: arch(),
            boot_id: String::new(),
            container_runtime_version: "process://entrepot-e2e".into(),
            kernel_version: String::new(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: String::new(),
            operating_system: "linux".into(),
            os_image: "process kubelet (entrepot e2e tests)".into(),
            system_uuid: String::new(),
        }),
        conditions: Some(conditions(since)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: node.port.into() }),
        }),
        ..NodeStatus::default()
    }
}

/// This machine's architecture as Kubernetes names it.
fn arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

fn conditions(since: Timestamp) -> Vec<NodeCondition> {
    let now = Time(Timestamp::now());
    let condition = |kind: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(Time(since)),
    };
    vec![
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]
}

/// Renews the Lease, refreshes the conditions' heartbeats, and lifts down taints.
async fn heartbeat(client: &Client, node: &Endpoint) -> anyhow::Result<()> {
    let name = node.name.as_str();
    renew_lease(client, name).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "status": status(node) });
    let node = nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map_err(|e| anyhow::anyhow!("cannot update the status of Node {name:?}: {e}"))?;
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    if taints.iter().any(|t| DOWN_TAINTS.contains(&t.key.as_str())) {
        let kept: Vec<_> = taints.into_iter().filter(|t| !DOWN_TAINTS.contains(&t.key.as_str())).collect();
        let patch = serde_json::json!({ "spec": { "taints": kept } });
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| anyhow::anyhow!("cannot lift the down taints of Node {name:?}: {e}"))?;
    }
    Ok(())
}

async fn renew_lease(client: &Client, name: &str) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let spec = LeaseSpec {
        holder_identity: Some(name.into()),
        lease_duration_seconds: Some(40),
        renew_time: Some(MicroTime(Timestamp::now())),
        ..LeaseSpec::default()
    };
    let result = match leases.get_opt(name).await? {
        None => {
            let lease =
                Lease { metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() }, spec: Some(spec) };
            leases.create(&PostParams::default(), &lease).await.map(drop)
        }
        Some(_) => leases
            .patch(name, &PatchParams::default(), &Patch::Merge(serde_json::json!({ "spec": spec })))
            .await
            .map(drop),
    };
    result.map_err(|e| anyhow::anyhow!("cannot renew the Lease kube-node-lease/{name}: {e}"))
}

/// Heartbeats until `stop`.
pub async fn keep_alive(client: Client, node: Endpoint, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
        if let Err(e) = heartbeat(&client, &node).await {
            eprintln!("process kubelet: {e:#}");
        }
    }
}
