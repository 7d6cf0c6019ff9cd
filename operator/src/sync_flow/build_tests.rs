//! The builders over the YAML fixtures: no API server involved.

use entrepot::{
    config::RunnerConfig,
    spec::{ConnectorAuth, SecretKeySelector},
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::PodSpec};

use super::*;
use crate::{
    sync_flow::validate::{References, validate},
    test_support::fixtures::{self, Fixture},
};

fn defaults() -> RunnerDefaults {
    RunnerDefaults { image: "ghcr.io/entrepot-io/entrepot:test".into() }
}

fn resolve(f: &Fixture) -> FlowConfig {
    let refs = References {
        connectors: f.connectors.iter().map(|c| (c.metadata.name.clone().unwrap(), Ok(c.spec.0.clone()))).collect(),
        mappings: f.mappings.iter().map(|m| (m.metadata.name.clone().unwrap(), Ok(m.spec.0.clone()))).collect(),
    };
    let flow = f.flow();
    validate(flow.metadata.name.as_deref().unwrap(), flow.metadata.namespace.as_deref().unwrap(), &flow.spec, &refs)
        .unwrap()
}

fn build(f: &Fixture) -> Children {
    children(f.flow(), &resolve(f), &defaults()).unwrap()
}

fn pod(deployment: &Deployment) -> &PodSpec {
    deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

#[test]
fn every_child_is_named_labelled_and_owned_by_the_flow() {
    let f = fixtures::orders();
    let c = build(&f);
    let metas = [&c.config_map.metadata, &c.deployment.metadata, &c.service.metadata];
    for meta in metas {
        assert_eq!(meta.name.as_deref(), Some("orders-runner"));
        assert_eq!(meta.namespace.as_deref(), Some("retail"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "entrepot-runner");
        assert_eq!(labels["app.kubernetes.io/instance"], "orders");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "entrepot-operator");
        assert_eq!(labels["app.kubernetes.io/part-of"], "entrepot");
        assert_eq!(labels["entrepot.io/sync-flow"], "orders");
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "SyncFlow");
        assert_eq!(owners[0].api_version, "entrepot.io/v1alpha1");
        assert_eq!(owners[0].name, "orders");
        assert_eq!(owners[0].uid, "0b7f4a52-2a1e-4c59-9f0e-3c1d2b6a7e10");
        assert_eq!(owners[0].controller, Some(true));
    }
}

#[test]
fn a_flow_not_read_from_the_api_has_no_owner_to_point_at() {
    let f = fixtures::orders();
    let mut flow = f.flow().clone();
    flow.metadata.uid = None;
    assert!(matches!(children(&flow, &resolve(&f), &defaults()), Err(BuildError::NoOwnerReference)));
}

#[test]
fn the_config_map_holds_the_resolved_flow_the_runner_reads() {
    let f = fixtures::orders();
    let c = build(&f);
    let text = &c.config_map.data.as_ref().unwrap()[CONFIG_KEY];
    let read: RunnerConfig = serde_saphyr::from_str(text).unwrap();
    assert_eq!(read.flows.len(), 1);
    let flow = &read.flows[0];
    assert_eq!(flow.name, "orders");
    assert_eq!(flow.namespace, "retail");
    assert_eq!(flow.connectors.keys().collect::<Vec<_>>(), ["erp", "shop"]);
    assert_eq!(flow.mappings.keys().collect::<Vec<_>>(), ["canonical-to-erp", "shopify-order-to-canonical"]);
    assert_eq!(flow.spec.targets, f.flow().spec.targets);
}

#[test]
fn secrets_reach_the_runner_as_secret_key_refs_never_as_values() {
    let c = build(&fixtures::orders());
    let env = pod(&c.deployment).containers[0].env.clone().unwrap();
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["ENTREPOT_SECRET_ERP_API_TOKEN", "ENTREPOT_SECRET_SHOP_WEBHOOK_SECRET"]);
    for var in &env {
        assert!(var.value.is_none(), "{} carries a value", var.name);
        let selector = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        let expected = SecretKeySelector { name: selector.name.clone(), key: selector.key.clone() };
        assert_eq!(var.name, expected.env_var());
    }
    let erp = env[0].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((erp.name.as_str(), erp.key.as_str()), ("erp-api", "token"));
    // Nor does any other child mention anything but Secret names and keys.
    let everything = serde_json::to_string(&(&c.config_map, &c.deployment, &c.service)).unwrap();
    assert!(!everything.contains("\"value\":"), "a literal env value was rendered");
}

