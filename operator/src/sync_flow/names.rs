//! The names of a flow's children, which validation needs too (a flow whose runner
//! Service name would be too long is refused before anything is built).

/// Appended to a flow's name to name its ConfigMap, workload, budget and Service.
pub const RUNNER_SUFFIX: &str = "-runner";

/// Name of the ConfigMap, workload and Service of the flow named `flow`.
pub fn runner_name(flow: &str) -> String {
    format!("{flow}{RUNNER_SUFFIX}")
}
