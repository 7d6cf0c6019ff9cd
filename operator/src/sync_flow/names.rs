//! The names of a flow's children, which validation needs too (a flow whose runner
//! Service name would be too long is refused before anything is built).

/// Appended to a flow's name to name its ConfigMap, workload, budget and Service.
pub const RUNNER_SUFFIX: &str = "-runner";

/// Name of the ConfigMap, workload and Service of the flow named `flow`.
pub fn runner_name(flow: &str) -> String {
    format!("{flow}{RUNNER_SUFFIX}")
}

/// Name of a batch flow's queue claim.
pub fn queue_claim_name(flow: &str) -> String {
    format!("{}-queue", runner_name(flow))
}

/// Name of the queue volume (and of a StatefulSet's claim template).
pub const QUEUE_VOLUME: &str = "queue";

/// The runner's webhook port.
pub const WEBHOOK_PORT: i32 = 8080;
/// The runner's admin port (`/v1/status`, `/metrics`), where the operator reads it.
pub const ADMIN_PORT: i32 = 9090;
/// Label naming the SyncFlow a child belongs to.
pub const SYNC_FLOW_LABEL: &str = "entrepot.io/sync-flow";
/// `app.kubernetes.io/name` of a ReconcileSchedule's run pods; with [`SYNC_FLOW_LABEL`]
/// it lets them through the flow's NetworkPolicy to the runner's admin port.
pub const RECONCILE_APP: &str = "entrepot-reconcile";

/// Labels that select a flow's runner pods. Kept to two because a Deployment's
/// selector cannot change once created.
pub fn selector_labels(flow: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "entrepot-runner".to_string()),
        ("app.kubernetes.io/instance".to_string(), flow.to_string()),
    ])
}

/// Name of the Secret holding a flow's runner admin token.
pub fn admin_token_secret_name(flow: &str) -> String {
    format!("{}-admin-token", runner_name(flow))
}
