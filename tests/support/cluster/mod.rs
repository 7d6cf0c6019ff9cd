//! Test support for the cluster tests (`tests/tests/cluster_*.rs`): a real control plane
//! and a process kubelet that runs our own pods as local processes.

pub mod control_plane;
pub mod installed;
pub mod kubelet;

/// Whether a pod's condition Ready is True.
pub fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub use control_plane::{
    ControlPlane, KubeUser, client_from, kubeconfig_text, poll, run_tool, tool, tools_bin, wait_for,
};
