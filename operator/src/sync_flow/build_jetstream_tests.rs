//! What a flow whose queue is in NATS JetStream renders (`fixtures/jetstream.yaml`):
//! interchangeable runner pods that share the queue, and a runner configuration that
//! carries every NATS setting, the operator's defaults included.

use entrepot_api::resource::JetStreamQueueSpec;
use k8s_openapi::api::apps::v1::Deployment;

use super::*;
use crate::sync_flow::secret_volumes::SECRETS_DIR;

fn shared(c: &Children) -> (&Deployment, &PodDisruptionBudget, &Service) {
    match &c.workload {
        Workload::Shared { deployment, disruption_budget, service } => (deployment, disruption_budget, service),
        _ => panic!("a JetStream flow renders a Deployment"),
    }
}

fn shared_pod(c: &Children) -> &PodSpec {
    shared(c).0.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

/// The flow's JetStream settings as its runner reads them.
fn rendered_queue(c: &Children) -> JetStreamQueueSpec {
    let read: RunnerConfig = serde_saphyr::from_str(&c.config_map.data.as_ref().unwrap()[CONFIG_KEY]).unwrap();
    read.flows[0].spec.runner.queue.jetstream.clone().expect("the queue in JetStream")
}

#[test]
fn a_jetstream_flow_renders_its_children() {
    let c = build(&fixtures::jetstream());
    insta::assert_yaml_snapshot!("orders_jetstream", rendered(&c));
}

#[test]
fn its_runners_are_a_deployment_of_the_flows_replicas_without_a_claim() {
    let c = build(&fixtures::jetstream());
    let (deployment, _, service) = shared(&c);
    let spec = deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.selector.match_labels.as_ref().unwrap(), &selector_labels("orders"));
    assert_eq!(service.spec.as_ref().unwrap().selector.as_ref().unwrap(), &selector_labels("orders"));
    assert_eq!(c.workload.reference("orders"), "Deployment/orders-runner");
    // A new runner is up before an old one goes.
    let rolling = spec.strategy.as_ref().unwrap().rolling_update.as_ref().unwrap();
    assert_eq!(
        (rolling.max_surge.clone(), rolling.max_unavailable.clone()),
        (Some(IntOrString::Int(1)), Some(IntOrString::Int(0)))
    );
    // No claim anywhere: the data directory is scratch space.
    let volumes = shared_pod(&c).volumes.clone().unwrap();
    assert!(volumes.iter().all(|v| v.persistent_volume_claim.is_none()), "{volumes:?}");
    let data = volumes.iter().find(|v| v.name == "data").unwrap();
    assert!(data.empty_dir.as_ref().unwrap().size_limit.is_some());
    let mounts = shared_pod(&c).containers[0].volume_mounts.clone().unwrap();
    assert!(mounts.iter().any(|m| m.name == "data" && m.mount_path == "/var/lib/entrepot"));
    let mut suspended = fixtures::jetstream();
    suspended.flows[0].spec.0.suspend = true;
    assert_eq!(shared(&build(&suspended)).0.spec.as_ref().unwrap().replicas, Some(0));
}

#[test]
fn its_budget_lets_one_runner_go_at_a_time_and_never_holds_on_to_a_broken_one() {
    let c = build(&fixtures::jetstream());
    let spec = shared(&c).1.spec.clone().unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert!(spec.min_available.is_none());
    assert_eq!(spec.unhealthy_pod_eviction_policy.as_deref(), Some("AlwaysAllow"));
    // An embedded flow's budget is as it was.
    assert!(continuous(&build(&fixtures::orders())).1.spec.as_ref().unwrap().unhealthy_pod_eviction_policy.is_none());
}

