//! Reading and writing a custom resource's status, for every controller.
//!
//! The status merged into is read from the API, not from a controller's cache: a cached
//! object can predate the status written a moment ago, and merging into that would move
//! a condition's `lastTransitionTime` without a transition.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    core::DeserializeGuard,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

use super::objects::{FIELD_MANAGER, kube_error};
use crate::error::Error;

/// The status of `K` `namespace/name` as the API holds it now. Read as untyped JSON, so
/// an object whose spec does not parse still has its status read; a status that does
/// not parse counts as none.
pub(crate) async fn read<K, S>(client: &Client, namespace: &str, name: &str) -> Result<S, Error>
where
    K: Resource<DynamicType = ()>,
    S: DeserializeOwned + Default,
{
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()));
    let object = api.get(name).await.map_err(|source| kube_error::<K>("get", namespace, name, source))?;
    Ok(object.data.get("status").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or_default())
}

/// Writes `status` with server-side apply under the operator's field manager.
pub(crate) async fn write<K, S>(client: &Client, namespace: &str, name: &str, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + DeserializeOwned + Clone + Debug,
    S: Serialize,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    // Read back tolerantly: the object's spec may be the unreadable part.
    Api::<DeserializeGuard<K>>::namespaced(client.clone(), namespace)
        .patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| kube_error::<K>("patch status", namespace, name, source))?;
    Ok(())
}
