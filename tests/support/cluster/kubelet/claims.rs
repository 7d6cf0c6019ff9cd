//! A tiny provisioner: every Pending PersistentVolumeClaim gets a hostPath
//! PersistentVolume (the claim's folder under the kubelet's root) pre-bound to it, so
//! kube-controller-manager's PV controller binds the claim.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{
        HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
};
use kube::{
    Api, ResourceExt,
    api::PostParams,
    runtime::{WatchStreamExt, watcher},
};

use super::Kubelet;

/// Watches claims and provisions the pending ones, until the task is aborted.
pub async fn provision(kubelet: std::sync::Arc<Kubelet>) {
    let claims: Api<PersistentVolumeClaim> = Api::all(kubelet.client.clone());
    let mut events = watcher(claims, watcher::Config::default()).default_backoff().applied_objects().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(claim) => {
                if let Err(e) = provision_one(&kubelet, &claim).await {
                    eprintln!("process kubelet: {e}");
                }
            }
            Err(e) => eprintln!("process kubelet: watching PersistentVolumeClaims: {e}"),
        }
    }
}

async fn provision_one(kubelet: &Kubelet, claim: &PersistentVolumeClaim) -> Result<(), String> {
    let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()).is_none_or(|p| p == "Pending");
    let spec = claim.spec.clone().unwrap_or_default();
    if !pending || spec.volume_name.is_some() || claim.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let namespace = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let uid = claim.uid().unwrap_or_default();
    let dir = kubelet.claim_dir(&namespace, &name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_else(|| Quantity("1Gi".into()));
    let volume = PersistentVolume {
        metadata: ObjectMeta { name: Some(format!("pvc-{uid}")), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), size)])),
            access_modes: spec.access_modes.clone().or_else(|| Some(vec!["ReadWriteOnce".into()])),
            storage_class_name: spec.storage_class_name.clone(),
            volume_mode: spec.volume_mode.clone(),
            // The folder outlives the claim, as the data of a Retain volume does.
            persistent_volume_reclaim_policy: Some("Retain".into()),
            host_path: Some(HostPathVolumeSource {
                path: dir.display().to_string(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace.clone()),
                name: Some(name.clone()),
                uid: Some(uid),
                ..ObjectReference::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    };
    let volumes: Api<PersistentVolume> = Api::all(kubelet.client.clone());
    match volumes.create(&PostParams::default(), &volume).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(format!("cannot provision a volume for claim {namespace}/{name}: {e}")),
    }
}