#[test]
fn the_runner_configuration_carries_the_operators_nats_defaults() {
    let c = build(&fixtures::jetstream());
    let queue = rendered_queue(&c);
    assert_eq!(queue.url.as_deref(), Some("nats://nats.nats:4222"));
    assert_eq!(queue.replicas, Some(3));
    assert_eq!(queue.partitions, 32);
    // The flow has a token of its own: the chart's credentials are not added.
    assert_eq!(queue.token_secret_ref.as_ref().map(|s| s.name.as_str()), Some("nats-orders"));
    assert_eq!(queue.credentials_secret_ref, None);

    let mut f = fixtures::jetstream();
    let own = f.flows[0].spec.0.runner.queue.jetstream.as_mut().unwrap();
    own.token_secret_ref = None;
    own.url = Some("nats://nats-a:4222,nats://nats-b:4222".into());
    own.replicas = Some(1);
    let queue = rendered_queue(&build(&f));
    assert_eq!(queue.url.as_deref(), Some("nats://nats-a:4222,nats://nats-b:4222"));
    assert_eq!(queue.replicas, Some(1));
    assert_eq!(
        queue.credentials_secret_ref.map(|s| (s.name, s.key)),
        Some(("nats-runner".into(), "runner.creds".into()))
    );
}

#[test]
fn the_nats_secret_reaches_the_runner_as_a_file_never_as_environment() {
    let c = build(&fixtures::jetstream());
    let pod = shared_pod(&c);
    let container = &pod.containers[0];
    // The only variable is the pod's name, from the downward API (the runner's name
    // among the flow's runners): no value, no Secret.
    let env = container.env.clone().unwrap();
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].name, "POD_NAME");
    let from = env[0].value_from.as_ref().unwrap();
    assert_eq!(from.field_ref.as_ref().unwrap().field_path, "metadata.name");
    assert!(env[0].value.is_none() && from.secret_key_ref.is_none());
    let projected = pod.volumes.as_ref().unwrap().iter().find_map(|v| v.projected.clone()).unwrap();
    let files: Vec<String> = projected
        .sources
        .unwrap()
        .iter()
        .flat_map(|s| s.secret.as_ref().unwrap().items.clone().unwrap())
        .map(|i| i.path)
        .collect();
    assert!(files.contains(&"nats-orders/token".to_string()), "{files:?}");
    let mount = container.volume_mounts.as_ref().unwrap().iter().find(|m| m.mount_path == SECRETS_DIR).unwrap();
    assert!(mount.sub_path.is_none(), "refreshed by the kubelet");
}

#[test]
fn another_nats_default_rolls_the_runners() {
    let f = fixtures::jetstream();
    let before = build(&f).checksum;
    let mut moved = defaults();
    moved.nats.url = Some("nats://nats.other:4222".into());
    let config = resolve_with(&f, &moved.nats);
    assert_ne!(children(f.flow(), &config, &moved).unwrap().checksum, before);
}

#[test]
fn a_batch_flow_on_jetstream_has_no_queue_claim() {
    let mut f = fixtures::nightly();
    f.flows[0].spec.0.runner.queue.jetstream = Some(JetStreamQueueSpec::default());
    let c = build(&f);
    let Workload::Batch { cron_job, queue_claim } = &c.workload else { panic!("a CronJob") };
    assert!(queue_claim.is_none());
    let pod = cron_job.spec.as_ref().unwrap().job_template.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let volumes = pod.volumes.as_ref().unwrap();
    assert!(volumes.iter().any(|v| v.name == "data" && v.empty_dir.is_some()));
    assert!(!volumes.iter().any(|v| v.name == "queue"), "{volumes:?}");
    assert_eq!(rendered_queue(&c).url.as_deref(), Some("nats://nats.nats:4222"));
}

#[test]
fn the_runner_pods_may_reach_nats_through_their_network_policy() {
    let mut with_policy = defaults();
    with_policy.network_policy.enabled = true;
    let f = fixtures::jetstream();
    let policy = children(f.flow(), &resolve(&f), &with_policy).unwrap().network_policy.unwrap();
    let spec = policy.spec.unwrap();
    // The policy restricts what comes in only: the runners' way out (to NATS, the
    // targets) is open.
    assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_string()][..]));
    assert!(spec.egress.is_none());
}
