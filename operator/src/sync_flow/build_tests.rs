//! The builders over the YAML fixtures: no API server involved.
//!
//! What a fixture renders is compared with the snapshot files under `snapshots/`: a
//! change to the rendered children fails these tests (insta writes the new rendering
//! next to the old one as `.snap.new`). When the change is intended, review the diff,
//! run again with `INSTA_UPDATE=always` and commit the `.snap` files. The other tests
//! state rules the children must follow whatever their exact text.

use entrepot_api::{
    config::RunnerConfig,
    resource::{ConnectorAuth, SecretKeySelector},
};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    batch::v1::CronJob,
    core::v1::{PersistentVolumeClaim, PodSpec, ResourceRequirements},
    policy::v1::PodDisruptionBudget,
};

use super::*;
use crate::{
    sync_flow::{
        jetstream::{NatsDefaults, with_defaults},
        validate::{References, validate},
    },
    test_support::fixtures::{self, Fixture},
};

/// The chart's defaults, NATS included: only a JetStream flow renders them.
fn defaults() -> RunnerDefaults {
    RunnerDefaults {
        nats: NatsDefaults {
            url: Some("nats://nats.nats:4222".into()),
            replicas: Some(3),
            credentials_secret: Some(SecretKeySelector { name: "nats-runner".into(), key: "runner.creds".into() }),
        },
        ..RunnerDefaults::with_image("ghcr.io/entrepot-io/entrepot:test")
    }
}

fn resolve(f: &Fixture) -> FlowConfig {
    resolve_with(f, &defaults().nats)
}

/// The fixture's flow resolved, with `nats` as the chart's NATS defaults.
fn resolve_with(f: &Fixture, nats: &NatsDefaults) -> FlowConfig {
    let refs = References {
        connectors: f.connectors.iter().map(|c| (c.metadata.name.clone().unwrap(), Ok(c.spec.0.clone()))).collect(),
        mappings: f.mappings.iter().map(|m| (m.metadata.name.clone().unwrap(), Ok(m.spec.0.clone()))).collect(),
    };
    let flow = f.flow();
    let config = validate(
        flow.metadata.name.as_deref().unwrap(),
        flow.metadata.namespace.as_deref().unwrap(),
        &flow.spec,
        &refs,
    )
    .unwrap();
    with_defaults(config, nats).unwrap()
}

fn build(f: &Fixture) -> Children {
    children(f.flow(), &resolve(f), &defaults()).unwrap()
}

fn continuous(c: &Children) -> (&StatefulSet, &PodDisruptionBudget, &Service) {
    match &c.workload {
        Workload::Continuous { stateful_set, disruption_budget, service } => (stateful_set, disruption_budget, service),
        _ => panic!("a continuous flow renders a StatefulSet"),
    }
}

fn batch(c: &Children) -> (&CronJob, &PersistentVolumeClaim) {
    match &c.workload {
        Workload::Batch { cron_job, queue_claim: Some(queue_claim) } => (cron_job, queue_claim),
        _ => panic!("a batch flow renders a CronJob and its queue claim"),
    }
}

fn sts(c: &Children) -> &StatefulSet {
    continuous(c).0
}

