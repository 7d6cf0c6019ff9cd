//! Where the runner finds the values behind Secret references.
//!
//! Three places, in order: the environment variable the operator renders for each
//! referenced key (`SecretKeySelector::env_var`); a file `<secrets dir>/<name>/<key>`
//! (a Secret mounted as a volume, the way the kubelet lays it out); and, in local mode,
//! `v1/Secret` manifests in the directory. Files are read at use time, so a rotated
//! Secret is picked up without a restart; they are cached for a few seconds so a busy
//! target does not read the file on every request. Values are never logged: the only
//! thing that reaches a message is the selector.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::manifest::ObjectKey;

use entrepot_api::resource::SecretKeySelector;

/// Where a runner pod finds mounted Secrets unless told otherwise (`--secrets-dir`).
pub const DEFAULT_SECRETS_DIR: &str = "/var/run/secrets/entrepot";

/// How long a value read from a file is reused before the file is read again. The kubelet
/// itself takes up to a minute to project a rotated Secret, so this adds little.
const FILE_CACHE: Duration = Duration::from_secs(10);

/// A Secret key that could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "secret {namespace}/{name} key {key} is not available: set {env}, mount it as {file}, or, in local mode, \
     add a v1 Secret manifest"
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
    /// The file that would carry it (or `-` without a secrets directory).
    pub file: String,
}

/// Resolves Secret references to their values. Cheap to clone; clones share the file
/// cache.
#[derive(Clone, Default)]
pub struct Secrets {
    manifests: BTreeMap<ObjectKey, BTreeMap<String, String>>,
    placeholders: bool,
    dir: Option<PathBuf>,
    file_cache: Option<Duration>,
    cache: Arc<Mutex<HashMap<PathBuf, (Instant, String)>>>,
    /// Stands in for the process environment in tests (setting process variables is
    /// unsafe while other test threads read them).
    env: Option<Arc<BTreeMap<String, String>>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only, never values.
        f.debug_struct("Secrets")
            .field("manifests", &self.manifests.keys().collect::<Vec<_>>())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Environment only (add [`Secrets::with_dir`] for mounted files).
    pub fn from_env() -> Self {
        Self::default()
    }

    /// Environment first, then these Secret manifests (local mode).
    pub fn with_manifests(manifests: BTreeMap<ObjectKey, BTreeMap<String, String>>) -> Self {
        Self { manifests, ..Self::default() }
    }

    /// For offline checks (`entrepot test`): a Secret that is not available resolves to
    /// a placeholder, so everything else about a flow can still be checked.
    pub fn placeholders() -> Self {
        Self { placeholders: true, ..Self::default() }
    }

    /// Also reads mounted Secrets from `dir/<name>/<key>`, after the environment and
    /// before manifests.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// How long a value read from a file is reused (default 10 s; zero reads the file
    /// on every use).
    pub fn with_file_cache(mut self, ttl: Duration) -> Self {
        self.file_cache = Some(ttl);
        self
    }

    /// Uses `vars` instead of the process environment.
    #[cfg(test)]
    pub(crate) fn with_env(mut self, vars: BTreeMap<String, String>) -> Self {
        self.env = Some(Arc::new(vars));
        self
    }

    /// The value behind `selector`, for an object in `namespace`.
    pub fn get(&self, namespace: &str, selector: &SecretKeySelector) -> Result<String, MissingSecret> {
        self.resolve(namespace, selector, false)
    }

    /// Like [`Secrets::get`], but a file is read again even when a cached value is
    /// fresh: for when the system refused the value and it may have been rotated.
    pub fn reload(&self, namespace: &str, selector: &SecretKeySelector) -> Result<String, MissingSecret> {
        self.resolve(namespace, selector, true)
    }

