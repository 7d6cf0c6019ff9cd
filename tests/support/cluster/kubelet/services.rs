//! The stand-in for cluster DNS and kube-proxy: a Service's `name:port` (as a pod would
//! write it: `name`, `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local`) resolved, when
//! a container starts, to a ready pod's `ip:targetPort`.
//!
//! From the pods the Service selects, not from its EndpointSlices: the API server refuses
//! loopback addresses in an EndpointSlice, so the endpointslice controller cannot list
//! this kubelet's pods (it logs `may not be in the loopback range` for each Service).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Pod, Service},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{Api, Client, ResourceExt, api::ListParams};

/// (host, service port) → `ip:port` of a ready pod.
pub type Endpoints = BTreeMap<(String, u16), String>;

/// The Services with a ready pod, as seen from a pod of `namespace`. Empty when they
/// cannot be read: the names are then left alone.
pub async fn endpoints(client: &Client, namespace: &str) -> Endpoints {
    let services: Api<Service> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let (Ok(services), Ok(pods)) =
        (services.list(&ListParams::default()).await, pods.list(&ListParams::default()).await)
    else {
        return Endpoints::new();
    };
    let ready: Vec<&Pod> = pods.items.iter().filter(|p| crate::cluster::pod_ready(p)).collect();
    let mut found = Endpoints::new();
    for service in &services.items {
        let (ns, name) = (service.namespace().unwrap_or_default(), service.name_any());
        let Some(spec) = &service.spec else { continue };
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else { continue };
        let selected = ready.iter().filter(|p| {
            p.namespace().as_deref() == Some(ns.as_str()) && selector.iter().all(|(k, v)| p.labels().get(k) == Some(v))
        });
        for pod in selected {
            let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else { continue };
            for port in spec.ports.iter().flatten() {
                let (Some(target), Ok(port)) =
                    (target_port(pod, port.target_port.as_ref(), port.port), u16::try_from(port.port))
                else {
                    continue;
                };
                let mut hosts =
                    vec![format!("{name}.{ns}"), format!("{name}.{ns}.svc"), format!("{name}.{ns}.svc.cluster.local")];
                if ns == namespace {
                    hosts.push(name.clone());
                }
                for host in hosts {
                    found.entry((host, port)).or_insert_with(|| format!("{ip}:{target}"));
                }
            }
        }
    }
    found
}

/// The pod's port a Service port goes to: a number, or a container port's name.
fn target_port(pod: &Pod, target: Option<&IntOrString>, port: i32) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port),
    }
}
