//! Test support for the cluster tests (`tests/tests/cluster_*.rs`): a real control plane
//! and a process kubelet that runs our own pods as local processes.

pub mod control_plane;
pub mod installed;
pub mod kubelet;

pub use control_plane::{ControlPlane, KubeUser, Output, client_from, poll, run_tool, tool, tools_bin, wait_for};
