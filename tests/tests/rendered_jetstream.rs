//! The contract between the operator and the runner for a flow whose queue is in NATS
//! JetStream: two runners started from the pod the operator renders (its `runner.yaml`
//! with the operator's NATS defaults filled in, the flow's NATS token mounted as a file,
//! the pod's name from the downward API) work in the streams the operator made with its
//! own token; an order posted to either runner reaches the ERP, and the operator reads
//! the flow's backlog back down to nothing. No kubelet runs here: `RenderedPod` stands
//! in for each pod.

use std::time::Duration;

use entrepot_api::resource::{JetStreamQueueSpec, SecretKeySelector};
use entrepot_e2e::{
    rendered_pod::{RenderedPod, flow_in_cluster, secret_values},
    *,
};
use entrepot_operator::{
    nats_io::{Auth, Connections},
    sync_flow::{
        build::{CONFIG_KEY, RunnerDefaults, Workload, children},
        jetstream::{NatsDefaults, queue_of, with_defaults},
        names::admin_token_secret_name,
        validate::validate,
    },
};
use entrepot_sim::{
    erp::{self, ErpConfig},
    nats::NatsServer,
};

/// The token the flow's runners connect with (the flow's `tokenSecretRef`).
const RUNNERS_TOKEN: &str = "runners-7c1d";

#[tokio::test]
async fn two_runners_rendered_by_the_operator_share_the_queue_it_provisioned() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_with_token(RUNNERS_TOKEN).await;
    let erp = erp::bind(ErpConfig { bearer_token: Some(ERP_TOKEN.into()), ..ErpConfig::default() }, "127.0.0.1:0")
        .await
        .unwrap();
    let manifests = quickstart();

    // The quickstart flow on a JetStream queue of two runners, naming no server: the
    // chart's nats.url is the test server.
    let (key, spec) = manifests.flows.iter().next().unwrap();
    let mut spec = spec.clone();
    spec.runner.replicas = 2;
    spec.runner.queue.jetstream = Some(JetStreamQueueSpec {
        token_secret_ref: Some(SecretKeySelector { name: "nats-runners".into(), key: "token".into() }),
        partitions: 4,
        ..JetStreamQueueSpec::default()
    });
    let uid = "5f1c1a52-0000-4000-8000-000000000002";
    let (flow, refs) = flow_in_cluster(&manifests, &key.name, spec.clone(), &erp.base_url(), uid);
    let defaults = RunnerDefaults {
        nats: NatsDefaults { url: Some(nats.url()), replicas: Some(1), credentials_secret: None },
        ..RunnerDefaults::with_image("entrepot:test")
    };
    let config = with_defaults(validate(&key.name, "retail", &spec, &refs).unwrap(), &defaults.nats).unwrap();

    // The operator's part: the streams and buckets, with its own token (the file the
    // chart mounts from nats.operatorTokenSecret; the same server takes one token here).
    let token_file = dir.path().join("operator-token");
    std::fs::write(&token_file, RUNNERS_TOKEN).unwrap();
    let operator = Connections::new(Auth::TokenFile(token_file));
    let queue = queue_of(&config).expect("a JetStream flow");
    operator.provision(&queue.url, &queue.plans).await.unwrap();
    let built = children(&flow, &config, &defaults).unwrap();
    let Workload::Shared { deployment, .. } = built.workload else { panic!("a JetStream flow runs as a Deployment") };
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let template = spec.template.spec.unwrap();
    let runner_yaml = &built.config_map.data.as_ref().unwrap()[CONFIG_KEY];
    assert!(runner_yaml.contains(&nats.url()), "the runner is told the chart's NATS:\n{runner_yaml}");
    assert!(!runner_yaml.contains(RUNNERS_TOKEN), "only the token's Secret is named");

    // Each pod: its Secrets as files, its name as the downward API gives it.
    let mut secrets = secret_values(&manifests);
    secrets.insert((admin_token_secret_name(&key.name), "token".into()), "admin-token".into());
    secrets.insert(("nats-runners".into(), "token".into()), RUNNERS_TOKEN.into());
    let mut runners = Vec::new();
    for i in 0..2 {
        let pod = RenderedPod::new(&dir.path().join(format!("pod-{i}")), runner_yaml, template.clone());
        pod.write_secrets(1, &secrets);
        let env = pod.container().env.clone().unwrap_or_default();
        let named = env.iter().find(|e| e.name == "POD_NAME").expect("the pod's name");
        assert_eq!(named.value_from.as_ref().and_then(|f| f.field_ref.as_ref()).unwrap().field_path, "metadata.name");
        let env = vec![
            ("POD_NAME".to_string(), format!("{}-runner-7d9f-{i}", key.name)),
            ("ENTREPOT_JETSTREAM_LEASES".into(), "3000,500,1000".into()),
        ];
        let log = dir.path().join(format!("runner-{i}.log"));
        runners.push(RunnerProcess::spawn_logged(pod.args(), env, &log).await);
    }

    // One order through each runner.
    for (i, runner) in runners.iter().enumerate() {
        let id = 5000 + i as u64;
        let order = shopify_order(id, "SKU-9", "2026-11-27T10:05:00-05:00");
        let delivery = format!("delivery-{id}");
        assert_eq!(post_webhook(&runner.webhook(FLOW), &order, &delivery, None).await.status(), 200);
    }
    eventually(Duration::from_secs(60), "both orders in the ERP", || async {
        erp.order_by_external_id("shopify:5000").is_some() && erp.order_by_external_id("shopify:5001").is_some()
    })
    .await;
    assert_eq!(erp.orders().len(), 2);

    // The operator's view of the queue: nothing left.
    eventually(Duration::from_secs(30), "the backlog JetStream counts back to 0", || async {
        operator.backlog(&queue.url, &queue.layout).await.is_ok_and(|b| b.pending == 0 && b.dead_lettered == 0)
    })
    .await;
    for runner in runners {
        runner.stop().await;
    }
}
