//! A runner pod as the operator renders it, laid out on this machine: its ConfigMap's
//! `runner.yaml` as the mounted file, its secret and projected volumes as the kubelet's
//! atomic writer writes them, and its container's arguments with the pod's paths and
//! ports moved here. No kubelet runs on these machines; this stands in for one pod.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use entrepot::manifest::Manifests;
use entrepot_operator::{
    resources::{SyncFlow, SyncFlowSpec},
    sync_flow::validate::References,
};
use k8s_openapi::api::core::v1::{Container, KeyToPath, PodSpec};

use crate::kubelet_secret_volume;

/// Flow `name` of `manifests` with `spec`, as the API server would hand it to the
/// operator (namespace `retail`, uid `uid`), and what it references as the operator reads
/// it, every Connector with an endpoint pointed at `endpoint`.
pub fn flow_in_cluster(
    manifests: &Manifests,
    name: &str,
    spec: entrepot_api::resource::SyncFlowSpec,
    endpoint: &str,
    uid: &str,
) -> (SyncFlow, References) {
    let mut flow = SyncFlow::new(name, SyncFlowSpec(spec));
    flow.metadata.namespace = Some("retail".into());
    flow.metadata.uid = Some(uid.into());
    let mut refs = References::default();
    for (k, c) in &manifests.connectors {
        let mut c = c.clone();
        if c.endpoint.is_some() {
            c.endpoint = Some(endpoint.to_string());
        }
        refs.connectors.insert(k.name.clone(), Ok(c));
    }
    for (k, m) in &manifests.mappings {
        refs.mappings.insert(k.name.clone(), Ok(m.clone()));
    }
    (flow, refs)
}

/// The values of `manifests`' Secrets, by (Secret, key): what the kubelet would mount.
pub fn secret_values(manifests: &Manifests) -> BTreeMap<(String, String), String> {
    manifests
        .secrets
        .iter()
        .flat_map(|(k, values)| values.iter().map(move |(key, v)| ((k.name.clone(), key.clone()), v.clone())))
        .collect()
}

/// One rendered runner pod, under a folder of its own.
pub struct RenderedPod {
    /// The pod spec as rendered.
    pub pod: PodSpec,
    /// Where the pod's absolute paths (mounts) are rooted here.
    root: PathBuf,
    config_path: PathBuf,
    data: PathBuf,
}

impl RenderedPod {
    /// `pod` under `dir`, reading the runner configuration `config` (the ConfigMap's
    /// `runner.yaml`).
    pub fn new(dir: &Path, config: &str, pod: PodSpec) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let config_path = dir.join("runner.yaml");
        std::fs::write(&config_path, config).unwrap();
        Self { pod, root: dir.join("pod"), config_path, data: dir.join("data") }
    }

    /// The runner container.
    pub fn container(&self) -> &Container {
        &self.pod.containers[0]
    }

    /// What the kubelet writes for each secret or projected volume (again after a
    /// rotation, with the next `generation`): every item of every Secret source, at the
    /// volume's mount path. `secrets` holds the values by (Secret, key).
    pub fn write_secrets(&self, generation: u32, secrets: &BTreeMap<(String, String), String>) {
        let container = self.container();
        for volume in self.pod.volumes.iter().flatten() {
            let sources: Vec<(String, Vec<KeyToPath>)> = match (&volume.secret, &volume.projected) {
                (Some(s), _) => vec![(s.secret_name.clone().unwrap(), s.items.clone().unwrap())],
                (_, Some(p)) => p
                    .sources
                    .iter()
                    .flatten()
                    .filter_map(|s| s.secret.clone())
                    .map(|s| (s.name, s.items.unwrap()))
                    .collect(),
                _ => continue,
            };
            let mount = container.volume_mounts.iter().flatten().find(|m| m.name == volume.name).expect("mounted");
            assert!(mount.sub_path.is_none(), "a subPath mount would never be refreshed");
            let files: Vec<(&str, &str)> = sources
                .iter()
                .flat_map(|(name, items)| {
                    items.iter().map(move |i| {
                        let value = secrets.get(&(name.clone(), i.key.clone()));
                        (i.path.as_str(), value.unwrap_or_else(|| panic!("no value for {name}/{}", i.key)).as_str())
                    })
                })
                .collect();
            kubelet_secret_volume(&self.root.join(mount.mount_path.trim_start_matches('/')), generation, &files);
        }
    }

    /// The container's arguments, with the pod's paths moved under this pod's folder and
    /// its listen addresses left out (the process gets loopback ports of its own).
    pub fn args(&self) -> Vec<String> {
        let rendered = self.container().args.clone().unwrap();
        let mut args = vec![rendered[0].clone()];
        for pair in rendered[1..].chunks(2) {
            match pair[0].as_str() {
                "--config" => args.extend([pair[0].clone(), self.config_path.display().to_string()]),
                "--data-dir" => args.extend([pair[0].clone(), self.data.display().to_string()]),
                "--listen" | "--admin-listen" => {} // loopback ports instead
                "--admin-token-file" | "--secrets-dir" => args
                    .extend([pair[0].clone(), self.root.join(pair[1].trim_start_matches('/')).display().to_string()]),
                _ => args.extend(pair.iter().cloned()),
            }
        }
        assert_eq!(args[0], "serve");
        args
    }
}
