//! The Events a kubelet and a scheduler record on a pod (Scheduled, Pulled, Started,
//! Failed, FailedMount, BackOff, Unhealthy, Killing), so `kubectl describe pod` tells a
//! failing test what happened. Repeats are folded into a series by kube's recorder.

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Client, Resource,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

/// One Event to record on a pod, about one of its containers or the pod itself.
#[derive(Clone, Debug)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
    /// `spec.containers{name}`, as the kubelet's field path.
    pub container: Option<String>,
}

impl Note {
    /// A Normal Event.
    pub fn normal(reason: &'static str, message: String) -> Self {
        Self { warning: false, reason, message, container: None }
    }

    /// A Warning Event.
    pub fn warning(reason: &'static str, message: String) -> Self {
        Self { warning: true, reason, message, container: None }
    }
}

/// Records Events as `controller` (`kubelet` or `default-scheduler`) of `node`.
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: Client, controller: &str, node: &str) -> Self {
        Self {
            recorder: Recorder::new(client, Reporter { controller: controller.into(), instance: Some(node.into()) }),
        }
    }

    /// Records `note` on `pod`; a failure is only logged (Events are best effort).
    pub async fn record(&self, pod: &Pod, note: Note) {
        let mut reference = pod.object_ref(&());
        reference.field_path = note.container.as_ref().map(|c| format!("spec.containers{{{c}}}"));
        let mut message = note.message;
        if message.len() > 1000 {
            let cut = (0..=1000).rev().find(|i| message.is_char_boundary(*i)).unwrap_or(0);
            message.truncate(cut);
        }
        let event = Event {
            type_: if note.warning { EventType::Warning } else { EventType::Normal },
            reason: note.reason.into(),
            note: Some(message),
            action: note.reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            eprintln!("process kubelet: cannot record Event {} on pod {:?}: {e}", note.reason, pod.metadata.name);
        }
    }
}
