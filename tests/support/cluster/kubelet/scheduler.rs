//! The scheduler's one decision here: every unscheduled pod goes to this node.

use k8s_openapi::{
    api::core::v1::{Binding, ObjectReference, Pod},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Api, Client, api::PostParams};

use super::events::{Events, Note};

/// Whether the default scheduler would place `pod`: no node yet, not being deleted, and
/// no other scheduler named.
pub fn wants_binding(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.node_name.as_deref().unwrap_or_default().is_empty()
        && pod.metadata.deletion_timestamp.is_none()
        && matches!(spec.scheduler_name.as_deref(), None | Some("") | Some("default-scheduler"))
}

/// Binds `pod` to `node` through the `pods/binding` subresource (which also sets the
/// PodScheduled condition).
pub async fn bind(client: &Client, pod: &Pod, node: &str, events: &Events) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta { name: Some(name.clone()), uid: pod.metadata.uid.clone(), ..ObjectMeta::default() },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..ObjectReference::default()
        },
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    match pods.create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await {
        Ok(_) => {
            events
                .record(pod, Note::normal("Scheduled", format!("Successfully assigned {namespace}/{name} to {node}")))
                .await
        }
        // Already bound, or gone: the watch shows what happened.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
        Err(e) => eprintln!("process kubelet: cannot bind pod {namespace}/{name} to {node}: {e}"),
    }
}
