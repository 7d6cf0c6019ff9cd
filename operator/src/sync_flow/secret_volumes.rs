//! How Secrets reach a runner (and a ReconcileSchedule run): as secret volumes, never
//! as environment variables. The kubelet refreshes a secret volume when the Secret
//! changes (a `subPath` mount would not be refreshed, so none is used), and the runner
//! reads `<secrets dir>/<name>/<key>` at use time, so a rotated Secret reaches a running
//! runner. The operator still never reads a value.
//!
//! Also the flow's admin token: a Secret the operator creates once with a random token
//! (and never reads back), mounted into the runner, which requires it on its admin API,
//! and into the ReconcileSchedule runs, which send it.

use std::collections::{BTreeMap, BTreeSet};

use entrepot_api::resource::SecretKeySelector;
use k8s_openapi::{
    ByteString,
    api::core::v1::{
        ConfigMapVolumeSource, KeyToPath, ProjectedVolumeSource, Secret, SecretProjection, SecretVolumeSource, Volume,
        VolumeMount, VolumeProjection,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::names::admin_token_secret_name;

/// Where the runner reads mounted Secrets (the runner's `--secrets-dir` default).
pub const SECRETS_DIR: &str = "/var/run/secrets/entrepot";
/// Where the admin token Secret is mounted.
pub const ADMIN_TOKEN_DIR: &str = "/var/run/secrets/entrepot-admin";
/// The admin token's key in its Secret, and its file name in [`ADMIN_TOKEN_DIR`].
pub const ADMIN_TOKEN_KEY: &str = "token";
/// Readable by the runner's group (the pod's `fsGroup`) only.
const MODE: i32 = 0o440;

/// One projected volume `secrets` holding every referenced key as `<name>/<key>`, mounted
/// read-only at [`SECRETS_DIR`] (the runner's `--secrets-dir`); none when nothing is
/// referenced. Projected secret sources are refreshed by the kubelet like secret volumes.
pub fn secret_volumes(secrets: &BTreeSet<SecretKeySelector>) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in secrets {
        keys.entry(&s.name).or_default().push(&s.key);
    }
    if keys.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let sources = keys.into_iter().map(|(name, keys)| VolumeProjection {
        secret: Some(SecretProjection {
            name: name.into(),
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath { key: k.to_string(), path: format!("{name}/{k}"), mode: None })
                    .collect(),
            ),
            optional: None,
        }),
        ..VolumeProjection::default()
    });
    let volume = Volume {
        name: "secrets".into(),
        projected: Some(ProjectedVolumeSource { default_mode: Some(MODE), sources: Some(sources.collect()) }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: "secrets".into(),
        mount_path: SECRETS_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (vec![volume], vec![mount])
}

fn secret_volume(volume: &str, secret: &str, items: Vec<KeyToPath>) -> Volume {
    Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(items),
            default_mode: Some(MODE),
            optional: None,
        }),
        ..Volume::default()
    }
}

/// The flow's admin token volume and its mount at [`ADMIN_TOKEN_DIR`].
pub fn admin_token_volume(flow: &str) -> (Volume, VolumeMount) {
    let key = KeyToPath { key: ADMIN_TOKEN_KEY.into(), path: ADMIN_TOKEN_KEY.into(), mode: None };
    (
        secret_volume("admin-token", &admin_token_secret_name(flow), vec![key]),
        VolumeMount {
            name: "admin-token".into(),
            mount_path: ADMIN_TOKEN_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    )
}

/// Where a runner finds the cluster's CA bundle, to authenticate Kubernetes users on its
/// admin API by their own token (`--kube-users-ca`).
pub const KUBE_CA_DIR: &str = "/var/run/secrets/entrepot-kube-ca";
/// The ConfigMap every namespace has (published by the controller manager) with the
/// cluster's CA under `ca.crt`.
const KUBE_ROOT_CA: &str = "kube-root-ca.crt";

/// The cluster CA volume (the namespace's `kube-root-ca.crt` ConfigMap; no token) and its
/// mount at [`KUBE_CA_DIR`].
pub fn kube_ca_volume() -> (Volume, VolumeMount) {
    let key = KeyToPath { key: "ca.crt".into(), path: "ca.crt".into(), mode: None };
    let volume = Volume {
        name: "kube-ca".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: KUBE_ROOT_CA.into(),
            items: Some(vec![key]),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: "kube-ca".into(),
        mount_path: KUBE_CA_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (volume, mount)
}

/// The admin token file inside a runner or run container.
pub fn admin_token_file() -> String {
    format!("{ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}")
}

/// The flow's admin token Secret without its value (building stays pure; the value is
/// drawn when it is created, see [`with_random_token`]).
pub fn admin_token_secret(meta: ObjectMeta) -> Secret {
    let name = meta.name.as_deref().map(|runner| format!("{runner}-admin-token"));
    Secret { metadata: ObjectMeta { name, ..meta }, type_: Some("Opaque".into()), ..Secret::default() }
}

/// `secret` holding a fresh random token (256 bits, hex) under [`ADMIN_TOKEN_KEY`].
pub fn with_random_token(mut secret: Secret) -> Secret {
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    secret.data = Some(BTreeMap::from([(ADMIN_TOKEN_KEY.to_string(), ByteString(token.into_bytes()))]));
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(name: &str, key: &str) -> SecretKeySelector {
        SecretKeySelector { name: name.into(), key: key.into() }
    }

    #[test]
    fn every_referenced_key_is_a_file_of_one_refreshed_volume_at_the_secrets_dir() {
        let refs = BTreeSet::from([selector("erp", "token"), selector("erp", "user"), selector("shop", "secret")]);
        let (volumes, mounts) = secret_volumes(&refs);
        let sources = volumes[0].projected.as_ref().unwrap().sources.clone().unwrap();
        let files: Vec<(String, String)> = sources
            .iter()
            .map(|s| s.secret.as_ref().unwrap())
            .flat_map(|s| s.items.iter().flatten().map(|i| (s.name.clone(), i.path.clone())))
            .collect();
        let expected = [("erp", "erp/token"), ("erp", "erp/user"), ("shop", "shop/secret")];
        assert_eq!(files, expected.map(|(a, b)| (a.to_string(), b.to_string())));
        assert_eq!(mounts[0].mount_path, SECRETS_DIR);
        assert!(mounts[0].sub_path.is_none() && mounts[0].read_only == Some(true), "the kubelet refreshes it");
        assert_eq!(secret_volumes(&BTreeSet::new()), (Vec::new(), Vec::new()));
    }

    #[test]
    fn the_admin_token_is_random_and_named_after_the_runner() {
        let meta = ObjectMeta { name: Some("orders-runner".into()), ..ObjectMeta::default() };
        let secret = admin_token_secret(meta);
        assert_eq!(secret.metadata.name.as_deref(), Some("orders-runner-admin-token"));
        assert_eq!(secret.metadata.name, Some(admin_token_secret_name("orders")));
        assert!(secret.data.is_none(), "built without a value");
        let (a, b) = (with_random_token(secret.clone()), with_random_token(secret));
        let token = |s: &Secret| s.data.as_ref().unwrap()[ADMIN_TOKEN_KEY].0.clone();
        assert_eq!(token(&a).len(), 64);
        assert_ne!(token(&a), token(&b));
        assert_eq!(admin_token_file(), "/var/run/secrets/entrepot-admin/token");
    }
}
