//! The controller with a flow whose queue is in NATS JetStream, against the in-memory
//! API and a NATS that does not answer (nothing listens on its port). What a real NATS
//! holds, and the deletion of a flow's streams, are tested against a real nats-server
//! and a real API server in `tests/tests/cluster_jetstream.rs`.

use super::*;
use crate::sync_flow::{
    jetstream::{FINALIZER, NatsDefaults},
    status::Rollout,
};

/// A port nothing listens on: connecting is refused at once.
const NO_NATS: &str = "nats://127.0.0.1:1";

async fn with_nats(url: Option<&str>) -> Harness {
    let defaults = RunnerDefaults {
        nats: NatsDefaults { url: url.map(str::to_string), replicas: Some(1), credentials_secret: None },
        ..RunnerDefaults::with_image("ghcr.io/entrepot-io/entrepot:test")
    };
    Harness::start_configured(RunnerStatusReader::default(), defaults).await
}

impl Harness {
    /// The fixture's Connectors and Mappings, and its flow with the queue in JetStream.
    async fn create_jetstream_orders(&self) -> SyncFlow {
        let f = fixtures::jetstream();
        for c in &f.connectors {
            self.create::<Connector>(c.clone()).await;
        }
        for m in &f.mappings {
            self.create::<Mapping>(m.clone()).await;
        }
        self.create::<SyncFlow>(f.flow().clone()).await
    }

    /// The flow's status once `check` holds, whatever generation it describes (adding a
    /// finalizer counts as a write of the spec for the in-memory API).
    async fn status_once(&self, what: &str, check: impl Fn(&SyncFlowStatus) -> bool) -> SyncFlowStatus {
        eventually(what, || async { self.flow_status("orders").await.filter(|s| check(s)) }).await
    }

    async fn finalizers(&self) -> Vec<String> {
        self.api::<SyncFlow>().get("orders").await.unwrap().metadata.finalizers.unwrap_or_default()
    }
}

fn ready_reason(status: &SyncFlowStatus, reason: &str) -> bool {
    find(&status.conditions, READY).is_some_and(|c| c.reason == reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_flow_runs_as_a_deployment_and_says_when_nats_cannot_be_reached() {
    let h = with_nats(Some(NO_NATS)).await;
    h.create_jetstream_orders().await;

    let status = h.status_once("QueueUnreachable", |s| ready_reason(s, "QueueUnreachable")).await;
    let ready = find(&status.conditions, READY).unwrap();
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains(NO_NATS) && ready.message.contains("nats.url"), "{}", ready.message);
    assert_eq!(condition(&status, RECONCILING), pair("True", "QueueUnreachable"));
    assert_eq!(condition(&status, STALLED), pair("False", "Resolved"));
    assert_eq!(status.runner.as_ref().unwrap().workload, "Deployment/orders-runner");

    // The runners are rendered all the same: they wait for NATS like the operator does.
    let deployment = h.api::<Deployment>().get("orders-runner").await.unwrap();
    assert_eq!(Rollout::of_deployment(&deployment).desired, 3);
    assert!(h.api::<StatefulSet>().get_opt("orders-runner").await.unwrap().is_none());
    assert!(h.api::<PodDisruptionBudget>().get_opt("orders-runner").await.unwrap().is_some());
    let cm = h.api::<ConfigMap>().get("orders-runner").await.unwrap().data.unwrap();
    assert!(cm["runner.yaml"].contains(NO_NATS), "the runner is told the operator's NATS");
    // The finalizer is on before anything would have been made in NATS.
    assert_eq!(h.finalizers().await, [FINALIZER]);
    eventually("a failure counted as queue_unreachable", || async {
        (h.ctx.metrics.failures(CONTROLLER, Category::QueueUnreachable) >= 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_flow_without_a_nats_server_anywhere_is_stalled() {
    let h = with_nats(None).await;
    h.create_jetstream_orders().await;
    let status = h.status_when(1, "Stalled", |s| find(&s.conditions, STALLED).is_some()).await;
    assert_eq!(condition(&status, STALLED), pair("True", "InvalidSpec"));
    let message = &find(&status.conditions, STALLED).unwrap().message;
    assert!(message.contains("spec.runner.queue.jetstream.url") && message.contains("nats.url"), "{message}");
    assert!(h.finalizers().await.is_empty(), "nothing was made in NATS");
    assert!(h.api::<Deployment>().get_opt("orders-runner").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_queue_to_jetstream_and_back_swaps_the_workload_kind() {
    let h = with_nats(Some(NO_NATS)).await;
    h.create_orders(None).await;
    h.status_when(1, "the first status", |s| find(&s.conditions, READY).is_some()).await;
    assert!(h.api::<StatefulSet>().get_opt("orders-runner").await.unwrap().is_some());
    assert!(h.finalizers().await.is_empty(), "an embedded flow has no finalizer");

    let to_jetstream = json!({"spec": {"runner": {"replicas": 2, "queue": {"embedded": null, "jetstream": {}}}}});
    h.api::<SyncFlow>().patch("orders", &PatchParams::default(), &Patch::Merge(to_jetstream)).await.unwrap();
    eventually("the StatefulSet replaced by a Deployment", || async {
        let deployment = h.api::<Deployment>().get_opt("orders-runner").await.ok()??;
        let gone = h.api::<StatefulSet>().get_opt("orders-runner").await.ok()?.is_none();
        (gone && Rollout::of_deployment(&deployment).desired == 2).then_some(())
    })
    .await;
    assert_eq!(h.finalizers().await, [FINALIZER]);

    let back =
        json!({"spec": {"runner": {"replicas": 1, "queue": {"jetstream": null, "embedded": {"storage": "5Gi"}}}}});
    h.api::<SyncFlow>().patch("orders", &PatchParams::default(), &Patch::Merge(back)).await.unwrap();
    let status = h
        .status_once("Ready=False for the StatefulSet again", |s| {
            s.runner.as_ref().is_some_and(|r| r.workload == "StatefulSet/orders-runner")
        })
        .await;
    assert!(!ready_reason(&status, "QueueUnreachable"), "no queue in NATS any more: {status:?}");
    // The status may be written before the reconcile has removed the Deployment and the
    // finalizer: waited for, not read at once.
    eventually("the Deployment replaced by a StatefulSet, and the finalizer released", || async {
        let gone = h.api::<Deployment>().get_opt("orders-runner").await.ok()?.is_none();
        let back = h.api::<StatefulSet>().get_opt("orders-runner").await.ok()?.is_some();
        // Released, not cleaned up: what the flow left in NATS stays there.
        (gone && back && h.finalizers().await.is_empty()).then_some(())
    })
    .await;
}
