//! The SyncFlow status the operator reports, computed from what it observed. Pure.

use k8s_openapi::{api::apps::v1::Deployment, jiff::Timestamp};

use super::validate::Invalid;
use crate::resources::{
    RunnerStatus, SyncFlowStatus,
    conditions::{self, Desired, READY, RECONCILING, STALLED},
};

/// How far the runner Deployment has got, as it reports itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollout {
    /// Pods asked for.
    pub desired: i32,
    /// Pods running the current template.
    pub updated: i32,
    /// Pods available (ready for `minReadySeconds`).
    pub available: i32,
    /// Whether the Deployment controller has seen the current spec; until it has, its
    /// counts describe an older one.
    pub observed: bool,
}

impl Rollout {
    /// Reads a Deployment's spec and status.
    pub fn of(deployment: &Deployment) -> Self {
        let desired = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let observed = match (deployment.metadata.generation, status.observed_generation) {
            (Some(generation), Some(seen)) => seen >= generation,
            (None, _) => true,
            (Some(_), None) => false,
        };
        Self {
            desired,
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            observed,
        }
    }

    /// Whether every pod asked for runs the current template and is available.
    pub fn is_complete(&self) -> bool {
        self.observed && self.updated >= self.desired && self.available >= self.desired
    }
}

/// What happened to the flow in this reconcile.
#[derive(Clone, Debug)]
pub enum Outcome<'a> {
    /// The flow cannot be run as written; its children were left as they were.
    Stalled(&'a Invalid),
    /// The children were applied; this is the runner Deployment as the API returned it.
    Applied {
        /// Name of the Deployment.
        deployment: String,
        /// The configuration checksum rendered into its pods.
        checksum: String,
        /// Its rollout.
        rollout: Rollout,
    },
}

/// The status to report: `previous` with this reconcile's observations merged in. Ready
/// is `True` only when the runner Deployment says every pod is available.
pub fn desired_status(
    previous: &SyncFlowStatus,
    generation: i64,
    outcome: &Outcome<'_>,
    now: Timestamp,
) -> SyncFlowStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    let desired = match outcome {
        Outcome::Stalled(invalid) => {
            let reason = invalid.reason();
            let message = invalid.to_string();
            vec![
                Desired::no(READY, reason, message.clone()),
                Desired::no(RECONCILING, reason, "waiting for the spec or a referenced resource to change"),
                Desired::yes(STALLED, reason, message),
            ]
        }
        Outcome::Applied { deployment, checksum, rollout } => {
            status.runner = Some(RunnerStatus {
                deployment: deployment.clone(),
                config_checksum: checksum.clone(),
                replicas: rollout.desired,
                available_replicas: rollout.available,
            });
            let counts = format!(
                "runner Deployment {deployment}: {}/{} replicas available, {}/{} updated",
                rollout.available, rollout.desired, rollout.updated, rollout.desired
            );
            let resolved = Desired::no(STALLED, "Resolved", "every referenced Connector and Mapping is valid");
            if rollout.is_complete() {
                vec![
                    Desired::yes(READY, "RunnerAvailable", counts.clone()),
                    Desired::no(RECONCILING, "RunnerAvailable", counts),
                    resolved,
                ]
            } else {
                let waiting = if rollout.observed {
                    counts
                } else {
                    format!("runner Deployment {deployment}: the Deployment controller has not yet seen the new spec")
                };
                vec![
                    Desired::no(READY, "RunnerNotAvailable", waiting.clone()),
                    Desired::yes(RECONCILING, "RunnerNotAvailable", waiting),
                    resolved,
                ]
            }
        }
    };
    status.conditions = conditions::merge(&previous.conditions, &desired, generation, now);
    status
}

