//! Leader election over a `coordination.k8s.io` Lease (kube-lease-manager), so that two
//! operator replicas never reconcile at the same time: the replica that holds the Lease
//! runs the controllers, the other waits to take over when the Lease expires.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

/// Seconds a Lease stays valid after its last renewal.
pub const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry the holder renews it.
pub const GRACE_SECONDS: u64 = 5;

/// This replica's place in the election.
pub struct Candidate {
    leading: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Candidate {
    /// Joins the election for Lease `name` in `namespace` as `identity` (the pod name).
    pub async fn join(client: Client, name: &str, namespace: &str, identity: &str) -> kube_lease_manager::Result<Self> {
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(GRACE_SECONDS)
            .build()
            .await?;
        let (leading, task) = manager.watch().await;
        Ok(Self { leading, task })
    }

    /// Waits until this replica holds the Lease.
    pub async fn leading(&mut self) {
        if self.leading.wait_for(|leading| *leading).await.is_err() {
            // The manager's task ended (it only does on an API error it cannot recover
            // from): waiting forever would hide that.
            warn!("the leader election ended before this replica was elected");
            std::future::pending::<()>().await;
        }
        info!("elected leader: starting the controllers");
    }

    /// Completes when this replica stops holding the Lease.
    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|leading| !*leading).await;
    }

    /// Leaves the election, freeing the Lease at once rather than letting it expire.
    pub async fn resign(self) {
        drop(self.leading);
        match self.task.await {
            Ok(Ok(manager)) => {
                if let Err(e) = manager.release().await {
                    warn!(error = %e, "cannot release the Lease; it expires by itself");
                }
            }
            Ok(Err(e)) => warn!(error = %e, "the leader election ended with an error"),
            Err(e) => warn!(error = %e, "the leader election task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::Api;

    use super::*;
    use crate::test_support::{eventually, fake_api::FakeCluster, install_crypto_provider};

    async fn holder(api: &Api<Lease>) -> Option<String> {
        api.get_opt("entrepot-operator").await.ok()??.spec?.holder_identity
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_replica_leads_and_the_other_takes_over_when_it_resigns() {
        install_crypto_provider();
        let cluster = FakeCluster::new().await;
        let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "entrepot-system");

        let mut a = Candidate::join(cluster.client.clone(), "entrepot-operator", "entrepot-system", "operator-a")
            .await
            .unwrap();
        a.leading().await;
        assert_eq!(holder(&leases).await.as_deref(), Some("operator-a"));
        let lease = leases.get("entrepot-operator").await.unwrap().spec.unwrap();
        assert_eq!(lease.lease_duration_seconds, Some(LEASE_SECONDS as i32));

        // A second replica joins while the first holds the Lease: it waits.
        let mut b = Candidate::join(cluster.client.clone(), "entrepot-operator", "entrepot-system", "operator-b")
            .await
            .unwrap();
        let b_leads = tokio::time::timeout(std::time::Duration::from_secs(2), b.leading()).await;
        assert!(b_leads.is_err(), "two leaders at once");
        assert_eq!(holder(&leases).await.as_deref(), Some("operator-a"));

        // The first resigns (a rolling update stops it): the second takes over, at its
        // next look at the Lease.
        a.resign().await;
        tokio::time::timeout(std::time::Duration::from_secs(60), b.leading()).await.expect("the standby took over");
        eventually("operator-b to hold the Lease", || async {
            (holder(&leases).await.as_deref() == Some("operator-b")).then_some(())
        })
        .await;
        b.resign().await;
    }
}
