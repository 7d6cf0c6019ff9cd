//! The ReconcileSchedule controller running against the in-memory API of
//! [`crate::test_support::fake_api`] (no kube-apiserver can be installed here). What the
//! CronJob controller and the kubelet would do (start a Job, run its pod, write the
//! termination message) the tests do by hand.

use std::sync::Arc;

use entrepot_api::reconcile_summary::ReconcileSummary;
use k8s_openapi::api::{
    batch::v1::{CronJob, Job},
    core::v1::Pod,
    events::v1::Event,
};
use kube::{
    Api, Resource,
    api::{DeleteParams, Patch},
};

use super::{CONTROLLER, Context, build::SCHEDULE_LABEL, run, runs};
use crate::{
    error::Category,
    metrics::Metrics,
    resources::{
        Connector, Mapping, ReconcileSchedule, ReconcileScheduleStatus, SyncFlow,
        conditions::{READY, STALLED, find},
    },
    sync_flow::build::RunnerDefaults,
    test_support::{Running, create, eventually, fake_api::FakeCluster, fixtures, install_crypto_provider},
};

const NS: &str = "retail";
const CRON_JOB: &str = "orders-hourly-reconcile";

struct Harness {
    cluster: FakeCluster,
    ctx: Arc<Context>,
    _controller: Running,
}

impl Harness {
    async fn start() -> Self {
        install_crypto_provider();
        let cluster = FakeCluster::new().await;
        let defaults = RunnerDefaults::with_image("ghcr.io/entrepot-io/entrepot:test");
        let ctx = Arc::new(Context::new(cluster.client.clone(), defaults, Metrics::new()));
        let controller = Running::start({
            let ctx = ctx.clone();
            move |shutdown| run(ctx, None, shutdown)
        });
        Self { cluster, ctx, _controller: controller }
    }

    fn api<K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>>(&self) -> Api<K> {
        Api::namespaced(self.cluster.client.clone(), NS)
    }