    fn resolve(&self, namespace: &str, selector: &SecretKeySelector, fresh: bool) -> Result<String, MissingSecret> {
        let env = selector.env_var();
        let from_env = match &self.env {
            Some(vars) => vars.get(&env).cloned(),
            None => std::env::var(&env).ok(),
        };
        if let Some(value) = from_env {
            return Ok(value);
        }
        let file = self.file_of(selector);
        if let Some(path) = &file
            && let Some(value) = self.read_file(path, fresh)
        {
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
            file: file.map_or_else(|| "-".into(), |p| p.display().to_string()),
        })
    }

    /// `<dir>/<name>/<key>`, when there is a directory and the names cannot leave it.
    fn file_of(&self, selector: &SecretKeySelector) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let safe = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\']);
        (safe(&selector.name) && safe(&selector.key)).then(|| dir.join(&selector.name).join(&selector.key))
    }

    fn read_file(&self, path: &Path, fresh: bool) -> Option<String> {
        let ttl = self.file_cache.unwrap_or(FILE_CACHE);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if !fresh
            && let Some((read_at, value)) = cache.get(path)
            && read_at.elapsed() < ttl
        {
            return Some(value.clone());
        }
        // A missing or unreadable file falls through to the next place; the final
        // error names the file, and a stale cached value is not used.
        match std::fs::read_to_string(path) {
            Ok(value) => {
                cache.insert(path.to_path_buf(), (Instant::now(), value.clone()));
                Some(value)
            }
            Err(_) => {
                cache.remove(path);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector() -> SecretKeySelector {
        SecretKeySelector { name: "erp-api".into(), key: "token".into() }
    }

    fn mounted(dir: &Path, value: &str) {
        std::fs::create_dir_all(dir.join("erp-api")).unwrap();
        std::fs::write(dir.join("erp-api/token"), value).unwrap();
    }

    fn manifests() -> BTreeMap<ObjectKey, BTreeMap<String, String>> {
        let key = ObjectKey { namespace: "retail".into(), name: "erp-api".into() };
        BTreeMap::from([(key, BTreeMap::from([("token".to_string(), "from-manifest".to_string())]))])
    }

    #[test]
    fn the_environment_beats_a_file_which_beats_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        mounted(dir.path(), "from-file");
        let env = BTreeMap::from([(selector().env_var(), "from-env".to_string())]);
        let all = Secrets::with_manifests(manifests()).with_dir(dir.path());
        assert_eq!(all.clone().with_env(env).get("retail", &selector()).unwrap(), "from-env");
        let no_env = all.with_env(BTreeMap::new());
        assert_eq!(no_env.get("retail", &selector()).unwrap(), "from-file");
        std::fs::remove_file(dir.path().join("erp-api/token")).unwrap();
        assert_eq!(no_env.reload("retail", &selector()).unwrap(), "from-manifest");
    }

    #[test]
    fn a_rotated_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        mounted(dir.path(), "first");
        let uncached =
            Secrets::from_env().with_dir(dir.path()).with_file_cache(Duration::ZERO).with_env(BTreeMap::new());
        assert_eq!(uncached.get("retail", &selector()).unwrap(), "first");
        mounted(dir.path(), "second");
        assert_eq!(uncached.get("retail", &selector()).unwrap(), "second");

        // With the cache, the old value is reused until the system refuses it and the
        // caller asks for a reload.
        let cached = Secrets::from_env().with_dir(dir.path()).with_env(BTreeMap::new());
        assert_eq!(cached.get("retail", &selector()).unwrap(), "second");
        mounted(dir.path(), "third");
        assert_eq!(cached.get("retail", &selector()).unwrap(), "second");
        assert_eq!(cached.reload("retail", &selector()).unwrap(), "third");
        assert_eq!(cached.clone().get("retail", &selector()).unwrap(), "third");
    }

    #[test]
    fn a_missing_secret_names_every_place_and_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::from_env().with_dir(dir.path()).with_env(BTreeMap::new());
        let err = secrets.get("retail", &selector()).unwrap_err().to_string();
        assert!(err.contains("ENTREPOT_SECRET_ERP_API_TOKEN"), "{err}");
        assert!(err.contains(&dir.path().join("erp-api/token").display().to_string()), "{err}");
        // A name that would leave the directory is never read.
        let escape = SecretKeySelector { name: "..".into(), key: "passwd".into() };
        assert!(secrets.file_of(&escape).is_none());
    }

    #[test]
    fn debug_shows_names_not_values() {
        let secrets = Secrets::with_manifests(manifests());
        let debug = format!("{secrets:?}");
        assert!(debug.contains("erp-api") && !debug.contains("from-manifest"), "{debug}");
    }
}
