//! The real kube-runtime `Controller` (watches, owner references, error policy and
//! all) running against the in-memory API of [`crate::test_support::fake_api`], which
//! stands in for a kube-apiserver that cannot be installed here. Assertions are on
//! the end state the API holds, as `kubectl` would show it.

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service},
};
use kube::{
    Api, Resource,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tokio::{sync::oneshot, task::JoinHandle};

use super::{CONTROLLER, Context, build::RunnerDefaults, run};
use crate::{
    metrics::Metrics,
    resources::{
        Connector, Mapping, SyncFlow, SyncFlowStatus,
        conditions::{READY, RECONCILING, STALLED, find},
    },
    test_support::{eventually, fake_api::FakeCluster, fixtures, install_crypto_provider},
};

const NS: &str = "retail";

/// A controller running against a fresh in-memory API.
struct Harness {
    cluster: FakeCluster,
    ctx: Arc<Context>,
    controller: JoinHandle<()>,
    _stop: oneshot::Sender<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

impl Harness {
    async fn start() -> Self {
        install_crypto_provider();
        let cluster = FakeCluster::new().await;
        let defaults = RunnerDefaults { image: "ghcr.io/entrepot-io/entrepot:test".into() };
        let ctx = Arc::new(Context::new(cluster.client.clone(), defaults, Metrics::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let controller = tokio::spawn(run(ctx.clone(), None, async move {
            let _ = stopped.await;
        }));
        Self { cluster, ctx, controller, _stop: stop }
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

    async fn children(&self) -> (Option<ConfigMap>, Option<Deployment>, Option<Service>) {
        let name = "orders-runner";
        (
            self.api::<ConfigMap>().get_opt(name).await.unwrap(),
            self.api::<Deployment>().get_opt(name).await.unwrap(),
            self.api::<Service>().get_opt(name).await.unwrap(),
        )
    }

    /// What the Deployment controller would report once every runner pod is up.
    async fn runner_pods_become_available(&self) {
        let api = self.api::<Deployment>();
        let deployment = api.get("orders-runner").await.unwrap();
        let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = json!({"status": {
            "observedGeneration": deployment.metadata.generation,
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

fn resource_versions(children: &(Option<ConfigMap>, Option<Deployment>, Option<Service>)) -> [Option<String>; 3] {
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
    // The Deployment exists but no pod is available: Ready must not claim otherwise.
    assert_eq!(condition(&status, READY), pair("False", "RunnerNotAvailable"));
    assert_eq!(condition(&status, RECONCILING), pair("True", "RunnerNotAvailable"));
    assert_eq!(condition(&status, STALLED), pair("False", "Resolved"));
    assert!(status.conditions.iter().all(|c| c.observed_generation == Some(1)));

    let (cm, deployment, service) = h.children().await;
    let (cm, deployment, service) = (cm.unwrap(), deployment.unwrap(), service.unwrap());
    for meta in [&cm.metadata, &deployment.metadata, &service.metadata] {
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
    let template = deployment.spec.unwrap().template.metadata.unwrap();
    assert_eq!(template.annotations.unwrap()["entrepot.io/config-checksum"], runner.config_checksum);
    assert_eq!((runner.replicas, runner.available_replicas), (2, 0));

    h.runner_pods_become_available().await;
    let status =
        h.status_when(1, "Ready=True", |s| find(&s.conditions, READY).is_some_and(|c| c.status == "True")).await;
    assert_eq!(condition(&status, READY), pair("True", "RunnerAvailable"));
    assert_eq!(condition(&status, RECONCILING), pair("False", "RunnerAvailable"));
    assert_eq!(status.runner.unwrap().available_replicas, 2);
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
        (h.ctx.metrics.failures(CONTROLLER, "reference_missing") >= 2).then_some(())
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
    assert!(TOO_LONG.parse::<entrepot::spec::Duration>().is_err());
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
    assert!(h.ctx.metrics.failures(CONTROLLER, "invalid_spec") >= 1);

    // The readable flow next to it is reconciled as usual.
    h.status_when(1, "the good flow's status", |s| find(&s.conditions, READY).is_some()).await;
    assert!(h.children().await.1.is_some());
    eventually("the operator to report ready", || async {
        h.ctx.ready.load(std::sync::atomic::Ordering::Relaxed).then_some(())
    })
    .await;
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
    set_program("{orderId: (.id | tostring), currency: .currency, total: \"0\"}").await.unwrap();
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
    set_program("{orderId: (.id | tostring), currency: .currency, total: (.total_price)}").await.unwrap();
    let status = h
        .status_when(1, "Stalled=False", |s| find(&s.conditions, STALLED).is_some_and(|c| c.status == "False"))
        .await;
    assert_eq!(condition(&status, STALLED), pair("False", "Resolved"));
    assert_ne!(status.runner.unwrap().config_checksum, checksum_before);
    let (cm, _, _) = h.children().await;
    assert!(cm.unwrap().data.unwrap()["runner.yaml"].contains("total: (.total_price)"));
}
