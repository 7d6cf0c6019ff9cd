//! Step 1 of a SyncFlow reconcile (and of a ReconcileSchedule's): reading what the flow
//! references, so that validate and build work on values, not on the API.

use kube::Client;

use super::validate::References;
use crate::{
    error::Error,
    kube_io::objects::get_guarded,
    resources::{Connector, Mapping, SyncFlow},
};

/// Reads the Connectors and Mappings `flow` references, tolerating ones that exist but
/// do not parse (validation reports those).
pub(crate) async fn references(client: &Client, namespace: &str, flow: &SyncFlow) -> Result<References, Error> {
    let mut refs = References::default();
    for name in flow.spec.connector_refs() {
        if let Some(found) = get_guarded::<Connector>(client, namespace, name).await? {
            refs.connectors.insert(name.to_string(), found.0.map(|c| c.spec.0).map_err(|e| e.error));
        }
    }
    for name in flow.spec.mapping_refs() {
        if let Some(found) = get_guarded::<Mapping>(client, namespace, name).await? {
            refs.mappings.insert(name.to_string(), found.0.map(|m| m.spec.0).map_err(|e| e.error));
        }
    }
    Ok(refs)
}
