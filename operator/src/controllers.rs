//! All four controllers, run together: what `entrepot-operator run` starts once this
//! replica leads.

use std::sync::Arc;

use kube::Client;
use tokio::sync::watch;

use crate::{
    metrics::Metrics,
    observer, reconcile_schedule,
    sync_flow::{self, build::RunnerDefaults},
};

/// The contexts of the four controllers.
pub struct Controllers {
    /// SyncFlows (its `ready` flag is the operator's `/readyz`).
    pub sync_flow: Arc<sync_flow::Context>,
    /// Connectors and Mappings.
    pub observer: Arc<observer::Context>,
    /// ReconcileSchedules.
    pub reconcile_schedule: Arc<reconcile_schedule::Context>,
}

impl Controllers {
    /// Contexts sharing one client and one metrics registry.
    pub fn new(client: Client, defaults: RunnerDefaults, metrics: Metrics) -> Self {
        Self::with_sync_flow(sync_flow::Context::new(client, defaults, metrics))
    }

    /// Contexts around a given SyncFlow context (tests give it their runner status reader).
    pub fn with_sync_flow(sync_flow: sync_flow::Context) -> Self {
        let (client, metrics, defaults) =
            (sync_flow.client.clone(), sync_flow.metrics.clone(), sync_flow.defaults.clone());
        Self {
            observer: Arc::new(observer::Context::new(client.clone(), metrics.clone())),
            reconcile_schedule: Arc::new(reconcile_schedule::Context::new(client, defaults, metrics)),
            sync_flow: Arc::new(sync_flow),
        }
    }

    /// Runs every controller until `stop` turns true, then lets each finish the
    /// reconciles in flight.
    pub async fn run(&self, namespace: Option<String>, stop: watch::Receiver<bool>) {
        let until = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let ns = namespace.as_deref();
        tokio::join!(
            sync_flow::run(self.sync_flow.clone(), ns, until(stop.clone())),
            crate::connector::run(self.observer.clone(), ns, until(stop.clone())),
            crate::mapping::run(self.observer.clone(), ns, until(stop.clone())),
            reconcile_schedule::run(self.reconcile_schedule.clone(), ns, until(stop)),
        );
    }
}

#[cfg(test)]
mod tests {
    use kube::Api;

    use super::*;
    use crate::{
        resources::{
            Connector, Mapping, SyncFlow,
            conditions::{READY, find},
        },
        test_support::{create, eventually, fake_api::FakeCluster, fixtures, install_crypto_provider},
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_four_controllers_run_together_and_each_kind_gets_a_status() {
        install_crypto_provider();
        let cluster = FakeCluster::new().await;
        let controllers =
            Controllers::new(cluster.client.clone(), RunnerDefaults::with_image("entrepot:test"), Metrics::new());
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(async move { controllers.run(None, stopped).await });

        let f = fixtures::orders();
        for c in &f.connectors {
            create(&cluster.client, c.clone()).await;
        }
        for m in &f.mappings {
            create(&cluster.client, m.clone()).await;
        }
        create(&cluster.client, f.flow().clone()).await;

        eventually("a Ready condition on the Connector, the Mapping and the SyncFlow", || async {
            let c = Api::<Connector>::namespaced(cluster.client.clone(), "retail").get("erp").await.ok()?.status?;
            let m = Api::<Mapping>::namespaced(cluster.client.clone(), "retail")
                .get("shopify-order-to-canonical")
                .await
                .ok()?
                .status?;
            let s = Api::<SyncFlow>::namespaced(cluster.client.clone(), "retail").get("orders").await.ok()?.status?;
            (find(&c.conditions, READY).is_some()
                && find(&m.conditions, READY).is_some()
                && find(&s.conditions, READY).is_some())
            .then_some(())
        })
        .await;
        let _ = stop.send(true);
        running.await.unwrap();
    }
}
