//! A pod's status as the kubelet reports it: phase, conditions (whose
//! lastTransitionTime moves only when they flip), container statuses.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodCondition,
    },
    apimachinery::pkg::apis::meta::v1::Time,
};

use super::container::{ContainerRun, Ended, State};

/// The pod conditions the kubelet owns, with when each last flipped.
#[derive(Default)]
pub struct Conditions {
    current: BTreeMap<&'static str, (bool, Option<&'static str>, Timestamp)>,
}

impl Conditions {
    /// Sets `kind` to `status` (with `reason` when false); its transition time moves only
    /// when the status or reason changes.
    pub fn set(&mut self, kind: &'static str, status: bool, reason: Option<&'static str>) {
        let reason = if status { None } else { reason };
        match self.current.get(kind) {
            Some((s, r, _)) if *s == status && *r == reason => {}
            _ => {
                self.current.insert(kind, (status, reason, Timestamp::now()));
            }
        }
    }

    /// As the pod status lists them.
    pub fn to_vec(&self) -> Vec<PodCondition> {
        ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
            .into_iter()
            .filter_map(|kind| {
                let (status, reason, at) = self.current.get(kind)?;
                Some(PodCondition {
                    type_: kind.into(),
                    status: if *status { "True" } else { "False" }.into(),
                    reason: reason.map(String::from),
                    last_transition_time: Some(Time(*at)),
                    ..PodCondition::default()
                })
            })
            .collect()
    }
}

/// The phase of a pod whose init containers and containers are these.
pub fn phase(init: &[ContainerRun], containers: &[ContainerRun], restart_policy: &str) -> &'static str {
    let exit = |c: &ContainerRun| match &c.state {
        State::Terminated(e) => Some(e.exit_code),
        _ => None,
    };
    // An init container that failed for good fails the pod.
    if init.iter().any(|c| c.done && exit(c).is_some_and(|code| code != 0)) {
        return "Failed";
    }
    if !init.iter().all(|c| c.done && exit(c) == Some(0)) {
        return "Pending";
    }
    if !containers.is_empty() && containers.iter().all(|c| c.done) {
        return if containers.iter().all(|c| exit(c) == Some(0)) { "Succeeded" } else { "Failed" };
    }
    if containers.iter().all(ContainerRun::has_run) {
        return "Running";
    }
    // Some never started: the pod waits for them, unless a stopped one cannot come back.
    if restart_policy == "Never" && containers.iter().any(|c| c.done && exit(c).is_some_and(|code| code != 0)) {
        return "Failed";
    }
    "Pending"
}

/// The status of one container.
pub fn container_status(run: &ContainerRun, image_id: &str) -> ContainerStatus {
    let terminated = |e: &Ended| ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("process://{}", e.pid)),
            exit_code: e.exit_code,
            signal: e.signal,
            reason: Some(if e.exit_code == 0 { "Completed" } else { "Error" }.into()),
            message: e.message.clone(),
            started_at: Some(Time(e.started_at)),
            finished_at: Some(Time(e.finished_at)),
        }),
        ..ContainerState::default()
    };
    let state = match &run.state {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some(reason.clone()), message: message.clone() }),
            ..ContainerState::default()
        },
        State::Running { started_at } => {
            ContainerState { running: Some(ContainerStateRunning { started_at: Some(Time(*started_at)) }), ..ContainerState::default() }
        }
        State::Terminated(e) => terminated(e),
    };
    let container_id = match &run.state {
        State::Terminated(e) => Some(e.pid),
        _ => run.pid.or(run.last.as_ref().map(|e| e.pid)),
    };
    let has_image = !image_id.is_empty();
    ContainerStatus {
        name: run.spec.name.clone(),
        image: run.spec.image.clone().unwrap_or_default(),
        image_id: image_id.into(),
        container_id: container_id.filter(|_| has_image).map(|pid| format!("process://{pid}")),
        started: Some(run.running()),
        ready: run.ready(),
        restart_count: run.restart_count,
        state: Some(state),
        last_state: Some(run.last.as_ref().map(terminated).unwrap_or_default()),
        ..ContainerStatus::default()
    }
}
