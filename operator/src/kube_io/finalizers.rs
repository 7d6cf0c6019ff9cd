//! Adding and removing a finalizer of the operator's on a custom resource.
//!
//! The new list is sent as a merge patch together with the `resourceVersion` it was
//! computed from: the API server refuses it (409) when someone changed the object in
//! between, so a finalizer another controller added at the same moment is never lost;
//! the reconcile fails, and the next one starts from the object as it is.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
};
use serde_json::json;
use tracing::info;

use super::objects::kube_error;
use crate::error::Error;

/// Adds `finalizer` to the `K` whose metadata is `meta`, if it lacks it.
pub(crate) async fn add<K: Resource<DynamicType = ()>>(
    client: &Client,
    meta: &ObjectMeta,
    finalizer: &str,
) -> Result<(), Error> {
    let mut finalizers = meta.finalizers.clone().unwrap_or_default();
    if finalizers.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    finalizers.push(finalizer.to_string());
    write::<K>(client, meta, &finalizers, "add finalizer").await?;
    info!(kind = %K::kind(&()), name = meta.name, finalizer, "finalizer added");
    Ok(())
}

/// Removes `finalizer` from the `K` whose metadata is `meta`, if it has it.
pub(crate) async fn remove<K: Resource<DynamicType = ()>>(
    client: &Client,
    meta: &ObjectMeta,
    finalizer: &str,
) -> Result<(), Error> {
    let finalizers = meta.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let rest: Vec<String> = finalizers.into_iter().filter(|f| f != finalizer).collect();
    write::<K>(client, meta, &rest, "remove finalizer").await?;
    info!(kind = %K::kind(&()), name = meta.name, finalizer, "finalizer removed");
    Ok(())
}

async fn write<K: Resource<DynamicType = ()>>(
    client: &Client,
    meta: &ObjectMeta,
    finalizers: &[String],
    action: &'static str,
) -> Result<(), Error> {
    let (namespace, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &ApiResource::erase::<K>(&()));
    let patch = json!({"metadata": {"resourceVersion": meta.resource_version, "finalizers": finalizers}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| kube_error::<K>(action, &namespace, &name, source))?;
    Ok(())
}
