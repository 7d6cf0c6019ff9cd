//! Kubernetes Events for what a human should see in `kubectl describe`: published by
//! the controllers when a condition turns, never on every reconcile.

use kube::{
    Client, Resource,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use tracing::warn;

/// The `reportingController` of every Event the operator publishes.
pub const REPORTER: &str = "entrepot-operator";

/// The most of a note that is sent; the API refuses notes over 1 KiB.
const MAX_NOTE: usize = 1024;

/// A recorder reporting as [`REPORTER`], from this pod (its host name).
pub fn recorder(client: Client) -> Recorder {
    Recorder::new(client, Reporter::from(REPORTER))
}

/// An Event to publish on an object. Pure data, so that when to publish is decided
/// (and tested) apart from publishing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// `Warning` when someone should act, `Normal` when something recovered.
    pub warning: bool,
    /// One CamelCase word, e.g. `MappingTestsFailing`.
    pub reason: &'static str,
    /// What the operator was doing, e.g. `RunTests`.
    pub action: &'static str,
    /// A sentence for a human.
    pub note: String,
}

/// Publishes `notice` on `object`. A failure is logged, not returned: an Event is a
/// courtesy, and the object's status says the same thing.
pub async fn publish<K: Resource<DynamicType = ()>>(recorder: &Recorder, notice: &Notice, object: &K) {
    let event = Event {
        type_: if notice.warning { EventType::Warning } else { EventType::Normal },
        reason: notice.reason.into(),
        note: Some(crate::resources::cut(&notice.note, MAX_NOTE)),
        action: notice.action.into(),
        secondary: None,
    };
    let reference = object.object_ref(&());
    if let Err(error) = recorder.publish(&event, &reference).await {
        warn!(
            kind = %K::kind(&()),
            namespace = reference.namespace,
            name = reference.name,
            reason = notice.reason,
            error = %error,
            "cannot publish an event"
        );
    }
}
