//! Where the runner finds the values behind Secret references.
//!
//! In a pod, the operator renders each referenced Secret key as an environment variable
//! (`SecretKeySelector::env_var`). In local mode, `v1/Secret` manifests in the directory
//! are used when the variable is not set. Values are never logged: the only thing
//! that reaches a message is the selector.

use std::collections::BTreeMap;

use crate::{manifest::ObjectKey, spec::SecretKeySelector};

/// A Secret key that could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "secret {namespace}/{name} key {key} is not available: set {env} or, in local mode, add a v1 Secret manifest"
)]
pub struct MissingSecret {
    /// Namespace of the reference.
    pub namespace: String,
    /// Secret name.
    pub name: String,
    /// Key.
    pub key: String,
    /// The environment variable that would carry it.
    pub env: String,
}

/// Resolves Secret references to their values.
#[derive(Clone, Default)]
pub struct Secrets {
    manifests: BTreeMap<ObjectKey, BTreeMap<String, String>>,
    placeholders: bool,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only, never values.
        f.debug_struct("Secrets").field("manifests", &self.manifests.keys().collect::<Vec<_>>()).finish()
    }
}

impl Secrets {
    /// Environment only (a runner pod).
    pub fn from_env() -> Self {
        Self::default()
    }

    /// Environment first, then these Secret manifests (local mode).
    pub fn with_manifests(manifests: BTreeMap<ObjectKey, BTreeMap<String, String>>) -> Self {
        Self { manifests, placeholders: false }
    }

    /// For offline checks (`entrepot test`): a Secret that is not available resolves to
    /// a placeholder, so everything else about a flow can still be checked.
    pub fn placeholders() -> Self {
        Self { manifests: BTreeMap::new(), placeholders: true }
    }

    /// The value behind `selector`, for an object in `namespace`.
    pub fn get(&self, namespace: &str, selector: &SecretKeySelector) -> Result<String, MissingSecret> {
        let env = selector.env_var();
        if let Ok(value) = std::env::var(&env) {
            return Ok(value);
        }
        let key = ObjectKey { namespace: namespace.into(), name: selector.name.clone() };
        if let Some(value) = self.manifests.get(&key).and_then(|s| s.get(&selector.key)) {
            return Ok(value.clone());
        }
        if self.placeholders {
            return Ok("offline-placeholder".into());
        }
        Err(MissingSecret {
            namespace: namespace.into(),
            name: selector.name.clone(),
            key: selector.key.clone(),
            env,
        })
    }
}
