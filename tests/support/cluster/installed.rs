//! A cluster with Entrepot installed the way a user installs it: the control plane, one
//! Node run by the process kubelet, and the chart installed with Helm. The kubelet runs
//! the chart's default images as this build's binaries, at the entrypoints the
//! `Dockerfile`'s targets give, so what runs is what the images would run.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::ListParams};

use super::{
    ControlPlane,
    kubelet::{Image, PodNetwork, ProcessKubelet},
    poll, run_tool,
};
use crate::{
    CliRun,
    image::{Dockerfile, app_version},
    repo_root, test_binary,
};

/// The Node the process kubelet registers.
pub const NODE: &str = "entrepot-test-node";
/// The namespace the chart is installed into.
pub const SYSTEM_NAMESPACE: &str = "entrepot-system";
/// The Helm release (so the chart's full name, ServiceAccount and Lease are `entrepot`).
pub const RELEASE: &str = "entrepot";

/// The `ENTRYPOINT` of a target (stage) of the repository's `Dockerfile`, as an argv.
pub fn image_entrypoint(target: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let entrypoint = Dockerfile::parse(&text)
        .stage(target)
        .last("ENTRYPOINT")
        .unwrap_or_else(|| panic!("{target} has no ENTRYPOINT"))
        .to_string();
    serde_json::from_str(&entrypoint)
        .unwrap_or_else(|e| panic!("{target}'s ENTRYPOINT is not an exec-form JSON array: {e}"))
}

/// The chart's two default images, each run as this build's binary in place of the
/// entrypoint its Dockerfile target gives.
pub fn images() -> BTreeMap<String, Image> {
    let version = app_version();
    let image =
        |target: &str, binary: &str| Image { entrypoint: image_entrypoint(target), binary: test_binary(binary) };
    BTreeMap::from([
        (
            format!("ghcr.io/entrepot-io/entrepot-operator:{version}"),
            image("entrepot-operator", "entrepot-operator-under-test"),
        ),
        (format!("ghcr.io/entrepot-io/entrepot:{version}"), image("entrepot", "entrepot-under-test")),
    ])
}

/// A control plane, a Node, and Helm.
pub struct Cluster {
    /// The process kubelet (dropped first: it stops every pod's process).
    pub kubelet: ProcessKubelet,
    /// etcd, kube-apiserver, kube-controller-manager.
    pub control_plane: ControlPlane,
}

impl Cluster {
    /// Starts the control plane and the process kubelet.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(PodNetwork::Loopback).await
    }

    /// Starts the control plane and the process kubelet, with pods on `network`
    /// ([`PodNetwork::Routed`]: the API server proxies to them; needs root).
    pub async fn start_on(network: PodNetwork) -> anyhow::Result<Self> {
        let control_plane = ControlPlane::start().await?;
        let root = kubelet_dir(&control_plane);
        std::fs::create_dir_all(&root)?;
        let kubelet = ProcessKubelet::start(
            network,
            control_plane.client(),
            NODE,
            images(),
            &root,
            &control_plane.server_url(),
            &control_plane.ca_pem(),
        )
        .await?;
        Ok(Self { kubelet, control_plane })
    }

    /// The admin's kube client.
    pub fn client(&self) -> kube::Client {
        self.control_plane.client()
    }

    /// `kubectl ARGS` as the admin.
    pub async fn kubectl(&self, args: &[&str]) -> CliRun {
        self.control_plane.kubectl(args).await
    }

    /// `helm ARGS` with `helm` = `helm3` or `helm4` from `.tools/bin`, as the admin.
    pub async fn helm(&self, helm: &str, args: &[&str]) -> CliRun {
        let program =
            super::tool(helm).unwrap_or_else(|e| panic!("{e:#}; scripts/install-tools.sh installs helm3 and helm4"));
        run_tool(&program, &self.control_plane.kubeconfig(), args, None).await
    }

    /// `helm install entrepot charts/entrepot` into [`SYSTEM_NAMESPACE`] with `--wait`,
    /// with the chart's default values.
    pub async fn install_chart(&self, helm: &str) -> CliRun {
        self.install_chart_with(helm, &[]).await
    }

    /// [`Cluster::install_chart`] with more arguments (`--set key=value`).
    pub async fn install_chart_with(&self, helm: &str, more: &[&str]) -> CliRun {
        let chart = repo_root().join("charts/entrepot");
        let mut args = vec![
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            SYSTEM_NAMESPACE,
            "--create-namespace",
            "--wait",
            "--timeout",
            "3m",
        ];
        args.extend_from_slice(more);
        self.helm(helm, &args).await
    }

    /// The running, ready pods matching `selector` in `namespace`, once there are `count`.
    pub async fn ready_pods(&self, namespace: &str, selector: &str, count: usize) -> Vec<Pod> {
        let api = Api::<Pod>::namespaced(self.client(), namespace);
        let params = ListParams::default().labels(selector);
        let waited =
            poll(Duration::from_secs(120), &format!("{count} ready pods {selector} in {namespace}"), || async {
                Ok(api.list(&params).await?.items.iter().filter(|p| is_ready(p)).count() == count)
            })
            .await;
        if let Err(e) = waited {
            panic!("{e:#}\n{}", self.describe_pods(namespace).await);
        }
        api.list(&params).await.unwrap().items.into_iter().filter(is_ready).collect()
    }

    /// What is in `namespace` (Entrepot's resources, workloads, pods, claims), the pods
    /// described and the Events, for a failure message.
    pub async fn describe_pods(&self, namespace: &str) -> String {
        let list = self.kubectl(&["get", "entrepot,all,pvc,leases", "-n", namespace, "-o", "wide"]).await;
        let described = self.kubectl(&["describe", "pods", "-n", namespace]).await;
        let events = self.kubectl(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]).await;
        format!(
            "{}{}\n{}\n{}\n(logs under {})",
            list.stdout,
            list.stderr,
            described.stdout,
            events.stdout,
            kubelet_dir(&self.control_plane).display()
        )
    }
}

/// Whether a pod is Running with condition Ready=True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && super::pod_ready(pod)
}

/// A pod's IP.
pub fn pod_ip(pod: &Pod) -> String {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("a running pod has an IP")
}

/// Where the kubelet keeps pods' files, claims and logs: in the control plane's folder,
/// so a failed test keeps them too.
fn kubelet_dir(control_plane: &ControlPlane) -> PathBuf {
    control_plane.dir().join("kubelet")
}
