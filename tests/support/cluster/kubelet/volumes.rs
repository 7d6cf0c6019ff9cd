//! A pod's volumes as host folders: emptyDir, configMap, secret, downwardAPI, projected
//! (with service-account tokens from the TokenRequest API), persistentVolumeClaim and
//! hostPath; re-synced every few seconds so ConfigMap changes reach the files.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::{DownwardAPIVolumeFile, KeyToPath, PersistentVolumeClaim, Pod, ServiceAccount, Volume},
};
use kube::{Api, api::PostParams};

use super::{
    Kubelet, env,
    sources::{Data, Kind, Sources},
};

/// Where a service-account token volume is mounted; a process cannot read it there.
pub const SERVICE_ACCOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A token is asked for again after this long (the kubelet renews at 80 % of its life).
const TOKEN_RENEWAL: Duration = Duration::from_secs(600);

/// The host folders of one pod's volumes.
#[derive(Default)]
pub struct Volumes {
    /// Volume name → host folder.
    pub dirs: BTreeMap<String, PathBuf>,
    /// Files each volume holds now, to drop keys that went away.
    written: BTreeMap<String, BTreeSet<PathBuf>>,
    /// Token files → when they were written.
    tokens: BTreeMap<PathBuf, Instant>,
}

/// One file of a projected, configMap, secret or downwardAPI volume.
struct File {
    path: String,
    bytes: Vec<u8>,
    mode: i32,
}

impl Volumes {
    /// Creates or refreshes every volume of `pod` under `pod_dir`; the error is the
    /// message of a pod that cannot start yet (a missing ConfigMap, Secret or claim).
    pub async fn sync(&mut self, kubelet: &Kubelet, pod: &Pod, ip: Ipv4Addr, pod_dir: &Path) -> Result<(), String> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let mut sources = Sources::new(&kubelet.client, &namespace);
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
        for volume in &volumes {
            let result = self.sync_one(kubelet, pod, ip, pod_dir, volume, &mut sources).await;
            result.map_err(|e| format!("MountVolume.SetUp failed for volume {:?}: {e}", volume.name))?;
        }
        Ok(())
    }

    async fn sync_one(
        &mut self,
        kubelet: &Kubelet,
        pod: &Pod,
        ip: Ipv4Addr,
        pod_dir: &Path,
        volume: &Volume,
        sources: &mut Sources,
    ) -> Result<(), String> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let own_dir = pod_dir.join("volumes").join(&volume.name);
        let dir = if let Some(claim) = &volume.persistent_volume_claim {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(kubelet.client.clone(), &namespace);
            match claims.get_opt(&claim.claim_name).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("persistentvolumeclaim {:?} not found", claim.claim_name)),
                Err(e) => return Err(format!("cannot read persistentvolumeclaim {:?}: {e}", claim.claim_name)),
            }
            kubelet.claim_dir(&namespace, &claim.claim_name)
        } else if let Some(host) = &volume.host_path {
            PathBuf::from(&host.path)
        } else {
            own_dir
        };
        let files = if volume.empty_dir.is_some() || volume.persistent_volume_claim.is_some() {
            None
        } else if volume.host_path.is_some() {
            // The host's own path: created when asked to, otherwise it must exist.
            let create = volume.host_path.as_ref().and_then(|h| h.type_.as_deref()) == Some("DirectoryOrCreate");
            if !create && !dir.exists() {
                return Err(format!("hostPath {} does not exist", dir.display()));
            }
            None
        } else if let Some(cm) = &volume.config_map {
            let data = sources.require(Kind::ConfigMap, &cm.name, cm.optional.unwrap_or(false)).await?;
            Some(key_files(
                &data,
                cm.items.as_deref(),
                cm.default_mode.unwrap_or(0o644),
                Kind::ConfigMap,
                &cm.name,
                cm.optional,
            )?)
        } else if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            let data = sources.require(Kind::Secret, &name, secret.optional.unwrap_or(false)).await?;
            Some(key_files(
                &data,
                secret.items.as_deref(),
                secret.default_mode.unwrap_or(0o644),
                Kind::Secret,
                &name,
                secret.optional,
            )?)
        } else if let Some(downward) = &volume.downward_api {
            Some(downward_files(
                pod,
                ip,
                downward.items.as_deref().unwrap_or_default(),
                downward.default_mode.unwrap_or(0o644),
            )?)
        } else if let Some(projected) = &volume.projected {
            let mode = projected.default_mode.unwrap_or(0o644);
            let mut files = Vec::new();
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    let data = sources.require(Kind::ConfigMap, &cm.name, cm.optional.unwrap_or(false)).await?;
                    files.extend(key_files(&data, cm.items.as_deref(), mode, Kind::ConfigMap, &cm.name, cm.optional)?);
                } else if let Some(secret) = &source.secret {
                    let data = sources.require(Kind::Secret, &secret.name, secret.optional.unwrap_or(false)).await?;
                    files.extend(key_files(
                        &data,
                        secret.items.as_deref(),
                        mode,
                        Kind::Secret,
                        &secret.name,
                        secret.optional,
                    )?);
                } else if let Some(downward) = &source.downward_api {
                    files.extend(downward_files(pod, ip, downward.items.as_deref().unwrap_or_default(), mode)?);
                } else if let Some(token) = &source.service_account_token {
                    let path = dir.join(&token.path);
                    let fresh = self.tokens.get(&path).is_some_and(|at| at.elapsed() < TOKEN_RENEWAL);
                    let bytes = if fresh {
                        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
                    } else {
                        let token =
                            request_token(kubelet, pod, token.audience.clone(), token.expiration_seconds).await?;
                        self.tokens.insert(path, Instant::now());
                        token.into_bytes()
                    };
                    files.push(File { path: token.path.clone(), bytes, mode });
                } else {
                    return Err("a projected source other than configMap, secret, downwardAPI or serviceAccountToken is not supported by the process kubelet".into());
                }
            }
            Some(files)
        } else {
            return Err("this volume type is not supported by the process kubelet (emptyDir, configMap, secret, downwardAPI, projected, persistentVolumeClaim and hostPath are)".into());
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if let Some(files) = files {
            let mut now = BTreeSet::new();
            for file in files {
                let path = dir.join(checked(&file.path)?);
                write_if_changed(&path, &file.bytes, file.mode)?;
                now.insert(path);
            }
            for stale in self.written.get(&volume.name).into_iter().flatten().filter(|p| !now.contains(*p)) {
                let _ = std::fs::remove_file(stale);
            }
            self.written.insert(volume.name.clone(), now);
        }
        self.dirs.insert(volume.name.clone(), dir);
        Ok(())
    }
}

