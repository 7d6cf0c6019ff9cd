//! The status a reconcile leads to, as a pure function of the previous status and what
//! the reconcile found.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::validate::Invalid;
use crate::resources::{
    LastRun, ReconcileScheduleStatus,
    conditions::{self, Desired, STALLED},
};

/// What a reconcile found.
#[derive(Clone, Debug)]
pub enum Outcome<'a> {
    /// The schedule cannot be run; its CronJob is left as it was.
    Stalled(&'a Invalid),
    /// The CronJob is applied.
    Applied {
        /// Its name.
        cron_job: String,
        /// When it last started a run.
        last_schedule_time: Option<Time>,
        /// When the next run is due (none while suspended).
        next_run_time: Option<Timestamp>,
        /// The last finished run, if any.
        last_run: Option<Box<LastRun>>,
        /// Whether new runs are suspended.
        suspended: bool,
    },
}

/// The status after `outcome`, merged into `previous` (conditions keep their
/// transition times when they do not flip). A stalled schedule keeps what it knew of
/// its runs.
pub fn desired_status(
    previous: &ReconcileScheduleStatus,
    generation: i64,
    outcome: &Outcome<'_>,
    now: Timestamp,
) -> ReconcileScheduleStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    let desired = match outcome {
        Outcome::Stalled(invalid) => conditions::stalled(invalid.reason(), invalid.to_string()),
        Outcome::Applied { cron_job, last_schedule_time, next_run_time, last_run, suspended } => {
            status.cron_job = Some(cron_job.clone());
            status.last_schedule_time = last_schedule_time.clone().or(status.last_schedule_time);
            status.next_run_time = next_run_time.map(|t| Time(Timestamp::from_second(t.as_second()).unwrap_or(t)));
            if let Some(run) = last_run {
                status.last_run = Some(run.as_ref().clone());
            }
            let next = match (suspended, next_run_time) {
                (true, _) => "suspended: no run is scheduled".to_string(),
                (false, Some(t)) => format!("next run at {t}"),
                (false, None) => "the schedule has no next run".to_string(),
            };
            let resolved = Desired::no(STALLED, "Resolved", "the SyncFlow and every field are valid");
            let (ready, reason, message) = match &status.last_run {
                Some(run) if !run.succeeded => (
                    false,
                    "LastRunFailed",
                    format!("run {} failed: {}; {next}", run.job, run.error.as_deref().unwrap_or("no reason given")),
                ),
                Some(run) => {
                    let drift = run.summary.as_ref().map_or(0, |s| s.drift());
                    (
                        true,
                        if *suspended { "Suspended" } else { "Scheduled" },
                        format!("run {} found {drift} drifted record(s); {next}", run.job),
                    )
                }
                None => {
                    (true, if *suspended { "Suspended" } else { "Scheduled" }, format!("CronJob {cron_job}: {next}"))
                }
            };
            let [ready, reconciling] = conditions::settled(ready, reason, message);
            vec![ready, reconciling, resolved]
        }
    };
    status.conditions = conditions::merge(&previous.conditions, &desired, generation, now);
    status
}

#[cfg(test)]
mod tests {
    use entrepot_api::reconcile_summary::ReconcileSummary;

    use super::*;
    use crate::resources::conditions::{READY, RECONCILING, find, is_true};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn applied(last_run: Option<LastRun>) -> Outcome<'static> {
        Outcome::Applied {
            cron_job: "orders-reconcile".into(),
            last_schedule_time: None,
            next_run_time: Some(at(3600)),
            last_run: last_run.map(Box::new),
            suspended: false,
        }
    }

    fn run(succeeded: bool) -> LastRun {
        LastRun {
            job: "orders-reconcile-1".into(),
            succeeded,
            start_time: None,
            completion_time: None,
            summary: succeeded.then(|| ReconcileSummary { mismatched: 2, ..Default::default() }),
            error: (!succeeded).then(|| "listing spec.source: connect failed".into()),
        }
    }

    #[test]
    fn a_scheduled_schedule_is_ready_and_says_when_it_runs_next() {
        let status = desired_status(&ReconcileScheduleStatus::default(), 2, &applied(None), at(10));
        assert_eq!((status.observed_generation, status.cron_job.as_deref()), (2, Some("orders-reconcile")));
        assert_eq!(status.next_run_time, Some(Time(at(3600))));
        assert!(is_true(&status.conditions, READY));
        assert!(!is_true(&status.conditions, STALLED) && !is_true(&status.conditions, RECONCILING));
        // The same again changes nothing.
        assert_eq!(desired_status(&status, 2, &applied(None), at(20)), status);
    }

    #[test]
    fn drift_is_ready_a_failed_run_is_not_and_a_stall_keeps_the_last_run() {
        let drifted = desired_status(&ReconcileScheduleStatus::default(), 1, &applied(Some(run(true))), at(10));
        assert!(is_true(&drifted.conditions, READY));
        assert!(find(&drifted.conditions, READY).unwrap().message.contains("found 2 drifted"));
        let failed = desired_status(&drifted, 1, &applied(Some(run(false))), at(20));
        let ready = find(&failed.conditions, READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "LastRunFailed"));
        assert!(ready.message.contains("connect failed"), "{}", ready.message);
        // No run finished since: the last one is kept.
        assert_eq!(desired_status(&failed, 1, &applied(None), at(30)).last_run, failed.last_run);

        let invalid = Invalid::SyncFlowNotFound { schedule: "s".into(), flow: "f".into(), namespace: "n".into() };
        let stalled = desired_status(&failed, 2, &Outcome::Stalled(&invalid), at(40));
        assert!(is_true(&stalled.conditions, STALLED));
        assert_eq!(find(&stalled.conditions, READY).unwrap().reason, "SyncFlowNotFound");
        assert_eq!((stalled.last_run, stalled.cron_job), (failed.last_run, failed.cron_job));
    }
}
