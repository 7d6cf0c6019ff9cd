//! Loading the manifests a GitOps repository holds (the same YAML a cluster gets) from a
//! directory, for local mode and for `entrepot test`.
//!
//! Errors name the file and the line. Kinds other than Entrepot's four and `v1/Secret`
//! are skipped, so a directory that also holds Deployments or Kustomizations loads.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use base64::Engine as _;
use serde::{Deserialize, de::DeserializeOwned};

use entrepot_api::{
    config::{FlowConfig, ResolveError, RunnerConfig},
    resource::{ConnectorSpec, MappingSpec, ReconcileScheduleSpec, SyncFlowSpec},
};

/// The API group and version of Entrepot's resources.
pub const API_VERSION: &str = "entrepot.io/v1alpha1";

/// A namespaced object's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace (`default` when the manifest names none).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Every resource found in a directory, by kind.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// Connectors.
    pub connectors: BTreeMap<ObjectKey, ConnectorSpec>,
    /// Mappings.
    pub mappings: BTreeMap<ObjectKey, MappingSpec>,
    /// SyncFlows.
    pub flows: BTreeMap<ObjectKey, SyncFlowSpec>,
    /// ReconcileSchedules.
    pub schedules: BTreeMap<ObjectKey, ReconcileScheduleSpec>,
    /// Secrets, decoded: in local mode they stand in for the pod's environment.
    pub secrets: BTreeMap<ObjectKey, BTreeMap<String, String>>,
    /// Where each object was read from, for messages.
    pub origins: BTreeMap<(String, ObjectKey), Origin>,
}

/// A file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// 1-based line where the document starts.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Why a directory of manifests cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The directory or a file in it cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A document is not valid YAML or does not match its kind's schema.
    #[error("{origin}: {kind} is invalid: {message}")]
    Invalid {
        /// Where.
        origin: Origin,
        /// The document's kind (or `document` when unknown).
        kind: String,
        /// The parser's message, with the field and line.
        message: String,
    },
    /// Two documents declare the same object.
    #[error("{origin}: {kind} {key} is already declared at {first}")]
    Duplicate {
        /// The second declaration.
        origin: Origin,
        /// The first declaration.
        first: Box<Origin>,
        /// Kind.
        kind: String,
        /// Object.
        key: Box<ObjectKey>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct Resource<S> {
    spec: S,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretDoc {
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
}

impl Manifests {
    /// Loads every `*.yaml` / `*.yml` file under `dir`, recursively, in path order.
    pub fn load_dir(dir: &Path) -> Result<Self, ManifestError> {
        let mut files = Vec::new();
        collect_yaml_files(dir, &mut files)?;
        files.sort();
        let mut manifests = Self::default();
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|source| ManifestError::Io { path: file.clone(), source })?;
            manifests.add_text(&file, &text)?;
        }
        Ok(manifests)
    }

    /// Adds the documents of one YAML text; `file` is used in messages.
    pub fn add_text(&mut self, file: &Path, text: &str) -> Result<(), ManifestError> {
        for (line, doc) in split_documents(text) {
            // Pad with the lines before the document so the parser's line numbers are
            // the file's.
            let padded = format!("{}{}", "\n".repeat(line - 1), doc);
            let origin = Origin { file: file.to_path_buf(), line };
            let invalid = |kind: &str, e: serde_saphyr::Error| ManifestError::Invalid {
                origin: origin.clone(),
                kind: kind.to_string(),
                message: e.to_string(),
            };
            let header: Option<Header> = serde_saphyr::from_str(&padded).map_err(|e| invalid("document", e))?;
            let Some(header) = header else { continue }; // an empty document
            let kind = header.kind.as_str();
            let ours = header.api_version == API_VERSION;
            let secret = header.api_version == "v1" && kind == "Secret";
            let entrepot = ours && matches!(kind, "Connector" | "Mapping" | "SyncFlow" | "ReconcileSchedule");
            if !(secret || entrepot) {
                continue;
            }
            if header.metadata.name.is_empty() {
                return Err(ManifestError::Invalid {
                    origin,
                    kind: kind.into(),
                    message: "metadata.name is missing".into(),
                });
            }
            let key = ObjectKey {
                namespace: header.metadata.namespace.unwrap_or_else(|| "default".into()),
                name: header.metadata.name,
            };
            if let Some(first) = self.origins.get(&(kind.to_string(), key.clone())) {
                return Err(ManifestError::Duplicate {
                    origin,
                    first: Box::new(first.clone()),
                    kind: kind.into(),
                    key: Box::new(key),
                });
            }
            match kind {
                "Connector" => insert_spec(&mut self.connectors, &key, &padded).map_err(|e| invalid(kind, e))?,
                "Mapping" => insert_spec(&mut self.mappings, &key, &padded).map_err(|e| invalid(kind, e))?,
                "SyncFlow" => insert_spec(&mut self.flows, &key, &padded).map_err(|e| invalid(kind, e))?,
                "ReconcileSchedule" => insert_spec(&mut self.schedules, &key, &padded).map_err(|e| invalid(kind, e))?,
                _ => {
                    let secret: SecretDoc = serde_saphyr::from_str(&padded).map_err(|e| invalid(kind, e))?;
                    let mut values = secret.string_data;
                    for (k, v) in secret.data {
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(v.trim())
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok())
                            .ok_or_else(|| ManifestError::Invalid {
                                origin: origin.clone(),
                                kind: kind.into(),
                                message: format!("data.{k} is not base64-encoded UTF-8"),
                            })?;
                        values.entry(k).or_insert(decoded);
                    }
                    self.secrets.insert(key.clone(), values);
                }
            }
            self.origins.insert((kind.to_string(), key), origin);
        }
        Ok(())
    }

    /// Where an object was declared.
    pub fn origin(&self, kind: &str, key: &ObjectKey) -> Option<&Origin> {
        self.origins.get(&(kind.to_string(), key.clone()))
    }

    /// Resolves every SyncFlow into a runner configuration, collecting every flow's
    /// error rather than stopping at the first.
    pub fn runner_config(&self) -> Result<RunnerConfig, Vec<ResolveError>> {
        let mut flows = Vec::new();
        let mut errors = Vec::new();
        for (key, spec) in &self.flows {
            let lookup = |name: &str| ObjectKey { namespace: key.namespace.clone(), name: name.into() };
            match FlowConfig::resolve(
                &key.name,
                &key.namespace,
                spec,
                |n| self.connectors.get(&lookup(n)).cloned(),
                |n| self.mappings.get(&lookup(n)).cloned(),
            ) {
                Ok(flow) => flows.push(flow),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(RunnerConfig { flows }) } else { Err(errors) }
    }
}

