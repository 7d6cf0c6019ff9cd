//! The example manifests the scenarios embed, read as if from their folder.

use std::path::Path;

use anyhow::{Context, Result};
use entrepot::manifest::Manifests;

/// Manifests embedded in the binary, as if read from `dir`.
pub(crate) fn load_embedded(dir: &str, files: &[(&str, &str)]) -> Result<Manifests> {
    let mut manifests = Manifests::default();
    for (file, text) in files {
        manifests.add_text(&Path::new(dir).join(file), text)?;
    }
    Ok(manifests)
}

/// A value of a `v1/Secret` manifest of `dir`.
pub(crate) fn secret_of(manifests: &Manifests, dir: &str, name: &str, key: &str) -> Result<String> {
    manifests
        .secrets
        .iter()
        .find(|(k, _)| k.name == name)
        .and_then(|(_, values)| values.get(key).cloned())
        .with_context(|| format!("{dir}/secrets.yaml has no {name}/{key}"))
}