fn pod(c: &Children) -> &PodSpec {
    sts(c).spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

#[test]
fn every_child_is_named_labelled_and_owned_by_the_flow() {
    let f = fixtures::orders();
    let c = build(&f);
    let (stateful_set, budget, service) = continuous(&c);
    let metas = [&c.config_map.metadata, &stateful_set.metadata, &budget.metadata, &service.metadata];
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
fn secrets_reach_the_runner_as_refreshed_volumes_never_as_values_or_environment() {
    let c = build(&fixtures::orders());
    let container = &pod(&c).containers[0];
    assert!(container.env.as_ref().is_none_or(Vec::is_empty), "no Secret in the environment: {:?}", container.env);
    let volumes = pod(&c).volumes.clone().unwrap();
    let projected = volumes.iter().find_map(|v| v.projected.as_ref()).unwrap().sources.clone().unwrap();
    let files: Vec<(String, String)> = projected
        .iter()
        .map(|p| p.secret.as_ref().unwrap())
        .flat_map(|s| s.items.iter().flatten().map(|i| (s.name.clone(), i.path.clone())))
        .collect();
    let expected = [("erp-api", "erp-api/token"), ("shop-webhook", "shop-webhook/secret")];
    assert_eq!(files, expected.map(|(a, b)| (a.to_string(), b.to_string())));
    let token = volumes.iter().find_map(|v| v.secret.as_ref()?.secret_name.clone());
    assert_eq!(token.as_deref(), Some("orders-runner-admin-token"));
    let mounts = container.volume_mounts.clone().unwrap();
    let all = mounts.iter().find(|m| m.mount_path == "/var/run/secrets/entrepot").expect("the secrets dir mounted");
    assert!(all.sub_path.is_none() && all.read_only == Some(true), "a subPath mount is never refreshed");
    let args = container.args.clone().unwrap();
    assert!(args.windows(2).any(|w| w == ["--admin-token-file", "/var/run/secrets/entrepot-admin/token"]), "{args:?}");
    assert!(args.windows(2).any(|w| w == ["--secrets-dir", "/var/run/secrets/entrepot"]), "{args:?}");
    // The admin token is built without a value: it is drawn when created, never read.
    assert!(c.admin_token.data.is_none() && c.admin_token.string_data.is_none());
    assert_eq!(c.admin_token.metadata.owner_references, sts(&c).metadata.owner_references);
    // Nor does any child mention anything but Secret names and keys.
    let everything = serde_json::to_string(&(&c.config_map, continuous(&c), &c.admin_token)).unwrap();
    assert!(!everything.contains("\"value\":"), "a literal env value was rendered");
}

#[test]
fn the_runner_has_a_startup_probe_for_queue_repair_and_liveness_as_before() {
    let c = build(&fixtures::orders());
    let container = &pod(&c).containers[0];
    let startup = container.startup_probe.as_ref().expect("a startupProbe");
    let get = startup.http_get.as_ref().unwrap();
    assert_eq!((get.path.as_deref(), &get.port), (Some("/healthz"), &IntOrString::String("admin".into())));
    assert_eq!((startup.period_seconds, startup.failure_threshold), (Some(5), Some(360)), "30 minutes");
    let liveness = container.liveness_probe.as_ref().unwrap();
    assert_eq!((liveness.period_seconds, liveness.failure_threshold), (Some(10), None));
    let nightly = build(&fixtures::nightly());
    let (cron, _) = batch(&nightly);
    let run = &cron.spec.as_ref().unwrap().job_template.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert!(run.containers[0].startup_probe.is_none(), "a batch run is not a server");
}

#[test]
fn a_network_policy_is_rendered_when_the_chart_enables_it() {
    assert!(build(&fixtures::orders()).network_policy.is_none(), "not without the chart's operator peer");
    let mut with_policy = defaults();
    with_policy.network_policy.enabled = true;
    let c = children(fixtures::orders().flow(), &resolve(&fixtures::orders()), &with_policy).unwrap();
    let policy = c.network_policy.expect("rendered");
    assert_eq!(policy.metadata.name.as_deref(), Some("orders-runner"));
    assert_eq!(policy.metadata.owner_references, sts(&build(&fixtures::orders())).metadata.owner_references);
}

#[test]
fn the_runner_runs_under_the_restricted_pod_security_profile() {
    let c = build(&fixtures::orders());
    let pod = pod(&c);
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

/// The children as the API receives them, in the order they are applied, for the
/// snapshot files under `snapshots/`. The runner configuration in the ConfigMap is shown
/// as the YAML document it is rather than as one escaped string, so that a change to it
/// reads as a diff of fields (its exact text is pinned by the checksum in the StatefulSet).
fn rendered(c: &Children) -> Vec<serde_json::Value> {
    fn json(object: &impl serde::Serialize) -> serde_json::Value {
        serde_json::to_value(object).expect("a Kubernetes object serializes")
    }
    let mut config_map = json(&c.config_map);
    let text = config_map["data"][CONFIG_KEY].as_str().expect("the runner configuration").to_string();
    config_map["data"][CONFIG_KEY] = serde_saphyr::from_str(&text).expect("the runner configuration is YAML");
    let mut objects = vec![config_map, json(&c.admin_token)];
    match &c.workload {
        Workload::Continuous { stateful_set, disruption_budget, service } => {
            objects.extend([json(service), json(disruption_budget), json(stateful_set)]);
        }
        Workload::Shared { deployment, disruption_budget, service } => {
            objects.extend([json(service), json(disruption_budget), json(deployment)]);
        }
        Workload::Batch { cron_job, queue_claim } => {
            objects.extend(queue_claim.iter().map(json).chain([json(cron_job)]));
        }
    }
    objects
}

#[test]
fn a_continuous_flow_renders_its_children() {
    let c = build(&fixtures::orders());
    insta::assert_yaml_snapshot!("orders_continuous", rendered(&c));
}

#[test]
fn the_stateful_set_selects_its_own_pods_and_keeps_each_queue_on_a_claim() {
    let c = build(&fixtures::orders());
    let spec = sts(&c).spec.as_ref().unwrap();
    assert_eq!(spec.selector.match_labels.as_ref().unwrap(), &selector_labels("orders"));
    let template_labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert!(selector_labels("orders").iter().all(|(k, v)| template_labels.get(k) == Some(v)));
    assert_eq!(continuous(&c).2.spec.as_ref().unwrap().selector.as_ref().unwrap(), &selector_labels("orders"));
    // The queue is the claim template's, one per pod, kept across restarts and scale-downs.
    let claims = spec.volume_claim_templates.as_ref().unwrap();
    assert_eq!(claims[0].metadata.name.as_deref(), Some("queue"));
    let retention = spec.persistent_volume_claim_retention_policy.as_ref().unwrap();
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    assert!(!pod(&c).volumes.as_ref().unwrap().iter().any(|v| v.name == "queue"), "the queue is not an emptyDir");
}

#[test]
fn the_queue_claim_takes_the_flow_size_and_class_else_the_operator_defaults() {
    let class_and_size = |c: &Children| {
        let claim = sts(c).spec.as_ref().unwrap().volume_claim_templates.as_ref().unwrap()[0].spec.clone().unwrap();
        (claim.storage_class_name, claim.resources.unwrap().requests.unwrap()["storage"].0.clone())
    };
    let mut f = fixtures::orders();
    f.flows[0].spec.0.runner.queue.embedded.storage = None;
    let operator = RunnerDefaults {
        queue: QueueDefaults { storage_class_name: Some("fast-ssd".into()), size: Some("20Gi".into()) },
        ..defaults()
    };
    let c = children(f.flow(), &resolve(&f), &operator).unwrap();
    assert_eq!(class_and_size(&c), (Some("fast-ssd".into()), "20Gi".into()));
    f.flows[0].spec.0.runner.queue.embedded.storage_class_name = Some("standard".into());
    f.flows[0].spec.0.runner.queue.embedded.storage = Some("2Gi".into());
    let c = children(f.flow(), &resolve(&f), &operator).unwrap();
    assert_eq!(class_and_size(&c), (Some("standard".into()), "2Gi".into()));
    let c = children(f.flow(), &resolve(&f), &defaults()).unwrap();
    assert_eq!(class_and_size(&c).0, Some("standard".into()));
    f.flows[0].spec.0.runner.queue.embedded = Default::default();
    assert_eq!(class_and_size(&build(&f)), (None, "1Gi".into()));
}

#[test]
fn operator_defaults_set_pull_policy_and_resources() {
    let f = fixtures::orders();
    let resources: ResourceRequirements = serde_json::from_value(
        serde_json::json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}),
    )
    .unwrap();
    let operator = RunnerDefaults {
        image_pull_policy: Some("IfNotPresent".into()),
        resources: Some(resources.clone()),
        ..defaults()
    };
    let c = children(f.flow(), &resolve(&f), &operator).unwrap();
    let container = &pod(&c).containers[0];
    assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(container.resources.as_ref(), Some(&resources));
}

#[test]
fn suspend_scales_to_zero_and_keeps_the_claims() {
    let mut f = fixtures::orders();
    f.flows[0].spec.0.suspend = true;
    let c = build(&f);
    let spec = sts(&c).spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(0));
    assert_eq!(spec.persistent_volume_claim_retention_policy.as_ref().unwrap().when_scaled.as_deref(), Some("Retain"));
}