#[cfg(test)]
mod tests {
    use entrepot::config::ResolveError;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    use super::*;
    use crate::resources::conditions::{find, is_true};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn deployment(generation: i64, replicas: i32, status: Option<DeploymentStatus>) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec { replicas: Some(replicas), ..DeploymentSpec::default() }),
            status,
            ..Deployment::default()
        };
        d.metadata.generation = Some(generation);
        d
    }

    fn applied(rollout: Rollout) -> Outcome<'static> {
        Outcome::Applied { deployment: "orders-runner".into(), checksum: "abc".into(), rollout }
    }

    #[test]
    fn a_deployment_is_complete_only_when_it_says_so_for_the_current_spec() {
        let full = DeploymentStatus {
            observed_generation: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            ..DeploymentStatus::default()
        };
        assert!(Rollout::of(&deployment(2, 2, Some(full.clone()))).is_complete());
        // Counts from an older spec do not count.
        assert!(!Rollout::of(&deployment(3, 2, Some(full.clone()))).is_complete());
        // Not every pod available.
        let partial = DeploymentStatus { available_replicas: Some(1), ..full.clone() };
        assert!(!Rollout::of(&deployment(2, 2, Some(partial))).is_complete());
        // Available but still running the old template.
        let old = DeploymentStatus { updated_replicas: Some(1), ..full };
        assert!(!Rollout::of(&deployment(2, 2, Some(old))).is_complete());
        // No status at all: nothing is running yet.
        assert!(!Rollout::of(&deployment(1, 1, None)).is_complete());
    }

    #[test]
    fn an_available_runner_is_ready() {
        let rollout = Rollout { desired: 2, updated: 2, available: 2, observed: true };
        let status = desired_status(&SyncFlowStatus::default(), 4, &applied(rollout), at(10));
        assert_eq!(status.observed_generation, 4);
        assert!(is_true(&status.conditions, READY));
        assert_eq!(find(&status.conditions, READY).unwrap().reason, "RunnerAvailable");
        assert!(!is_true(&status.conditions, RECONCILING));
        assert!(!is_true(&status.conditions, STALLED));
        let runner = status.runner.unwrap();
        assert_eq!((runner.replicas, runner.available_replicas), (2, 2));
        assert_eq!(runner.config_checksum, "abc");
    }

    #[test]
    fn a_runner_still_rolling_out_is_not_ready_but_reconciling() {
        let rollout = Rollout { desired: 2, updated: 2, available: 1, observed: true };
        let status = desired_status(&SyncFlowStatus::default(), 1, &applied(rollout), at(10));
        let ready = find(&status.conditions, READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "RunnerNotAvailable"));
        assert!(ready.message.contains("1/2 replicas available"), "{}", ready.message);
        assert!(is_true(&status.conditions, RECONCILING));
        assert!(!is_true(&status.conditions, STALLED));
    }

    #[test]
    fn a_stalled_flow_says_why_and_keeps_its_last_runner_status() {
        let invalid = Invalid::Resolve(ResolveError::ConnectorNotFound {
            flow: "orders".into(),
            namespace: "retail".into(),
            field: "spec.targets[0].connectorRef".into(),
            name: "erp".into(),
        });
        let rollout = Rollout { desired: 1, updated: 1, available: 1, observed: true };
        let running = desired_status(&SyncFlowStatus::default(), 1, &applied(rollout), at(10));
        let stalled = desired_status(&running, 2, &Outcome::Stalled(&invalid), at(20));
        assert_eq!(stalled.observed_generation, 2);
        assert_eq!(stalled.runner, running.runner);
        for type_ in [READY, STALLED] {
            let c = find(&stalled.conditions, type_).unwrap();
            assert_eq!(c.reason, "ConnectorNotFound");
            assert_eq!(c.message, invalid.to_string());
        }
        assert!(is_true(&stalled.conditions, STALLED));
        assert!(!is_true(&stalled.conditions, READY));
        assert!(!is_true(&stalled.conditions, RECONCILING));
    }

    #[test]
    fn the_same_observation_gives_the_same_status() {
        let rollout = Rollout { desired: 1, updated: 1, available: 1, observed: true };
        let once = desired_status(&SyncFlowStatus::default(), 1, &applied(rollout), at(10));
        let twice = desired_status(&once, 1, &applied(rollout), at(99));
        assert_eq!(once, twice);
    }
}
