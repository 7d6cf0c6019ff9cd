//! The last finished run, read from the Jobs the CronJob made and their pods'
//! termination messages. Pure: the Jobs and pods are passed in, already listed.

use entrepot_api::reconcile_summary::{ReconcileFailure, ReconcileSummary};
use k8s_openapi::{
    api::{batch::v1::Job, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::Time,
};

use super::build::CONTAINER;
use crate::resources::LastRun;

/// The label Kubernetes puts on a Job's pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The older spelling, still set alongside it.
const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Whether a Job finished, and how: `Some(true)` complete, `Some(false)` failed.
fn finished(job: &Job) -> Option<bool> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is = |type_: &str| conditions.iter().any(|c| c.type_ == type_ && c.status == "True");
    if is("Complete") {
        Some(true)
    } else if is("Failed") {
        Some(false)
    } else {
        None
    }
}

/// When a finished Job finished: its completion time, else its last condition's
/// transition (a failed Job has no completion time).
fn finished_at(job: &Job) -> Option<Time> {
    let status = job.status.as_ref()?;
    status.completion_time.clone().or_else(|| {
        status.conditions.as_ref()?.iter().filter_map(|c| c.last_transition_time.clone()).max_by_key(|t| t.0)
    })
}

/// The most recently finished of `jobs`, with what its pod reported.
pub fn last_finished(jobs: &[Job], pods: &[Pod]) -> Option<LastRun> {
    let (job, succeeded) = jobs
        .iter()
        .filter_map(|j| finished(j).map(|ok| (j, ok)))
        .max_by_key(|(j, _)| (finished_at(j).map(|t| t.0), j.metadata.creation_timestamp.clone().map(|t| t.0)))?;
    let name = job.metadata.name.clone().unwrap_or_default();
    let message = pods
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            labels.and_then(|l| l.get(JOB_NAME_LABEL).or_else(|| l.get(LEGACY_JOB_NAME_LABEL))) == Some(&name)
        })
        .filter_map(termination_message)
        .next_back();
    let (summary, error) = match message.as_deref().map(read_message) {
        Some(Message::Summary(s)) => (Some(*s), None),
        Some(Message::Failure(e)) => (None, Some(e)),
        None if succeeded => (None, None),
        None => (None, Some(job_failure(job))),
    };
    Some(LastRun {
        job: name,
        // A pod that printed a summary ran; a Job marked complete without one did too.
        succeeded: succeeded && error.is_none(),
        start_time: job.status.as_ref().and_then(|s| s.start_time.clone()),
        completion_time: finished_at(job),
        summary,
        error,
    })
}

/// The run container's termination message, once it has terminated.
fn termination_message(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let status = statuses.iter().find(|s| s.name == CONTAINER)?;
    let terminated = status.state.as_ref()?.terminated.as_ref()?;
    terminated.message.clone().filter(|m| !m.trim().is_empty())
}

enum Message {
    Summary(Box<ReconcileSummary>),
    Failure(String),
}

/// A summary, a `{"error": ...}`, or (`FallbackToLogsOnError`) the log's tail.
fn read_message(text: &str) -> Message {
    if let Ok(summary) = serde_json::from_str::<ReconcileSummary>(text.trim()) {
        return Message::Summary(Box::new(summary));
    }
    match serde_json::from_str::<ReconcileFailure>(text.trim()) {
        Ok(failure) => Message::Failure(failure.error),
        Err(_) => Message::Failure(text.trim().chars().take(1024).collect()),
    }
}

/// Why a Job failed, from its `Failed` condition.
fn job_failure(job: &Job) -> String {
    let condition =
        job.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Failed"));
    match condition {
        Some(c) => format!("Job failed: {} {}", c.reason.as_deref().unwrap_or(""), c.message.as_deref().unwrap_or(""))
            .trim()
            .to_string(),
        None => "Job failed".into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::{
        api::{
            batch::v1::{JobCondition, JobStatus},
            core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus},
        },
        jiff::Timestamp,
    };

    use super::*;

    pub(crate) fn job(name: &str, condition: &str, at: i64) -> Job {
        let time = Time(Timestamp::from_second(at).unwrap());
        let mut job = Job::default();
        job.metadata.name = Some(name.into());
        job.status = Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: condition.into(),
                status: "True".into(),
                last_transition_time: Some(time.clone()),
                reason: Some("BackoffLimitExceeded".into()),
                message: Some("Job has reached the specified backoff limit".into()),
                ..JobCondition::default()
            }]),
            completion_time: (condition == "Complete").then_some(time),
            ..JobStatus::default()
        });
        job
    }

    pub(crate) fn pod(job: &str, message: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.labels = Some([(JOB_NAME_LABEL.to_string(), job.to_string())].into());
        pod.status = Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: CONTAINER.into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated { message: Some(message.into()), ..Default::default() }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    #[test]
    fn the_latest_finished_job_and_its_summary_are_the_last_run() {
        let summary = ReconcileSummary { schedule: "s".into(), missing_in_target: 2, ..Default::default() };
        let jobs = [job("s-1", "Complete", 100), job("s-2", "Complete", 200), Job::default()];
        let pods = [pod("s-1", "{}"), pod("s-2", &summary.to_line())];
        let run = last_finished(&jobs, &pods).unwrap();
        assert_eq!((run.job.as_str(), run.succeeded), ("s-2", true));
        assert_eq!(run.summary, Some(summary));
        assert_eq!(run.completion_time.unwrap().0.as_second(), 200);
        assert_eq!(last_finished(&[Job::default()], &[]), None);
    }

    #[test]
    fn a_failed_run_says_why_from_its_message_its_log_or_its_job() {
        let jobs = [job("s-3", "Failed", 300)];
        let run = last_finished(&jobs, &[pod("s-3", r#"{"error":"listing spec.source: connect failed"}"#)]).unwrap();
        assert_eq!((run.succeeded, run.error.as_deref()), (false, Some("listing spec.source: connect failed")));
        let run = last_finished(&jobs, &[pod("s-3", "thread 'main' panicked")]).unwrap();
        assert_eq!(run.error.as_deref(), Some("thread 'main' panicked"));
        let run = last_finished(&jobs, &[]).unwrap();
        assert_eq!(
            run.error.as_deref(),
            Some("Job failed: BackoffLimitExceeded Job has reached the specified backoff limit")
        );
        assert_eq!(run.completion_time.unwrap().0.as_second(), 300);
    }
}