#[test]
fn a_budget_lets_one_runner_pod_go_at_a_time() {
    let c = build(&fixtures::orders());
    let spec = continuous(&c).1.spec.as_ref().unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert!(spec.min_available.is_none(), "minAvailable would block every drain of a single runner");
    assert_eq!(spec.selector.as_ref().unwrap().match_labels.as_ref().unwrap(), &selector_labels("orders"));
}

#[test]
fn a_batch_flow_renders_a_cron_job_and_its_queue_claim() {
    let c = build(&fixtures::nightly());
    insta::assert_yaml_snapshot!("nightly_batch", rendered(&c));
}

#[test]
fn a_batch_flow_runs_once_at_a_time_on_its_queue_claim() {
    let c = build(&fixtures::nightly());
    let (cron, claim) = batch(&c);
    let spec = cron.spec.as_ref().unwrap();
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"), "runs share the queue claim");
    let pod = spec.job_template.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    assert_eq!(container.args.as_ref().unwrap().last().map(String::as_str), Some("--once"));
    assert!(container.readiness_probe.is_none() && container.liveness_probe.is_none());
    let queue = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "queue").unwrap();
    assert_eq!(Some(&queue.persistent_volume_claim.as_ref().unwrap().claim_name), claim.metadata.name.as_ref());
}