#[test]
fn the_runner_runs_under_the_restricted_pod_security_profile() {
    let c = build(&fixtures::orders());
    let pod = pod(&c.deployment);
    let pod_sc = pod.security_context.as_ref().unwrap();
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!(pod_sc.run_as_user, Some(65532));
    assert_eq!(pod_sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert_eq!(pod.automount_service_account_token, Some(false));
    let sc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert!(sc.privileged.is_none());
}

#[test]
fn the_deployment_runs_the_runner_with_its_config_and_queue() {
    let f = fixtures::orders();
    let c = build(&f);
    let spec = c.deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.selector.match_labels.as_ref().unwrap(), &selector_labels("orders"));
    let template_labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert!(selector_labels("orders").iter().all(|(k, v)| template_labels.get(k) == Some(v)));

    let pod = pod(&c.deployment);
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("ghcr.io/entrepot-io/entrepot:test"));
    assert_eq!(
        container.args.as_deref().unwrap(),
        [
            "serve",
            "--config",
            "/etc/entrepot/runner.yaml",
            "--data-dir",
            "/var/lib/entrepot",
            "--listen",
            "0.0.0.0:8080",
            "--admin-listen",
            "0.0.0.0:9090"
        ]
    );
    let ports: Vec<(String, i32)> =
        container.ports.iter().flatten().map(|p| (p.name.clone().unwrap(), p.container_port)).collect();
    assert_eq!(ports, [("webhooks".to_string(), 8080), ("admin".to_string(), 9090)]);
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = p.as_ref().unwrap().http_get.as_ref().unwrap();
        (get.path.clone().unwrap(), get.port.clone())
    };
    let admin = IntOrString::String("admin".into());
    assert_eq!(probe_path(&container.readiness_probe), ("/readyz".to_string(), admin.clone()));
    assert_eq!(probe_path(&container.liveness_probe), ("/healthz".to_string(), admin));

    let mounts: Vec<(String, String, Option<bool>)> =
        container.volume_mounts.iter().flatten().map(|m| (m.name.clone(), m.mount_path.clone(), m.read_only)).collect();
    assert_eq!(
        mounts,
        [
            ("config".to_string(), "/etc/entrepot".to_string(), Some(true)),
            ("data".to_string(), "/var/lib/entrepot".to_string(), None)
        ]
    );
    let volumes = pod.volumes.as_ref().unwrap();
    assert_eq!(volumes[0].config_map.as_ref().unwrap().name, "orders-runner");
    assert_eq!(volumes[1].empty_dir.as_ref().unwrap().size_limit, Some(Quantity("5Gi".into())));
}

#[test]
fn a_flow_image_overrides_the_operator_default() {
    let mut f = fixtures::orders();
    f.flows[0].spec.0.runner.image = Some("registry.example.com/entrepot:pinned".into());
    let c = build(&f);
    assert_eq!(pod(&c.deployment).containers[0].image.as_deref(), Some("registry.example.com/entrepot:pinned"));
}

#[test]
fn the_service_exposes_webhooks_and_admin() {
    let c = build(&fixtures::orders());
    let spec = c.service.spec.as_ref().unwrap();
    assert_eq!(spec.selector.as_ref().unwrap(), &selector_labels("orders"));
    let ports: Vec<(String, i32, IntOrString)> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.port, p.target_port.clone().unwrap()))
        .collect();
    assert_eq!(
        ports,
        [
            ("webhooks".to_string(), 8080, IntOrString::String("webhooks".into())),
            ("admin".to_string(), 9090, IntOrString::String("admin".into()))
        ]
    );
}

fn annotation(c: &Children) -> String {
    let meta = c.deployment.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
    meta.annotations.as_ref().unwrap()[CHECKSUM_ANNOTATION].clone()
}

#[test]
fn the_checksum_annotation_is_a_sha256_of_config_and_secret_refs() {
    let c = build(&fixtures::orders());
    assert_eq!(annotation(&c), c.checksum);
    assert_eq!(c.checksum.len(), 64);
    assert!(c.checksum.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    // Built twice, the same: nothing random or time-dependent goes in.
    assert_eq!(build(&fixtures::orders()), c);
}

#[test]
fn the_checksum_changes_with_the_config() {
    let before = build(&fixtures::orders()).checksum;
    let mut f = fixtures::orders();
    f.mappings[1].spec.0.program = "{externalId: .orderId}".into();
    assert_ne!(build(&f).checksum, before, "a changed mapping must roll the runner");
}

#[test]
fn the_checksum_changes_with_a_secret_ref_name() {
    let before = build(&fixtures::orders()).checksum;
    let mut f = fixtures::orders();
    let erp = f.connectors.iter_mut().find(|c| c.metadata.name.as_deref() == Some("erp")).unwrap();
    erp.spec.0.auth = Some(ConnectorAuth::Bearer {
        secret_ref: SecretKeySelector { name: "erp-api-v2".into(), key: "token".into() },
    });
    assert_ne!(build(&f).checksum, before, "a new Secret must roll the runner");
}

#[test]
fn the_checksum_covers_secret_refs_even_beyond_the_rendered_text() {
    let rendered = "flows: []\n";
    let a = BTreeSet::from([SecretKeySelector { name: "a".into(), key: "k".into() }]);
    let b = BTreeSet::from([SecretKeySelector { name: "b".into(), key: "k".into() }]);
    assert_ne!(checksum(rendered, &a), checksum(rendered, &b));
    assert_eq!(checksum(rendered, &a), checksum(rendered, &a.clone()));
}

#[test]
fn the_checksum_ignores_what_does_not_reach_the_runner_process() {
    let before = build(&fixtures::orders()).checksum;
    let mut f = fixtures::orders();
    f.flows[0].spec.0.runner.replicas = 5;
    f.flows[0].spec.0.runner.image = Some("registry.example.com/entrepot:pinned".into());
    f.flows[0].metadata.generation = Some(7);
    f.flows[0].metadata.labels = Some([("team".to_string(), "ops".to_string())].into());
    let scaled = build(&f);
    assert_eq!(scaled.checksum, before, "scaling or relabelling must not restart the pods");
    assert_eq!(scaled.deployment.spec.as_ref().unwrap().replicas, Some(5));
    // And a connector the flow does not use is not in its config at all.
    let unrelated = f.connector("shop").clone();
    let mut more = f.clone();
    let mut extra = unrelated;
    extra.metadata.name = Some("unused".into());
    more.connectors.push(extra);
    assert_eq!(build(&more).checksum, before);
}
