//! Getting, applying and deleting namespaced objects, with errors that name the object.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    core::DeserializeGuard,
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::info;

use crate::error::Error;

/// Field manager of every server-side apply the operator sends.
pub const FIELD_MANAGER: &str = "entrepot-operator";

/// An `Api` for any namespaced kind, in one namespace or all of them.
pub(crate) struct ApiScope(pub(crate) Client, pub(crate) Option<String>);

impl ApiScope {
    pub(crate) fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.1 {
            Some(ns) => Api::namespaced(self.0.clone(), ns),
            None => Api::all(self.0.clone()),
        }
    }
}

/// The `K` named `name`, read tolerantly (a spec that does not parse is reported on the
/// object, not as an error here); `None` when there is none.
pub(crate) async fn get_guarded<K>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<DeserializeGuard<K>>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    Api::<DeserializeGuard<K>>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| kube_error::<K>("get", namespace, name, source))
}

/// Every `K` of `namespace`, read tolerantly (a spec that does not parse is an `Err` in
/// its guard, not an error here).
pub(crate) async fn list_guarded<K>(client: &Client, namespace: &str) -> Result<Vec<DeserializeGuard<K>>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    Api::<DeserializeGuard<K>>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .map_err(|source| kube_error::<K>("list", namespace, "*", source))
}

/// Server-side applies `object` (force: the operator owns these fields) and returns
/// the object as the API holds it afterwards.
pub(crate) async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(|source| kube_error::<K>("apply", namespace, &name, source))
}

/// Creates `object` unless one of its name exists (`409 AlreadyExists`), which is left
/// as it is: never read, never updated. For what must be written once, like a token.
pub(crate) async fn create_once<K>(client: &Client, namespace: &str, object: &K) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    match Api::<K>::namespaced(client.clone(), namespace).create(&PostParams::default(), object).await {
        Ok(_) => {
            info!(kind = %K::kind(&()), child = name, "created");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(source) => Err(kube_error::<K>("create", namespace, &name, source)),
    }
}

/// Deletes the `K` named `name` if the object whose uid is `owner` owns it. Anything
/// else of that name is not ours and is left alone.
pub(crate) async fn remove_owned<K>(client: &Client, namespace: &str, name: &str, owner: &str) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    let Some(existing) = api.get_opt(name).await.map_err(|source| kube_error::<K>("get", namespace, name, source))?
    else {
        return Ok(());
    };
    if existing.owner_references().iter().any(|o| o.uid == owner) {
        api.delete(name, &DeleteParams::background())
            .await
            .map_err(|source| kube_error::<K>("delete", namespace, name, source))?;
        info!(kind = %K::kind(&()), child = name, "removed what the owner no longer renders");
    }
    Ok(())
}

/// The error of a failed call `action` on the `K` `namespace/name`.
pub(crate) fn kube_error<K: Resource<DynamicType = ()>>(
    action: &'static str,
    namespace: &str,
    name: &str,
    source: kube::Error,
) -> Error {
    Error::KubeApi { action, kind: K::kind(&()).into_owned(), namespace: namespace.into(), name: name.into(), source }
}
