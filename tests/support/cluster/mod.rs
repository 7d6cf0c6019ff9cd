//! A real Kubernetes control plane on loopback, and a process kubelet that makes one Node
//! of it run pods as local processes.

pub mod kubelet;