fn insert_spec<S: DeserializeOwned>(
    into: &mut BTreeMap<ObjectKey, S>,
    key: &ObjectKey,
    doc: &str,
) -> Result<(), serde_saphyr::Error> {
    let resource: Resource<S> = serde_saphyr::from_str(doc)?;
    into.insert(key.clone(), resource.spec);
    Ok(())
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let io = |source| ManifestError::Io { path: dir.to_path_buf(), source };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Splits a multi-document YAML text on `---` lines, giving each document with the
/// 1-based line it starts on. A `---` at column 0 always separates documents: block
/// scalars inside a document are indented.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            docs.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs.retain(|(_, d)| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')));
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = r#"
apiVersion: entrepot.io/v1alpha1
kind: Connector
metadata: {name: shop}
spec:
  type: shopify
  webhook: {signature: shopify-hmac-sha256, secretRef: {name: shop, key: secret}}
---
apiVersion: entrepot.io/v1alpha1
kind: Connector
metadata: {name: erp}
spec: {type: rest, endpoint: "http://erp"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: unrelated}
---
apiVersion: v1
kind: Secret
metadata: {name: shop}
data: {secret: aHVzaA==}
---
apiVersion: entrepot.io/v1alpha1
kind: SyncFlow
metadata: {name: orders, namespace: retail}
spec:
  source: {connectorRef: shop, entity: orders, trigger: {webhook: {}}}
  targets: [{connectorRef: erp, entity: salesOrder}]
"#;

    #[test]
    fn loads_each_kind_and_skips_foreign_ones() {
        let mut m = Manifests::default();
        m.add_text(Path::new("flow.yaml"), FLOW).unwrap();
        assert_eq!(m.connectors.len(), 2);
        assert_eq!(m.flows.len(), 1);
        let key = ObjectKey { namespace: "default".into(), name: "shop".into() };
        assert_eq!(m.secrets[&key]["secret"], "hush");
        let flow_key = ObjectKey { namespace: "retail".into(), name: "orders".into() };
        assert_eq!(m.origin("SyncFlow", &flow_key).unwrap().line, 23);
    }

    #[test]
    fn a_reference_across_namespaces_is_not_found() {
        let mut m = Manifests::default();
        m.add_text(Path::new("flow.yaml"), FLOW).unwrap();
        let errors = m.runner_config().unwrap_err();
        assert!(
            matches!(&errors[0], ResolveError::ConnectorNotFound { name, field, .. } if name == "shop" && field == "spec.source.connectorRef"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_error_names_the_file_the_line_and_the_field() {
        let text = "apiVersion: entrepot.io/v1alpha1\nkind: Connector\nmetadata: {name: a}\nspec: {type: rest}\n---\n\
                    apiVersion: entrepot.io/v1alpha1\nkind: SyncFlow\nmetadata: {name: b}\nspec:\n  source: {connectorRef: a}\n";
        let err = Manifests::default().add_text(Path::new("x/flows.yaml"), text).unwrap_err().to_string();
        assert!(err.starts_with("x/flows.yaml:6: SyncFlow is invalid"), "{err}");
        assert!(err.contains("entity") || err.contains("trigger"), "{err}");
    }

    #[test]
    fn a_duplicate_object_points_at_both_declarations() {
        let doc = "apiVersion: entrepot.io/v1alpha1\nkind: Connector\nmetadata: {name: a}\nspec: {type: rest}\n";
        let err = Manifests::default().add_text(Path::new("c.yaml"), &format!("{doc}---\n{doc}")).unwrap_err();
        assert_eq!(err.to_string(), "c.yaml:6: Connector default/a is already declared at c.yaml:1");
    }
}
