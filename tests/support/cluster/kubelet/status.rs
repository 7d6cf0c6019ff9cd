//! A pod's status as the kubelet reports it: phase, conditions (whose
//! lastTransitionTime moves only when they flip), container statuses.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
        PodCondition,
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
        State::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning { started_at: Some(Time(*started_at)) }),
            ..ContainerState::default()
        },
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use k8s_openapi::api::core::v1::Container;

    use super::*;

    fn run(state: Option<(i32, bool)>) -> ContainerRun {
        let mut c = ContainerRun::new(Container { name: "c".into(), ..Container::default() }, Path::new("/nowhere"));
        if let Some((exit_code, done)) = state {
            let ended = Ended {
                exit_code,
                signal: None,
                message: None,
                started_at: Timestamp::now(),
                finished_at: Timestamp::now(),
                pid: 7,
            };
            c.done = done;
            c.state = if done {
                State::Terminated(ended)
            } else {
                State::Waiting { reason: "CrashLoopBackOff".into(), message: None }
            };
        }
        c
    }

    #[test]
    fn phases_follow_the_containers() {
        assert_eq!(phase(&[], &[run(None)], "Always"), "Pending");
        assert_eq!(phase(&[run(None)], &[run(None)], "Always"), "Pending", "init containers first");
        assert_eq!(phase(&[run(Some((0, true)))], &[run(Some((0, true)))], "Never"), "Succeeded");
        assert_eq!(phase(&[], &[run(Some((0, true))), run(Some((2, true)))], "Never"), "Failed");
        assert_eq!(phase(&[run(Some((1, true)))], &[run(None)], "Never"), "Failed", "a failed init container");
    }

    #[test]
    fn a_condition_moves_its_time_only_when_it_flips() {
        let mut conditions = Conditions::default();
        conditions.set("Ready", false, Some("ContainersNotReady"));
        let first = conditions.to_vec()[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        conditions.set("Ready", false, Some("ContainersNotReady"));
        assert_eq!(conditions.to_vec()[0].last_transition_time, first);
        conditions.set("Ready", true, None);
        let ready = &conditions.to_vec()[0];
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", None));
        assert_ne!(ready.last_transition_time, first);
    }
}
