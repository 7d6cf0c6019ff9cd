//! The ConfigMaps and Secrets a pod reads (env, envFrom, volumes), fetched once per sync.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

/// Keys to bytes of one ConfigMap or Secret.
pub type Data = BTreeMap<String, Vec<u8>>;

/// The ConfigMaps and Secrets of one namespace, each fetched at most once.
pub struct Sources {
    config_maps: Api<ConfigMap>,
    secrets: Api<Secret>,
    cache: BTreeMap<(Kind, String), Option<Data>>,
}

/// Which kind of object a [`Sources`] lookup names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    /// How Kubernetes messages name it.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        }
    }
}

impl Sources {
    /// Lookups in `namespace`.
    pub fn new(client: &Client, namespace: &str) -> Self {
        Self {
            config_maps: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
            cache: BTreeMap::new(),
        }
    }

    /// The data of `kind` `name`, `None` when it does not exist.
    pub async fn get(&mut self, kind: Kind, name: &str) -> Result<Option<Data>, String> {
        if let Some(found) = self.cache.get(&(kind, name.to_string())) {
            return Ok(found.clone());
        }
        let data = match kind {
            Kind::ConfigMap => self.config_maps.get_opt(name).await.map(|cm| {
                cm.map(|cm| {
                    let mut data: Data =
                        cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                    data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                    data
                })
            }),
            Kind::Secret => self.secrets.get_opt(name).await.map(|s| {
                s.map(|s| {
                    let mut data: Data = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                    data.extend(s.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
                    data
                })
            }),
        }
        .map_err(|e| format!("cannot read {} {name:?}: {e}", kind.noun()))?;
        self.cache.insert((kind, name.to_string()), data.clone());
        Ok(data)
    }

    /// The data of `kind` `name`; an empty map when it is missing and `optional`, and the
    /// error Kubernetes reports when it is missing and required.
    pub async fn require(&mut self, kind: Kind, name: &str, optional: bool) -> Result<Data, String> {
        match self.get(kind, name).await? {
            Some(data) => Ok(data),
            None if optional => Ok(Data::new()),
            None => Err(format!("{} {name:?} not found", kind.noun())),
        }
    }
}
