//! The NetworkPolicy of a flow's runner pods: the webhook port from the peers the chart
//! allows (by default anywhere, since webhooks usually arrive through an ingress
//! controller), the admin port only from the operator's pods, the flow's
//! ReconcileSchedule runs and the peers the chart adds (e.g. Prometheus). Rendered only
//! when the runner defaults carry `networkPolicy.enabled: true` (the chart's default),
//! since only the chart knows where the operator runs.

use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use serde::Deserialize;
use std::collections::BTreeMap;

use super::names::{ADMIN_PORT, RECONCILE_APP, SYNC_FLOW_LABEL, WEBHOOK_PORT, selector_labels};

/// The chart's `runner.networkPolicy` values, as the runner defaults file carries them.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyDefaults {
    /// Render a NetworkPolicy per flow.
    #[serde(default)]
    pub enabled: bool,
    /// The operator's pods (a namespace and a pod selector): they read `/v1/status`.
    #[serde(default)]
    pub operator: Option<NetworkPolicyPeer>,
    /// Who may send webhooks; empty: anyone.
    #[serde(default)]
    pub webhook_from: Vec<NetworkPolicyPeer>,
    /// Who else may reach the admin port (e.g. a Prometheus scraping `/metrics`).
    #[serde(default)]
    pub admin_from: Vec<NetworkPolicyPeer>,
}

/// The NetworkPolicy of `flow`'s runner pods, when `defaults` enable one.
pub fn network_policy(meta: ObjectMeta, flow: &str, defaults: &NetworkPolicyDefaults) -> Option<NetworkPolicy> {
    if !defaults.enabled {
        return None;
    }
    let port = |port: i32| {
        Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            end_port: None,
        }])
    };
    // Same namespace as the runner: no namespace selector.
    let reconcile_runs = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_string(), RECONCILE_APP.to_string()),
                (SYNC_FLOW_LABEL.to_string(), flow.to_string()),
            ])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let admin_from =
        defaults.operator.iter().cloned().chain([reconcile_runs]).chain(defaults.admin_from.iter().cloned());
    Some(NetworkPolicy {
        metadata: meta,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(selector_labels(flow)), ..LabelSelector::default() }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    // No `from`: any source, as the NetworkPolicy API reads it.
                    from: (!defaults.webhook_from.is_empty()).then(|| defaults.webhook_from.clone()),
                    ports: port(WEBHOOK_PORT),
                },
                NetworkPolicyIngressRule { from: Some(admin_from.collect()), ports: port(ADMIN_PORT) },
            ]),
            egress: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(namespace: &str) -> NetworkPolicyPeer {
        NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_string(),
                    namespace.to_string(),
                )])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        }
    }

    fn enabled() -> NetworkPolicyDefaults {
        NetworkPolicyDefaults { enabled: true, operator: Some(peer("entrepot-system")), ..Default::default() }
    }

    #[test]
    fn nothing_is_rendered_unless_enabled() {
        assert!(network_policy(ObjectMeta::default(), "orders", &NetworkPolicyDefaults::default()).is_none());
    }

    #[test]
    fn webhooks_come_from_anywhere_and_the_admin_port_only_from_the_operator_and_reconcile_runs() {
        let policy = network_policy(ObjectMeta::default(), "orders", &enabled()).unwrap().spec.unwrap();
        assert_eq!(policy.pod_selector.unwrap().match_labels.unwrap(), selector_labels("orders"));
        let rules = policy.ingress.unwrap();
        assert_eq!(rules[0].ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(8080)));
        assert!(rules[0].from.is_none(), "webhooks arrive through an ingress: anyone");
        assert_eq!(rules[1].ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(9090)));
        let from = rules[1].from.as_ref().unwrap();
        assert_eq!(from.len(), 2);
        assert_eq!(from[0], peer("entrepot-system"));
        let runs = from[1].pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(
            (runs["app.kubernetes.io/name"].as_str(), runs[SYNC_FLOW_LABEL].as_str()),
            (RECONCILE_APP, "orders")
        );
        assert!(from[1].namespace_selector.is_none(), "runs of the flow's own namespace only");
    }

    #[test]
    fn the_chart_narrows_webhooks_and_adds_admin_peers() {
        let defaults = NetworkPolicyDefaults {
            webhook_from: vec![peer("ingress-nginx")],
            admin_from: vec![peer("monitoring")],
            ..enabled()
        };
        let rules = network_policy(ObjectMeta::default(), "orders", &defaults).unwrap().spec.unwrap().ingress.unwrap();
        assert_eq!(rules[0].from, Some(vec![peer("ingress-nginx")]));
        assert_eq!(rules[1].from.as_ref().unwrap().last(), Some(&peer("monitoring")));
    }
}
