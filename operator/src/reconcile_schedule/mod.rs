//! The ReconcileSchedule controller: each ReconcileSchedule becomes a CronJob running
//! `entrepot reconcile` against its SyncFlow, and the last run's summary and the next
//! run time come back into its status.
//!
//! A reconcile runs in five steps: dereference (the SyncFlow and what it references)
//! → validate (pure) → build (pure: the CronJob) → apply (server-side apply) → status
//! (from the CronJob, its Jobs and their pods' termination messages). A schedule that
//! cannot be run is marked `Stalled` and its CronJob is left as it was. A finished run
//! that found drift is also an Event (`DriftFound`) on the schedule; a run that could
//! not finish is one too (`RunFailed`).
//!
//! RBAC the controller needs: `reconcileschedules` get/list/watch and
//! `reconcileschedules/status` get/patch; `syncflows`, `connectors`, `mappings`
//! get/list/watch; `batch` `cronjobs` get/list/watch/create/patch; `batch` `jobs`
//! get/list/watch; `pods` get/list; `events.k8s.io` `events` create/patch.

pub mod build;
pub mod drift_series;
pub mod runs;
pub mod status;
pub mod validate;

#[cfg(test)]
mod controller_tests;

use std::{
    future::Future,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        batch::v1::{CronJob, Job},
        core::v1::Pod,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::ListParams,
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::Action,
        events::Recorder,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tracing::info;

use self::{
    build::SCHEDULE_LABEL,
    status::Outcome,
    validate::{FlowRef, Invalid},
};
use crate::{
    error::Error,
    events::{self, Notice},
    failures::Failures,
    kube_io::{
        self,
        objects::{ApiScope, apply, get_guarded, kube_error},
    },
    metrics::Metrics,
    resources::{LastRun, ReconcileSchedule, ReconcileScheduleStatus, SyncFlow, conditions},
    sync_flow::{build::RunnerDefaults, dereference, validate::References},
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "reconcileschedule";
/// How often a schedule is looked at again even if nothing changed, at most; sooner
/// when its next run is due before.
pub const RESYNC: Duration = Duration::from_secs(300);
/// `app.kubernetes.io/name` of the CronJobs, Jobs and pods of every schedule; the
/// controller's watches select on it.
const APP_NAME: &str = "entrepot-reconcile";

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The runner image for flows that name none.
    pub defaults: RunnerDefaults,
    /// Reconcile counters.
    pub metrics: Metrics,
    /// Set once the ReconcileSchedule cache has been filled.
    pub ready: Arc<AtomicBool>,
    recorder: Recorder,
    failures: Failures<DeserializeGuard<ReconcileSchedule>>,
}

impl Context {
    /// A context for a controller that talks to the API through `client`; Events are
    /// published as reporter `entrepot-operator`.
    pub fn new(client: Client, defaults: RunnerDefaults, metrics: Metrics) -> Self {
        Self {
            recorder: events::recorder(client.clone()),
            client,
            defaults,
            metrics,
            ready: Arc::default(),
            failures: Failures::default(),
        }
    }
}

/// Runs the ReconcileSchedule controller until `shutdown` completes; then finishes the
/// reconciles in flight and returns. `namespace` limits it to one namespace.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let scope = ApiScope(ctx.client.clone(), namespace.map(str::to_string));
    let children = watcher::Config::default().labels(&format!("app.kubernetes.io/name={APP_NAME}"));
    let controller = Controller::new(scope.api::<DeserializeGuard<ReconcileSchedule>>(), watcher::Config::default());
    let schedules = controller.store();
    let ready = ctx.ready.clone();
    let ready_store = schedules.clone();
    tokio::spawn(async move {
        // See sync_flow::run: the store wakes only its last waiter, so ask again now and then.
        while tokio::time::timeout(Duration::from_millis(250), ready_store.wait_until_ready()).await.is_err() {}
        ready.store(true, Ordering::Relaxed);
    });
    let controller = controller
        .owns(scope.api::<CronJob>(), children.clone())
        // A Job finishing is a run to report; Jobs belong to the CronJob, so they are
        // mapped to their schedule by label.
        .watches(scope.api::<Job>(), children, |job| {
            let name = job.labels().get(SCHEDULE_LABEL)?.clone();
            Some(ObjectRef::new(&name).within(job.namespace().as_deref()?))
        })
        // A schedule waiting for its SyncFlow goes on as soon as it appears or changes.
        .watches(scope.api::<DeserializeGuard<SyncFlow>>(), watcher::Config::default(), move |flow| {
            naming(&schedules, &flow)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    // Dropped once the controller has finished.
    let forget_deleted = drift_series::forget_deleted(scope.api(), ctx.metrics.clone());
    futures::future::select(pin!(controller), pin!(forget_deleted)).await;
}

/// The schedules in `flow`'s namespace that name it.
fn naming(
    schedules: &Store<DeserializeGuard<ReconcileSchedule>>,
    flow: &DeserializeGuard<SyncFlow>,
) -> Vec<ObjectRef<DeserializeGuard<ReconcileSchedule>>> {
    let (Some(name), namespace) = (flow.meta().name.as_deref(), flow.meta().namespace.as_deref()) else {
        return Vec::new();
    };
    schedules
        .state()
        .iter()
        .filter(|guard| guard.meta().namespace.as_deref() == namespace)
        .filter(|guard| guard.0.as_ref().is_ok_and(|s| s.spec.sync_flow_ref == name))
        .map(|guard| ObjectRef::from_obj(guard.as_ref()))
        .collect()
}

async fn reconcile(guard: Arc<DeserializeGuard<ReconcileSchedule>>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.failures.run(&ctx.metrics, CONTROLLER, &guard, reconcile_schedule(&guard, &ctx)).await
}

#[tracing::instrument(skip_all, fields(namespace = guard.meta().namespace, schedule = guard.meta().name))]
async fn reconcile_schedule(guard: &DeserializeGuard<ReconcileSchedule>, ctx: &Context) -> Result<Action, Error> {
    let namespace = guard.meta().namespace.clone().unwrap_or_default();
    let name = guard.name_any();
    let generation = guard.meta().generation.unwrap_or_default();
    let schedule = match &guard.0 {
        Ok(schedule) => schedule,
        Err(unreadable) => {
            let invalid = Invalid::UnreadableSpec { schedule: name.clone(), error: unreadable.error.clone() };
            update_status(ctx, &namespace, &name, generation, &Outcome::Stalled(&invalid), None).await?;
            return Err(invalid.into());
        }
    };

    // The drift series of a flow the schedule no longer names go, even if it stalls.
    ctx.metrics.schedule_compares(&namespace, &name, &schedule.spec.sync_flow_ref);
    // 1. Dereference.
    let (flow, refs) = dereference_flow(&ctx.client, &namespace, &schedule.spec.sync_flow_ref).await?;
    // 2. Validate.
    let valid = match validate::validate(&name, &namespace, &schedule.spec, &flow, &refs) {
        Ok(valid) => valid,
        Err(invalid) => {
            // Stalled: the CronJob stays as it is.
            update_status(ctx, &namespace, &name, generation, &Outcome::Stalled(&invalid), Some(schedule)).await?;
            return Err(invalid.into());
        }
    };
    // 3. Build.
    let desired = build::cron_job(schedule, &valid.flow, &ctx.defaults)?;
    // 4. Apply; the answer is the CronJob as the API holds it, status included.
    let cron_job = apply(&ctx.client, &namespace, &desired).await?;
    // 5. Status.
    let last_run = last_run(&ctx.client, &namespace, &name).await?;
    // A last run of the flow the schedule named before is no longer its drift to report.
    let summary = last_run.as_ref().and_then(|run| run.summary.as_ref());
    if let Some(summary) = summary.filter(|s| s.flow == schedule.spec.sync_flow_ref) {
        ctx.metrics.reconcile_drift(&namespace, &name, summary);
    }
    let now = Timestamp::now();
    let suspended = schedule.spec.suspend;
    let next_run_time = (!suspended).then(|| validate::next_run(&valid.cron, &valid.time_zone, now)).flatten();
    let outcome = Outcome::Applied {
        cron_job: cron_job.name_any(),
        last_schedule_time: cron_job.status.as_ref().and_then(|s| s.last_schedule_time.clone()),
        next_run_time,
        last_run: last_run.map(Box::new),
        suspended,
    };
    update_status(ctx, &namespace, &name, generation, &outcome, Some(schedule)).await?;
    // Look again shortly after the next run is due, to report it.
    let until_next = next_run_time.map(|t| Duration::try_from(t.duration_since(now)).unwrap_or_default());
    Ok(Action::requeue(until_next.map_or(RESYNC, |d| (d + Duration::from_secs(5)).min(RESYNC))))
}

/// The SyncFlow `name` of `namespace` (absent, unreadable, or its spec) and what it
/// references.
async fn dereference_flow(client: &Client, namespace: &str, name: &str) -> Result<(FlowRef, References), Error> {
    let Some(guard) = get_guarded::<SyncFlow>(client, namespace, name).await? else {
        return Ok((None, References::default()));
    };
    match guard.0 {
        Ok(flow) => {
            let refs = dereference::references(client, namespace, &flow).await?;
            Ok((Some(Ok(flow.spec.0)), refs))
        }
        Err(e) => Ok((Some(Err(e.error)), References::default())),
    }
}

/// The last finished run among the Jobs of schedule `name`.
async fn last_run(client: &Client, namespace: &str, name: &str) -> Result<Option<LastRun>, Error> {
    let selector = ListParams::default().labels(&format!("{SCHEDULE_LABEL}={name}"));
    let jobs = Api::<Job>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await
        .map_err(|source| kube_error::<Job>("list", namespace, name, source))?;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await
        .map_err(|source| kube_error::<Pod>("list", namespace, name, source))?;
    Ok(runs::last_finished(&jobs.items, &pods.items))
}

/// Merges `outcome` into the schedule's status and writes it unless that changes
/// nothing; a newly finished run with drift, or one that failed, is also an Event.
async fn update_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    generation: i64,
    outcome: &Outcome<'_>,
    schedule: Option<&ReconcileSchedule>,
) -> Result<(), Error> {
    let previous =
        kube_io::status::read::<ReconcileSchedule, ReconcileScheduleStatus>(&ctx.client, namespace, name).await?;
    let status = status::desired_status(&previous, generation, outcome, Timestamp::now());
    if status == previous {
        return Ok(());
    }
    kube_io::status::write::<ReconcileSchedule, _>(&ctx.client, namespace, name, &status).await?;
    info!(ready = conditions::is_true(&status.conditions, conditions::READY), "status updated");
    if let (Some(schedule), Some(run)) = (schedule, &status.last_run)
        && previous.last_run.as_ref().is_none_or(|before| before.job != run.job)
        && let Some(notice) = run_event(run)
    {
        events::publish(&ctx.recorder, &notice, schedule).await;
    }
    Ok(())
}

/// The Event for a newly finished run: `DriftFound` when it found drift, `RunFailed`
/// when it could not run; none for a clean run.
pub fn run_event(run: &LastRun) -> Option<Notice> {
    let (reason, note) = match (&run.summary, &run.error) {
        (_, Some(error)) if !run.succeeded => ("RunFailed", format!("reconcile run {} failed: {error}", run.job)),
        (Some(s), _) if s.drift() > 0 => (
            "DriftFound",
            format!(
                "reconcile drift found by run {}: {} missing in target, {} missing in source, {} mismatched of {} compared; {} repaired",
                run.job, s.missing_in_target, s.missing_in_source, s.mismatched, s.compared, s.repaired
            ),
        ),
        _ => return None,
    };
    Some(Notice { warning: true, reason, action: "Reconcile", note })
}

fn error_policy(guard: Arc<DeserializeGuard<ReconcileSchedule>>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.failures.failed(CONTROLLER, &guard, error)
}
