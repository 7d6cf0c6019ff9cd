//! A flow's runner pods, found by the labels the operator renders on them
//! (`entrepot_operator::sync_flow::names::selector_labels`), their admin port (the
//! container port named `admin`), and the flow's admin token from its Secret.

use anyhow::{Context, Result, bail};
use entrepot_operator::sync_flow::{
    names::{admin_token_secret_name, selector_labels},
    secret_volumes::ADMIN_TOKEN_KEY,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client, ResourceExt, api::ListParams};

/// The name of the runner container's admin port.
const ADMIN_PORT_NAME: &str = "admin";

/// One runner pod, where its admin API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerPod {
    /// The pod's name.
    pub name: String,
    /// Its IP (for `--via direct`).
    pub ip: String,
    /// The container port named `admin`.
    pub admin_port: i32,
}

/// The label selector of a flow's runner pods.
pub fn selector(flow: &str) -> String {
    selector_labels(flow).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A runner pod of `flow`: `pod` when given, else the first ready one (any replica
/// answers for the flow's dead letters: one pod holds an embedded queue, and the
/// replicas of a JetStream flow share theirs).
pub async fn pick(client: &Client, namespace: &str, flow: &str, pod: Option<&str>) -> Result<RunnerPod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(&selector(flow)))
        .await
        .with_context(|| format!("cannot list the runner pods of SyncFlow {flow} in namespace {namespace}"))?
        .items;
    if listed.is_empty() {
        bail!(
            "SyncFlow {flow} in namespace {namespace} has no runner pod (none labelled {}): check the name and -n, \
             and `kubectl entrepot describe {flow} -n {namespace}`",
            selector(flow)
        );
    }
    let chosen = match pod {
        Some(name) => listed.iter().find(|p| p.name_any() == name).with_context(|| {
            let names: Vec<String> = listed.iter().map(ResourceExt::name_any).collect();
            format!("--pod {name} is not a runner pod of SyncFlow {flow}; its runner pods: {}", names.join(", "))
        })?,
        None => listed.iter().find(|p| ready(p)).with_context(|| {
            format!("no runner pod of SyncFlow {flow} in namespace {namespace} is ready: `kubectl get pods -n {namespace} -l {}`", selector(flow))
        })?,
    };
    runner_pod(chosen)
}

fn ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Where `pod`'s admin API listens.
pub fn runner_pod(pod: &Pod) -> Result<RunnerPod> {
    let name = pod.name_any();
    let ports = pod.spec.iter().flat_map(|s| &s.containers).flat_map(|c| c.ports.iter().flatten());
    let admin_port =
        ports.filter(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME)).map(|p| p.container_port).next().with_context(
            || format!("pod {name} has no container port named `{ADMIN_PORT_NAME}`: is it an Entrepot runner?"),
        )?;
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
    Ok(RunnerPod { name, ip, admin_port })
}

/// The flow's admin token (Secret `<flow>-runner-admin-token`, key `token`). Only sent to
/// the runner; never printed.
pub async fn admin_token(client: &Client, namespace: &str, flow: &str) -> Result<String> {
    let name = admin_token_secret_name(flow);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(&name).await.with_context(|| {
        format!("cannot read Secret {name} in namespace {namespace} (the runner's admin token; your RBAC needs `get secrets`)")
    })?;
    let value = secret
        .and_then(|s| s.data?.remove(ADMIN_TOKEN_KEY))
        .with_context(|| format!("Secret {name} in namespace {namespace} has no key `{ADMIN_TOKEN_KEY}`: the operator creates it with the flow"))?;
    let token = String::from_utf8(value.0).map(|t| t.trim().to_string()).unwrap_or_default();
    if token.is_empty() {
        bail!("Secret {name} in namespace {namespace}: key `{ADMIN_TOKEN_KEY}` is empty or not text");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_port_is_found_by_name_and_the_selector_is_the_operators() {
        let pod: Pod = serde_saphyr::from_str(
            "metadata: {name: orders-runner-0}\n\
             spec: {containers: [{name: runner, ports: [{name: webhook, containerPort: 8080}, {name: admin, containerPort: 9090}]}]}\n\
             status: {podIP: 10.1.2.3}\n",
        )
        .unwrap();
        let found = runner_pod(&pod).unwrap();
        assert_eq!(found, RunnerPod { name: "orders-runner-0".into(), ip: "10.1.2.3".into(), admin_port: 9090 });
        assert_eq!(selector("orders"), "app.kubernetes.io/instance=orders,app.kubernetes.io/name=entrepot-runner");

        let other: Pod = serde_saphyr::from_str("metadata: {name: web}\nspec: {containers: [{name: web}]}\n").unwrap();
        assert!(runner_pod(&other).unwrap_err().to_string().contains("no container port named `admin`"));
    }
}
