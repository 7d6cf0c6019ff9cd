//! A webhook flow's signing keys, read from their Secret at each delivery (through the
//! 10 s cache of [`Secrets`]), so a rotated Secret, refreshed by the kubelet in the
//! mounted file, signs the next deliveries without a restart. The previous secret
//! (`webhook.previousSecretRef`) is accepted for [`ROTATION_GRACE`] from when this
//! runner's volume first saw it (`rotation_grace.rs`); a new previous secret starts a new
//! grace period.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use tokio::time::Instant;
use tracing::{info, warn};

use super::{FlowError, ROTATION_GRACE, rotation_grace};
use crate::{secrets::Secrets, source::signature::webhook_secret};
use entrepot_api::resource::{SecretKeySelector, SignatureScheme};

/// The keys a flow's webhooks may be signed with.
pub struct WebhookKeys {
    /// How the source signs.
    pub scheme: SignatureScheme,
    flow: String,
    namespace: String,
    secret: SecretKeySelector,
    previous: Option<SecretKeySelector>,
    secrets: Secrets,
    /// Where the first sight of a previous secret is kept (the queue's folder), once
    /// the runtime has one.
    grace_dir: Option<PathBuf>,
    seen: Mutex<Seen>,
}

/// What was read last.
struct Seen {
    current: Vec<u8>,
    previous: Option<(Vec<u8>, Instant)>,
}

impl std::fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which Secrets, never their values.
        f.debug_struct("WebhookKeys")
            .field("scheme", &self.scheme)
            .field("secret", &self.secret.name)
            .field("previous", &self.previous.as_ref().map(|p| &p.name))
            .finish_non_exhaustive()
    }
}

impl WebhookKeys {
    /// Reads the current key once: a flow whose key is missing or empty does not start
    /// (under an empty key anyone could sign).
    pub(super) fn new(
        flow: &str,
        connector: &str,
        namespace: &str,
        scheme: SignatureScheme,
        secret: &SecretKeySelector,
        previous: Option<&SecretKeySelector>,
        secrets: &Secrets,
    ) -> Result<Self, FlowError> {
        let read = secrets
            .get(namespace, secret)
            .map_err(|source| FlowError::Secret { flow: flow.into(), source: Box::new(source) })?;
        let current = webhook_secret(&read).to_vec();
        if current.is_empty() {
            let field = "spec.webhook.secretRef";
            return Err(FlowError::EmptySecret { flow: flow.into(), connector: connector.into(), field });
        }
        if let Some(previous) = previous {
            secrets
                .get(namespace, previous)
                .map_err(|source| FlowError::Secret { flow: flow.into(), source: Box::new(source) })?;
        }
        Ok(Self {
            scheme,
            flow: flow.into(),
            namespace: namespace.into(),
            secret: secret.clone(),
            previous: previous.cloned(),
            secrets: secrets.clone(),
            grace_dir: None,
            seen: Mutex::new(Seen { current, previous: None }),
        })
    }

    /// Keeps the first sight of each previous secret under `dir`, so a restart does not
    /// grant another full grace period.
    pub fn keep_grace_in(&mut self, dir: &Path) {
        self.grace_dir = Some(dir.to_path_buf());
    }

    /// The keys a delivery may be signed with now: the current one, then the previous
    /// one while its grace period lasts. A key that cannot be read keeps its last value;
    /// one rotated to empty is no key (every delivery is refused until it is fixed).
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match self.secrets.get(&self.namespace, &self.secret) {
            Ok(value) => {
                let value = webhook_secret(&value);
                if value != seen.current.as_slice() {
                    if value.is_empty() {
                        warn!(flow = %self.flow, secret = %self.secret.name, key = %self.secret.key,
                              "the webhook secret is now empty: every delivery is refused until it is set");
                    } else {
                        info!(flow = %self.flow, secret = %self.secret.name, key = %self.secret.key,
                              "the webhook secret changed: deliveries are verified with the new one");
                    }
                    seen.current = value.to_vec();
                }
            }
            Err(e) => warn!(flow = %self.flow, error = %e, "cannot read the webhook secret; the last one read stays"),
        }
        if let Some(selector) = &self.previous {
            match self.secrets.get(&self.namespace, selector) {
                Ok(value) => {
                    let value = webhook_secret(&value);
                    let known = seen.previous.as_ref().is_some_and(|(p, _)| p.as_slice() == value);
                    if value.is_empty() {
                        seen.previous = None;
                    } else if !known {
                        let until = match &self.grace_dir {
                            Some(dir) => rotation_grace::grace_until(dir, &self.flow, value),
                            None => Instant::now() + ROTATION_GRACE,
                        };
                        seen.previous = Some((value.to_vec(), until));
                    }
                }
                Err(e) => warn!(flow = %self.flow, error = %e, "cannot read the previous webhook secret"),
            }
        }
        let mut keys = vec![seen.current.clone()];
        if let Some((previous, until)) = &seen.previous
            && Instant::now() < *until
        {
            keys.push(previous.clone());
        }
        keys
    }
}