    async fn create<K>(&self, mut object: K)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        object.meta_mut().namespace = Some(NS.into());
        create(&self.cluster.client, object).await;
    }

    /// The schedule, and with `flow` its SyncFlow with what that references.
    async fn create_schedule(&self, flow: bool) {
        let f = fixtures::reconcile();
        if flow {
            for c in &f.connectors {
                self.create::<Connector>(c.clone()).await;
            }
            for m in &f.mappings {
                self.create::<Mapping>(m.clone()).await;
            }
            self.create::<SyncFlow>(f.flow().clone()).await;
        }
        self.create::<ReconcileSchedule>(f.schedules[0].clone()).await;
    }

    async fn status_when(
        &self,
        what: &str,
        check: impl Fn(&ReconcileScheduleStatus) -> bool,
    ) -> ReconcileScheduleStatus {
        eventually(what, || async {
            self.api::<ReconcileSchedule>().get("orders-hourly").await.ok()?.status.filter(|s| check(s))
        })
        .await
    }

    /// What the CronJob controller and the kubelet do for one run that finished with
    /// `message` as its termination message.
    async fn run_finished(&self, job: &str, at: i64, message: &str) {
        let mut j = runs::tests::job(job, "Complete", at);
        j.metadata.labels = Some([(SCHEDULE_LABEL.to_string(), "orders-hourly".to_string())].into());
        self.create::<Job>(j).await;
        let mut p = runs::tests::pod(job, message);
        p.metadata.name = Some(format!("{job}-pod"));
        p.metadata.labels.get_or_insert_default().insert(SCHEDULE_LABEL.into(), "orders-hourly".into());
        self.create::<Pod>(p).await;
    }

    /// A run that found two records missing in the target has finished, and the
    /// operator serves its drift series.
    async fn drift_reported(&self) {
        let summary = ReconcileSummary {
            schedule: "orders-hourly".into(),
            flow: "orders".into(),
            compared: 3,
            matched: 1,
            missing_in_target: 2,
            ..Default::default()
        };
        self.run_finished("orders-hourly-reconcile-29000000", 1_800_000_000, &summary.to_line()).await;
        let series = eventually("the drift series", || async {
            let series = self.drift_series();
            (series.len() == 3).then_some(series)
        })
        .await;
        let missing = r#"flow="orders",kind="missing_in_target",namespace="retail",schedule="orders-hourly"} 2"#;
        assert!(series.iter().any(|l| l.ends_with(missing)), "{series:?}");
    }

    /// The `entrepot_reconcile_drift_records` series of the schedule, as `/metrics` has them.
    fn drift_series(&self) -> Vec<String> {
        self.ctx
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("entrepot_reconcile_drift_records{") && l.contains(r#"schedule="orders-hourly""#))
            .map(str::to_string)
            .collect()
    }

    async fn point_schedule_at(&self, flow: &str) {
        let patch = serde_json::json!({"spec": {"syncFlowRef": flow}});
        self.api::<ReconcileSchedule>()
            .patch("orders-hourly", &Default::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }
}

fn reason(status: &ReconcileScheduleStatus, type_: &str) -> (String, String) {
    let c = find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_} in {status:?}"));
    (c.status.clone(), c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_becomes_a_cron_job_and_its_last_run_comes_back_with_an_event() {
    let h = Harness::start().await;
    h.create_schedule(true).await;
    let status = h.status_when("Ready", |s| find(&s.conditions, READY).is_some()).await;
    assert_eq!(reason(&status, READY), ("True".into(), "Scheduled".into()));
    assert_eq!(reason(&status, STALLED), ("False".into(), "Resolved".into()));
    assert_eq!((status.observed_generation, status.cron_job.as_deref()), (1, Some(CRON_JOB)));
    let next = status.next_run_time.clone().expect("a next run time").0;
    assert_eq!(next.as_second() % 3600, 0, "hourly runs start on the hour (Paris is a whole hour off UTC)");
    let cron = h.api::<CronJob>().get(CRON_JOB).await.unwrap();
    assert_eq!(cron.metadata.owner_references.unwrap()[0].kind, "ReconcileSchedule");

    let summary = entrepot_api::reconcile_summary::ReconcileSummary {
        schedule: "orders-hourly".into(),
        flow: "orders".into(),
        compared: 5,
        matched: 2,
        missing_in_target: 2,
        mismatched: 1,
        ..Default::default()
    };
    h.run_finished("orders-hourly-reconcile-29000000", 1_800_000_000, &summary.to_line()).await;
    let status = h.status_when("the last run", |s| s.last_run.is_some()).await;
    let run = status.last_run.clone().unwrap();
    assert_eq!((run.job.as_str(), run.succeeded), ("orders-hourly-reconcile-29000000", true));
    assert_eq!(run.summary, Some(summary));
    assert!(find(&status.conditions, READY).unwrap().message.contains("found 3 drifted"));
    let event = eventually("the DriftFound event", || async {
        h.api::<Event>()
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("DriftFound"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event.note.unwrap().contains("2 missing in target"));
    assert_eq!(event.regarding.unwrap().name.as_deref(), Some("orders-hourly"));

    // A failed run after it: not Ready, with the reason.
    h.run_finished("orders-hourly-reconcile-29000060", 1_800_003_600, r#"{"error":"listing spec.target: 503"}"#).await;
    let status = h.status_when("the failed run", |s| s.last_run.as_ref().is_some_and(|r| !r.succeeded)).await;
    assert_eq!(reason(&status, READY), ("False".into(), "LastRunFailed".into()));
    assert!(find(&status.conditions, READY).unwrap().message.contains("listing spec.target: 503"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_flow_stalls_the_schedule_and_keeps_its_cron_job() {
    let h = Harness::start().await;
    h.create_schedule(false).await;
    let status = h.status_when("Stalled", |s| find(&s.conditions, STALLED).is_some()).await;
    assert_eq!(reason(&status, STALLED), ("True".into(), "SyncFlowNotFound".into()));
    assert!(find(&status.conditions, STALLED).unwrap().message.contains("spec.syncFlowRef"));
    assert!(h.api::<CronJob>().get_opt(CRON_JOB).await.unwrap().is_none());
    eventually("the second failed reconcile", || async {
        (h.ctx.metrics.failures(CONTROLLER, Category::ReferenceMissing) >= 2).then_some(())
    })
    .await;

    // The flow appears: its watch wakes the schedule.
    let f = fixtures::reconcile();
    for c in &f.connectors {
        h.create::<Connector>(c.clone()).await;
    }
    for m in &f.mappings {
        h.create::<Mapping>(m.clone()).await;
    }
    h.create::<SyncFlow>(f.flow().clone()).await;
    h.status_when("Resolved", |s| find(&s.conditions, STALLED).is_some_and(|c| c.status == "False")).await;
    let cron = h.api::<CronJob>().get(CRON_JOB).await.unwrap();

    // The flow goes away again: Stalled, and the CronJob stays as it was.
    h.api::<SyncFlow>().delete("orders", &DeleteParams::default()).await.unwrap();
    h.status_when("Stalled again", |s| find(&s.conditions, STALLED).is_some_and(|c| c.status == "True")).await;
    let after = h.api::<CronJob>().get(CRON_JOB).await.unwrap();
    assert_eq!(after.metadata.resource_version, cron.metadata.resource_version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_reconcile_changes_nothing() {
    let h = Harness::start().await;
    h.create_schedule(true).await;
    h.status_when("Ready", |s| find(&s.conditions, READY).is_some()).await;
    eventually("the first reconcile to finish", || async { (h.ctx.metrics.reconciles(CONTROLLER) >= 2).then_some(()) })
        .await;
    let before = h.api::<ReconcileSchedule>().get("orders-hourly").await.unwrap();
    let cron_before = h.api::<CronJob>().get(CRON_JOB).await.unwrap();
    let (writes, reconciles) = (h.cluster.writes(), h.ctx.metrics.reconciles(CONTROLLER));

    // A touch of the flow wakes the schedule through its watch.
    let touch = serde_json::json!({"metadata": {"annotations": {"example.com/touched": "yes"}}});
    h.api::<SyncFlow>().patch("orders", &Default::default(), &kube::api::Patch::Merge(touch)).await.unwrap();
    eventually("another reconcile", || async { (h.ctx.metrics.reconciles(CONTROLLER) > reconciles).then_some(()) })
        .await;

    assert_eq!(h.cluster.writes(), writes + 1, "only the test's own patch was written");
    let after = h.api::<ReconcileSchedule>().get("orders-hourly").await.unwrap();
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version);
    let cron_after = h.api::<CronJob>().get(CRON_JOB).await.unwrap();
    assert_eq!(cron_after.metadata.resource_version, cron_before.metadata.resource_version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_schedule_leaves_no_drift_series_behind() {
    let h = Harness::start().await;
    h.create_schedule(true).await;
    h.drift_reported().await;
    h.api::<ReconcileSchedule>().delete("orders-hourly", &DeleteParams::default()).await.unwrap();
    eventually("the drift series removed", || async { h.drift_series().is_empty().then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_pointed_at_another_flow_drops_the_old_flows_drift_series() {
    let h = Harness::start().await;
    h.create_schedule(true).await;
    h.drift_reported().await;
    // No such flow: the schedule stalls, and the old flow's drift goes all the same.
    h.point_schedule_at("orders-v2").await;
    eventually("the old flow's series removed", || async { h.drift_series().is_empty().then_some(()) }).await;
    h.status_when("Stalled", |s| find(&s.conditions, STALLED).is_some_and(|c| c.status == "True")).await;
    // Back to the flow its last run compared: that run's drift is the schedule's again.
    h.point_schedule_at("orders").await;
    eventually("the series back", || async { (h.drift_series().len() == 3).then_some(()) }).await;
}