/// The files of a ConfigMap or Secret: every key, or the listed items.
fn key_files(
    data: &Data,
    items: Option<&[KeyToPath]>,
    mode: i32,
    kind: Kind,
    name: &str,
    optional: Option<bool>,
) -> Result<Vec<File>, String> {
    match items {
        None => Ok(data.iter().map(|(k, v)| File { path: k.clone(), bytes: v.clone(), mode }).collect()),
        Some(items) => {
            let mut files = Vec::new();
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        files.push(File { path: item.path.clone(), bytes: v.clone(), mode: item.mode.unwrap_or(mode) })
                    }
                    None if optional.unwrap_or(false) => {}
                    None => return Err(format!("{} {name:?} has no key {:?}", kind.noun(), item.key)),
                }
            }
            Ok(files)
        }
    }
}

fn downward_files(pod: &Pod, ip: Ipv4Addr, items: &[DownwardAPIVolumeFile], mode: i32) -> Result<Vec<File>, String> {
    let mut files = Vec::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            env::field_value(pod, &field.field_path, ip)?
        } else if let Some(resource) = &item.resource_field_ref {
            env::resource_value(pod, None, resource)?
        } else {
            String::new()
        };
        files.push(File { path: item.path.clone(), bytes: value.into_bytes(), mode: item.mode.unwrap_or(mode) });
    }
    Ok(files)
}

/// A relative path that stays inside its volume.
fn checked(path: &str) -> Result<&Path, String> {
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(p)
    } else {
        Err(format!("path {path:?} must be relative and must not contain '..'"))
    }
}

/// Writes `bytes` to `path` (atomically, by rename) unless it already holds them.
fn write_if_changed(path: &Path, bytes: &[u8], mode: i32) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let same_mode = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o777 == (mode & 0o777) as u32);
    if same_mode && std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let tmp = path.with_extension("kubelet-tmp");
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode((mode & 0o777) as u32)).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// A token of the pod's service account bound to the pod, as the kubelet gets it.
async fn request_token(
    kubelet: &Kubelet,
    pod: &Pod,
    audience: Option<String>,
    expiration: Option<i64>,
) -> Result<String, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(kubelet.client.clone(), &namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.into_iter().collect(),
            expiration_seconds: expiration,
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let answer: TokenRequest = api
        .create_subresource("token", &account, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("cannot get a token of serviceaccount {account:?}: {e}"))?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| format!("the token request of serviceaccount {account:?} has no status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Data {
        Data::from([("a".to_string(), b"1".to_vec()), ("b".to_string(), b"2".to_vec())])
    }

    #[test]
    fn every_key_or_the_listed_items() {
        let all = key_files(&data(), None, 0o644, Kind::ConfigMap, "cm", None).unwrap();
        assert_eq!(all.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let item = KeyToPath { key: "b".into(), path: "sub/b.txt".into(), mode: Some(0o600) };
        let some = key_files(&data(), Some(std::slice::from_ref(&item)), 0o644, Kind::ConfigMap, "cm", None).unwrap();
        assert_eq!((some[0].path.as_str(), some[0].bytes.as_slice(), some[0].mode), ("sub/b.txt", &b"2"[..], 0o600));
        let missing = KeyToPath { key: "c".into(), ..item };
        let error =
            key_files(&data(), Some(std::slice::from_ref(&missing)), 0o644, Kind::Secret, "s", None).err().unwrap();
        assert!(error.contains("secret \"s\" has no key \"c\""), "{error}");
        assert!(key_files(&data(), Some(&[missing]), 0o644, Kind::Secret, "s", Some(true)).unwrap().is_empty());
    }

    #[test]
    fn paths_stay_inside_their_volume() {
        assert!(checked("a/b").is_ok());
        assert!(checked("../x").is_err());
        assert!(checked("/etc/passwd").is_err());
    }

    #[test]
    fn files_are_rewritten_only_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_if_changed(&path, b"x", 0o644).unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_if_changed(&path, b"x", 0o644).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
        write_if_changed(&path, b"y", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"y");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
