//! The real kube-runtime `Controller` (watches, owner references, error policy and
//! all) running against the in-memory API of [`crate::test_support::fake_api`], which
//! stands in for a kube-apiserver that cannot be installed here. Assertions are on
//! the end state the API holds, as `kubectl` would show it.

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    batch::v1::CronJob,
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Resource,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::json;

use super::{CONTROLLER, Context, build::RunnerDefaults, run, runner_status::RunnerStatusReader};
use crate::{
    error::Category,
    metrics::Metrics,
    resources::{
        Connector, Mapping, SyncFlow, SyncFlowStatus,
        conditions::{READY, RECONCILING, STALLED, find},
    },
    test_support::{Running, eventually, fake_api::FakeCluster, fixtures, install_crypto_provider},
};

const NS: &str = "retail";

/// A controller running against a fresh in-memory API.
struct Harness {
    cluster: FakeCluster,
    ctx: Arc<Context>,
    _controller: Running,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(RunnerStatusReader::default()).await
    }

    /// A controller that reads every runner pod's status from `reader`.
    async fn start_with(reader: RunnerStatusReader) -> Self {
        Self::start_configured(reader, RunnerDefaults::with_image("ghcr.io/entrepot-io/entrepot:test")).await
    }

    /// A controller with the chart's `defaults`, reading runner status from `reader`.
    async fn start_configured(reader: RunnerStatusReader, defaults: RunnerDefaults) -> Self {
        install_crypto_provider();
        let cluster = FakeCluster::new().await;
        let ctx = Arc::new(Context::with_runner_status(cluster.client.clone(), defaults, Metrics::new(), reader));
        let controller = Running::start({
            let ctx = ctx.clone();
            move |shutdown| run(ctx, None, shutdown)
        });
        Self { cluster, ctx, _controller: controller }
    }

    fn api<K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>>(&self) -> Api<K> {
        Api::namespaced(self.cluster.client.clone(), NS)
    }

    /// Creates the fixture's Connectors (all but `skip`), Mappings and SyncFlow, as a
    /// user applying them would; returns the flow as created.
    async fn create_orders(&self, skip_connector: Option<&str>) -> SyncFlow {
        let f = fixtures::orders();
        for c in f.connectors.iter().filter(|c| c.metadata.name.as_deref() != skip_connector) {
            self.create::<Connector>(c.clone()).await;
        }
        for m in &f.mappings {
            self.create::<Mapping>(m.clone()).await;
        }
        self.create::<SyncFlow>(f.flow().clone()).await
    }

    async fn create<K>(&self, object: K) -> K
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        crate::test_support::create(&self.cluster.client, object).await
    }

    async fn flow_status(&self, name: &str) -> Option<SyncFlowStatus> {
        self.api::<SyncFlow>().get(name).await.ok()?.status
    }

    /// The flow's status once the operator has acted on `generation` and `check` holds.
    async fn status_when(
        &self,
        generation: i64,
        what: &str,
        check: impl Fn(&SyncFlowStatus) -> bool,
    ) -> SyncFlowStatus {
        eventually(what, || async {
            self.flow_status("orders").await.filter(|s| s.observed_generation == generation && check(s))
        })
        .await
    }

    async fn children(&self) -> (Option<ConfigMap>, Option<StatefulSet>, Option<Service>) {
        let name = "orders-runner";
        (
            self.api::<ConfigMap>().get_opt(name).await.unwrap(),
            self.api::<StatefulSet>().get_opt(name).await.unwrap(),
            self.api::<Service>().get_opt(name).await.unwrap(),
        )
    }

    /// What the StatefulSet controller would report once every runner pod is up.
    async fn runner_pods_become_available(&self) {
        let api = self.api::<StatefulSet>();
        let stateful_set = api.get("orders-runner").await.unwrap();
        let replicas = stateful_set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = json!({"status": {
            "observedGeneration": stateful_set.metadata.generation,
            "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
        }});
        api.patch_status("orders-runner", &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    }
}

fn condition(status: &SyncFlowStatus, type_: &str) -> (String, String) {
    let c = find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_} condition in {status:?}"));
    (c.status.clone(), c.reason.clone())
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}