#[test]
fn a_suspended_batch_flow_starts_no_run() {
    let mut f = fixtures::nightly();
    assert_eq!(batch(&build(&f)).0.spec.as_ref().unwrap().suspend, Some(false));
    f.flows[0].spec.0.suspend = true;
    assert_eq!(batch(&build(&f)).0.spec.as_ref().unwrap().suspend, Some(true));
}

#[test]
fn a_flow_image_overrides_the_operator_default() {
    let mut f = fixtures::orders();
    f.flows[0].spec.0.runner.image = Some("registry.example.com/entrepot:pinned".into());
    let c = build(&f);
    assert_eq!(pod(&c).containers[0].image.as_deref(), Some("registry.example.com/entrepot:pinned"));
}

fn annotation(c: &Children) -> String {
    let meta = sts(c).spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
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
    f.flows[0].spec.0.runner.replicas = 0;
    f.flows[0].spec.0.runner.image = Some("registry.example.com/entrepot:pinned".into());
    f.flows[0].metadata.generation = Some(7);
    f.flows[0].metadata.labels = Some([("team".to_string(), "ops".to_string())].into());
    let scaled = build(&f);
    assert_eq!(scaled.checksum, before, "scaling or relabelling must not restart the pods");
    assert_eq!(sts(&scaled).spec.as_ref().unwrap().replicas, Some(0));
    // And a connector the flow does not use is not in its config at all.
    let unrelated = f.connector("shop").clone();
    let mut more = f.clone();
    let mut extra = unrelated;
    extra.metadata.name = Some("unused".into());
    more.connectors.push(extra);
    assert_eq!(build(&more).checksum, before);
}

#[test]
fn a_build_error_falls_into_its_category() {
    use crate::error::{Category, Error};
    assert_eq!(Error::from(BuildError::NoOwnerReference).category(), Category::InvalidObject);
    assert_eq!(Error::from(BuildError::NoSchedule { flow: "nightly".into() }).category(), Category::InvalidSpec);
}

#[path = "build_jetstream_tests.rs"]
mod jetstream;