fn resource_versions(children: &(Option<ConfigMap>, Option<StatefulSet>, Option<Service>)) -> [Option<String>; 3] {
    [
        children.0.as_ref().and_then(|c| c.metadata.resource_version.clone()),
        children.1.as_ref().and_then(|c| c.metadata.resource_version.clone()),
        children.2.as_ref().and_then(|c| c.metadata.resource_version.clone()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_becomes_an_owned_runner_and_ready_once_its_pods_are() {
    let h = Harness::start().await;
    let flow = h.create_orders(None).await;
    let uid = flow.metadata.uid.clone().unwrap();

    let status = h.status_when(1, "the first status", |s| find(&s.conditions, READY).is_some()).await;
    // The StatefulSet exists but no pod is available: Ready must not claim otherwise.
    assert_eq!(condition(&status, READY), pair("False", "RunnerNotAvailable"));
    assert_eq!(condition(&status, RECONCILING), pair("True", "RunnerNotAvailable"));
    assert_eq!(condition(&status, STALLED), pair("False", "Resolved"));
    assert!(status.conditions.iter().all(|c| c.observed_generation == Some(1)));

    let (cm, stateful_set, service) = h.children().await;
    let (cm, stateful_set, service) = (cm.unwrap(), stateful_set.unwrap(), service.unwrap());
    let budget = h.api::<PodDisruptionBudget>().get("orders-runner").await.unwrap();
    for meta in [&cm.metadata, &stateful_set.metadata, &service.metadata, &budget.metadata] {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("SyncFlow", "orders", uid.as_str())
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(meta.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"], "entrepot-operator");
    }
    assert!(cm.data.unwrap()["runner.yaml"].contains("shopify-order-to-canonical"));
    let runner = status.runner.clone().unwrap();
    let template = stateful_set.spec.unwrap().template.metadata.unwrap();
    assert_eq!(template.annotations.unwrap()["entrepot.io/config-checksum"], runner.config_checksum);
    assert_eq!((runner.replicas, runner.available_replicas), (1, 0));

    h.runner_pods_become_available().await;
    let status =
        h.status_when(1, "Ready=True", |s| find(&s.conditions, READY).is_some_and(|c| c.status == "True")).await;
    assert_eq!(condition(&status, READY), pair("True", "RunnerAvailable"));
    assert_eq!(condition(&status, RECONCILING), pair("False", "RunnerAvailable"));
    assert_eq!(status.runner.unwrap().available_replicas, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_connector_stalls_the_flow_until_it_is_created() {
    let h = Harness::start().await;
    h.create_orders(Some("erp")).await;

    let status = h.status_when(1, "Stalled", |s| find(&s.conditions, STALLED).is_some()).await;
    assert_eq!(condition(&status, STALLED), pair("True", "ConnectorNotFound"));
    assert_eq!(condition(&status, READY), pair("False", "ConnectorNotFound"));
    let message = &find(&status.conditions, STALLED).unwrap().message;
    assert!(message.contains("spec.targets[0].connectorRef") && message.contains("`erp`"), "{message}");
    assert_eq!(h.children().await, (None, None, None), "nothing is built for a flow that cannot run");
    // Writing that status made the flow's own watch reconcile it once more; wait for
    // that one too, so that nothing but the watch on Connectors can wake it now (its
    // retry backoff is minutes away).
    eventually("the flow's second failed reconcile", || async {
        (h.ctx.metrics.failures(CONTROLLER, Category::ReferenceMissing) >= 2).then_some(())
    })
    .await;

    h.create::<Connector>(fixtures::orders().connector("erp").clone()).await;
    let status =
        h.status_when(1, "Stalled=False", |s| find(&s.conditions, STALLED).is_some_and(|c| c.status == "False")).await;
    assert_eq!(condition(&status, READY), pair("False", "RunnerNotAvailable"));
    let children = h.children().await;
    assert!(children.0.is_some() && children.1.is_some() && children.2.is_some(), "{children:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_reconcile_changes_nothing() {
    let h = Harness::start().await;
    h.create_orders(None).await;
    h.status_when(1, "the first status", |s| find(&s.conditions, READY).is_some()).await;

    // The reconcile that wrote that status was the flow's first (its references
    // existed before it), and one reconcile of a flow never overlaps another: once one
    // has finished, everything after the snapshot comes from later reconciles.
    eventually("the first reconcile to finish", || async { (h.ctx.metrics.reconciles(CONTROLLER) >= 1).then_some(()) })
        .await;
    let flow_before = h.api::<SyncFlow>().get("orders").await.unwrap();
    let children_before = h.children().await;
    let writes_before = h.cluster.writes();
    let status_updates_before = h.cluster.status_updates_sent();
    let reconciles_before = h.ctx.metrics.reconciles(CONTROLLER);

    // Touch a referenced Connector: its watch reconciles the flow again.
    let touch = json!({"metadata": {"annotations": {"example.com/touched": "yes"}}});
    h.api::<Connector>().patch("erp", &PatchParams::default(), &Patch::Merge(touch)).await.unwrap();
    eventually("another reconcile", || async {
        (h.ctx.metrics.reconciles(CONTROLLER) > reconciles_before).then_some(())
    })
    .await;

    assert_eq!(h.cluster.writes(), writes_before + 1, "only the test's own patch was written");
    assert_eq!(h.cluster.status_updates_sent(), status_updates_before, "an unchanged status is not even sent");
    let flow_after = h.api::<SyncFlow>().get("orders").await.unwrap();
    assert_eq!(flow_after.metadata.resource_version, flow_before.metadata.resource_version);
    assert_eq!(flow_after.status, flow_before.status);
    let children_after = h.children().await;
    assert_eq!(resource_versions(&children_after), resource_versions(&children_before));
    assert_eq!(children_after, children_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reconcile_leaves_the_last_good_runner_running() {
    let h = Harness::start().await;
    h.create_orders(None).await;
    h.status_when(1, "the first status", |s| find(&s.conditions, READY).is_some()).await;
    let children_before = h.children().await;
    assert!(children_before.1.is_some());

    // Point the target at a Mapping that does not exist.
    let broken = json!({"spec": {"targets": [{
        "connectorRef": "erp", "entity": "salesOrder", "mappingRef": "no-such-mapping", "operation": "upsert"
    }]}});
    h.api::<SyncFlow>().patch("orders", &PatchParams::default(), &Patch::Merge(broken)).await.unwrap();
    let generation = h.api::<SyncFlow>().get("orders").await.unwrap().metadata.generation.unwrap();
    assert!(generation > 1);

    let status = h
        .status_when(generation, "Stalled on the new generation", |s| {
            find(&s.conditions, STALLED).is_some_and(|c| c.status == "True")
        })
        .await;
    assert_eq!(condition(&status, STALLED), pair("True", "MappingNotFound"));
    assert_eq!(condition(&status, READY), pair("False", "MappingNotFound"));
    assert!(find(&status.conditions, STALLED).unwrap().message.contains("spec.targets[0].mappingRef"));
    // The runner built from the last good spec is still there, untouched.
    let children_after = h.children().await;
    assert_eq!(resource_versions(&children_after), resource_versions(&children_before));
    assert_eq!(children_after, children_before);
    assert!(status.runner.is_some(), "the last runner's status is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_flow_is_reported_on_itself_and_does_not_stop_the_others() {
    let h = Harness::start().await;
    // This matches the CRD's duration pattern, so an API server accepts it, but it
    // overflows the runner's duration type.
    const TOO_LONG: &str = "99999999999999999999999h";
    assert!(TOO_LONG.parse::<entrepot_api::resource::Duration>().is_err());
    let mut bad = serde_json::to_value(fixtures::orders().flow()).unwrap();
    bad["metadata"] = json!({"name": "unreadable", "namespace": NS});
    bad["spec"]["delivery"]["dedupWindow"] = json!(TOO_LONG);
    let raw: Api<DynamicObject> =
        Api::namespaced_with(h.cluster.client.clone(), NS, &ApiResource::erase::<SyncFlow>(&()));
    raw.create(&PostParams::default(), &serde_json::from_value(bad).unwrap()).await.unwrap();
    h.create_orders(None).await;

    let stalled = eventually("the unreadable flow's status", || async {
        let object = raw.get("unreadable").await.ok()?;
        let status: SyncFlowStatus = serde_json::from_value(object.data.get("status")?.clone()).ok()?;
        find(&status.conditions, STALLED).is_some().then_some(status)
    })
    .await;
    assert_eq!(condition(&stalled, STALLED), pair("True", "InvalidSpec"));
    let message = &find(&stalled.conditions, STALLED).unwrap().message;
    assert!(message.contains(TOO_LONG), "{message}");
    // Counted when the reconcile returns its error, just after the status is written.
    eventually("the failure counted as an invalid spec", || async {
        (h.ctx.metrics.failures(CONTROLLER, Category::InvalidSpec) >= 1).then_some(())
    })
    .await;

    // The readable flow next to it is reconciled as usual.
    h.status_when(1, "the good flow's status", |s| find(&s.conditions, READY).is_some()).await;
    assert!(h.children().await.1.is_some());
    eventually("the operator to report ready", || async {
        h.ctx.ready.load(std::sync::atomic::Ordering::Relaxed).then_some(())
    })
    .await;
}

/// A runner's admin API on loopback answering `/v1/status` with what the test says.
async fn fake_runner(status: Arc<std::sync::Mutex<entrepot_api::status::RunnerStatus>>) -> u16 {
    use bytes::Bytes;
    use http::{Response, StatusCode};
    use http_body_util::Full;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = move |request: &http::Request<hyper::body::Incoming>| {
        let mut response = Response::new(Full::new(Bytes::new()));
        if request.uri().path() == "/v1/status" {
            let body = serde_json::to_vec(&*status.lock().unwrap()).unwrap();
            *response.body_mut() = Full::new(Bytes::from(body));
        } else {
            *response.status_mut() = StatusCode::NOT_FOUND;
        }
        response
    };
    tokio::spawn(crate::server::serve_on(listener, answer, std::future::pending()));
    port
}

/// A running runner pod of the orders flow, as the StatefulSet controller would make it.
async fn runner_pod(h: &Harness, name: &str) {
    let labels = super::build::selector_labels("orders");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": "runner"}]},
    }))
    .unwrap();
    h.create::<Pod>(pod).await;
    let status = json!({"status": {"phase": "Running", "podIP": "10.0.0.7"}});
    h.api::<Pod>().patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

fn runner_report(pending: u64, oldest: Option<u64>) -> entrepot_api::status::RunnerStatus {
    use entrepot_api::status::{FlowStatus, TargetStatus};
    entrepot_api::status::RunnerStatus {
        flows: vec![FlowStatus {
            name: "orders".into(),
            namespace: NS.into(),
            delivered: 40,
            pending,
            oldest_pending_seconds: oldest,
            dead_lettered: 2,
            targets: vec![TargetStatus {
                connector: "erp".into(),
                delivered: 40,
                last_error: Some("target error: 503 Service Unavailable".into()),
                ..TargetStatus::default()
            }],
            ..FlowStatus::default()
        }],
        ..entrepot_api::status::RunnerStatus::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_pods_report_goes_into_status_and_an_old_backlog_is_not_ready() {
    let report = Arc::new(std::sync::Mutex::new(runner_report(12, Some(35))));
    let port = fake_runner(report.clone()).await;
    // Every pod is asked at the fake runner's address instead of its pod IP.
    let h = Harness::start_with(RunnerStatusReader::new(Some("127.0.0.1".into()), port)).await;
    h.create_orders(None).await;
    h.status_when(1, "the first status", |s| find(&s.conditions, READY).is_some()).await;
    runner_pod(&h, "orders-runner-0").await;
    h.runner_pods_become_available().await;

    let status =
        h.status_when(1, "the runner's backlog", |s| s.backlog.as_ref().is_some_and(|b| b.pending == 12)).await;
    let backlog = status.backlog.clone().unwrap();
    assert_eq!((backlog.oldest_pending_seconds, backlog.dead_lettered), (30, 2));
    assert_eq!(status.targets[0].last_error.as_deref(), Some("target error: 503 Service Unavailable"));
    assert_eq!(condition(&status, READY), pair("True", "RunnerAvailable"));

    // The ERP stays down: the oldest record passes the 5 minute budget. The next read
    // (a touch stands in for the 30 s requeue) makes the flow not Ready, with the reason.
    *report.lock().unwrap() = runner_report(900, Some(420));
    let touch = json!({"metadata": {"annotations": {"example.com/touched": "1"}}});
    h.api::<Connector>().patch("erp", &PatchParams::default(), &Patch::Merge(touch)).await.unwrap();
    let status = h
        .status_when(1, "BacklogOverBudget", |s| {
            find(&s.conditions, READY).is_some_and(|c| c.reason == "BacklogOverBudget")
        })
        .await;
    let message = &find(&status.conditions, READY).unwrap().message;
    assert!(message.contains("420s old, over the 300s freshness budget"), "{message}");
    assert!(message.contains("503"), "the target's last error says why: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_batch_replaces_the_stateful_set_with_a_cron_job_and_suspend_keeps_the_queue() {
    let h = Harness::start().await;
    let flow = h.create_orders(None).await;
    h.status_when(1, "the first status", |s| find(&s.conditions, READY).is_some()).await;
    // What an operator before StatefulSets rendered: it goes once the flow is reconciled
    // into a different workload.
    let old: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "orders-runner", "namespace": NS,
                     "ownerReferences": [{"apiVersion": "entrepot.io/v1alpha1", "kind": "SyncFlow", "name": "orders",
                                          "uid": flow.metadata.uid, "controller": true}]},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": [{"name": "runner"}]}}},
    }))
    .unwrap();
    h.create::<Deployment>(old).await;

    let batch = json!({"spec": {
        "mode": "batch", "schedule": "0 2 * * *", "timeZone": "America/Chicago",
        "source": {"connectorRef": "erp", "entity": "salesOrder",
                   "trigger": {"webhook": null, "poll": {"interval": "1h", "path": "/orders.json"}}},
    }});
    h.api::<SyncFlow>().patch("orders", &PatchParams::default(), &Patch::Merge(batch)).await.unwrap();
    let status =
        h.status_when(2, "Scheduled", |s| find(&s.conditions, READY).is_some_and(|c| c.reason == "Scheduled")).await;
    assert_eq!(status.runner.unwrap().workload, "CronJob/orders-runner");
    let cron = h.api::<CronJob>().get("orders-runner").await.unwrap();
    assert_eq!(cron.spec.as_ref().unwrap().schedule, "0 2 * * *");
    assert!(h.api::<PersistentVolumeClaim>().get_opt("orders-runner-queue").await.unwrap().is_some());
    eventually("the continuous workload to be removed", || async {
        let gone = h.api::<StatefulSet>().get_opt("orders-runner").await.unwrap().is_none()
            && h.api::<Service>().get_opt("orders-runner").await.unwrap().is_none()
            && h.api::<PodDisruptionBudget>().get_opt("orders-runner").await.unwrap().is_none()
            && h.api::<Deployment>().get_opt("orders-runner").await.unwrap().is_none();
        gone.then_some(())
    })
    .await;

    h.api::<SyncFlow>()
        .patch("orders", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": true}})))
        .await
        .unwrap();
    let status =
        h.status_when(3, "Suspended", |s| find(&s.conditions, READY).is_some_and(|c| c.reason == "Suspended")).await;
    assert_eq!(condition(&status, READY), pair("False", "Suspended"));
    let cron = h.api::<CronJob>().get("orders-runner").await.unwrap();
    assert_eq!(cron.spec.unwrap().suspend, Some(true));
    assert!(
        h.api::<PersistentVolumeClaim>().get_opt("orders-runner-queue").await.unwrap().is_some(),
        "the queue stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_rolls_the_runner_and_says_so_in_an_event() {
    use k8s_openapi::api::events::v1::Event;
    let h = Harness::start().await;
    h.create_orders(None).await;
    let first = h.status_when(1, "the first status", |s| s.runner.is_some()).await;
    // Another program that still passes the Mapping's tests.
    let program = json!({"spec": {"program": fixtures::canonical_program("(.total_price)")}});
    h.api::<Mapping>()
        .patch("shopify-order-to-canonical", &PatchParams::default(), &Patch::Merge(program))
        .await
        .unwrap();
    let rolled = h
        .status_when(1, "a new checksum", |s| {
            s.runner.as_ref().map(|r| &r.config_checksum) != first.runner.as_ref().map(|r| &r.config_checksum)
        })
        .await;
    let template = h.children().await.1.unwrap().spec.unwrap().template.metadata.unwrap();
    assert_eq!(template.annotations.unwrap()["entrepot.io/config-checksum"], rolled.runner.unwrap().config_checksum);
    let event = eventually("a RunnerRolled event", || async {
        let events = h.api::<Event>().list(&Default::default()).await.ok()?;
        events.items.into_iter().find(|e| e.reason.as_deref() == Some("RunnerRolled"))
    })
    .await;
    assert_eq!(event.regarding.as_ref().and_then(|r| r.name.as_deref()), Some("orders"));
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    assert!(event.note.as_deref().unwrap().contains("StatefulSet/orders-runner"), "{event:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_whose_tests_fail_leaves_the_last_good_runner_running_until_it_is_fixed() {
    let h = Harness::start().await;
    h.create_orders(None).await;
    let first = h.status_when(1, "the first status", |s| s.runner.is_some()).await;
    let children_before = h.children().await;
    let checksum_before = first.runner.unwrap().config_checksum;

    // A commit that breaks the canonical Mapping: its own test no longer passes.
    let set_program = |program: &str| {
        let patch = json!({"spec": {"program": program}});
        let api = h.api::<Mapping>();
        async move { api.patch("shopify-order-to-canonical", &PatchParams::default(), &Patch::Merge(patch)).await }
    };
    set_program(&fixtures::canonical_program("0")).await.unwrap();
    let status = h
        .status_when(1, "MappingTestsFailing", |s| {
            find(&s.conditions, READY).is_some_and(|c| c.reason == "MappingTestsFailing")
        })
        .await;
    assert_eq!(condition(&status, READY), pair("False", "MappingTestsFailing"));
    assert_eq!(condition(&status, STALLED), pair("True", "MappingTestsFailing"));
    let message = &find(&status.conditions, READY).unwrap().message;
    assert!(message.contains("`shopify-order-to-canonical`") && message.contains("a minimal order"), "{message}");
    // The runner and its configuration are the last good ones.
    let children_after = h.children().await;
    assert_eq!(resource_versions(&children_after), resource_versions(&children_before));
    assert_eq!(children_after, children_before);
    assert_eq!(status.runner.unwrap().config_checksum, checksum_before);

    // Fixed with a program that still passes its test: the new configuration rolls out.
    set_program(&fixtures::canonical_program("(.total_price)")).await.unwrap();
    let status =
        h.status_when(1, "Stalled=False", |s| find(&s.conditions, STALLED).is_some_and(|c| c.status == "False")).await;
    assert_eq!(condition(&status, STALLED), pair("False", "Resolved"));
    assert_ne!(status.runner.unwrap().config_checksum, checksum_before);
    let (cm, _, _) = h.children().await;
    assert!(cm.unwrap().data.unwrap()["runner.yaml"].contains("grand: (.total_price)"));
}

/// Issue 13's leak test, on the operator's side: with known Secret values in the cluster,
/// nothing the operator writes (rendered ConfigMaps and workloads, statuses, Events)
/// holds one, nor the admin token it generated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_reaches_what_the_operator_writes() {
    use k8s_openapi::{
        ByteString,
        api::{core::v1::Secret, networking::v1::NetworkPolicy},
    };
    const CANARIES: [&str; 2] = ["canary-webhook-5c1d2e", "canary-erp-token-9f8e7d"];
    let h = Harness::start().await;
    for (name, key, value) in [("shop-webhook", "secret", CANARIES[0]), ("erp-api", "token", CANARIES[1])] {
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.into());
        secret.metadata.namespace = Some(NS.into());
        secret.data = Some([(key.to_string(), ByteString(value.as_bytes().to_vec()))].into());
        h.create(secret).await;
    }
    h.create_orders(None).await;
    h.status_when(1, "the first status", |s| find(&s.conditions, READY).is_some()).await;
    h.runner_pods_become_available().await;
    h.status_when(1, "Ready=True", |s| find(&s.conditions, READY).is_some_and(|c| c.status == "True")).await;
    let token = eventually("the admin token Secret", || async {
        let secret = h.api::<Secret>().get_opt("orders-runner-admin-token").await.ok()??;
        Some(String::from_utf8(secret.data?.get("token")?.0.clone()).unwrap())
    })
    .await;

    let mut written = Vec::new();
    macro_rules! dump {
        ($($kind:ty),*) => {$(
            for object in h.api::<$kind>().list(&Default::default()).await.unwrap() {
                written.push(serde_json::to_string(&object).unwrap());
            }
        )*};
    }
    dump!(ConfigMap, StatefulSet, Service, PodDisruptionBudget, NetworkPolicy, SyncFlow, Connector, Mapping);
    dump!(k8s_openapi::api::events::v1::Event, k8s_openapi::api::core::v1::Event);
    assert!(written.len() >= 8, "{written:?}");
    // What is scanned is where the Secrets are used: they are named there, by reference.
    for name in ["shop-webhook", "erp-api", "orders-runner-admin-token"] {
        assert!(written.iter().any(|text| text.contains(name)), "`{name}` is referenced nowhere scanned");
    }
    for text in &written {
        for canary in CANARIES.iter().copied().chain([token.as_str()]) {
            assert!(!text.contains(canary), "a secret value in what the operator wrote: {text}");
        }
    }
}

#[path = "controller_jetstream_tests.rs"]
mod jetstream;
