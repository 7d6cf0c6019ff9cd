//! A SyncFlow whose queue is in NATS JetStream, through the operator's SyncFlow
//! controller (run in this process) against a real kube-apiserver and a real
//! `nats-server`: the runners become a Deployment, the flow gets its finalizer and its
//! streams and buckets as planned; a second reconcile changes nothing in NATS; the
//! backlog in `kubectl get syncflows` comes from JetStream while no runner runs; a
//! deleted flow waits for an unreachable NATS with a status that says so, and once NATS
//! is back its streams are deleted and the flow is gone. Its target Connector's quota
//! bucket is provisioned with it, kept while another flow sends there, and deleted with
//! the last such flow.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use entrepot_api::jetstream::{Layout, StreamKind};
use entrepot_e2e::{
    cluster::{ControlPlane, wait_for},
    repo_root,
};
use entrepot_operator::{
    metrics::Metrics,
    nats_io::{Change, Connections},
    resources::SyncFlow,
    sync_flow::{self, build::RunnerDefaults, jetstream::FINALIZER, jetstream::NatsDefaults},
};
use entrepot_sim::nats::NatsServer;
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};

const NS: &str = "shop";
const WAIT: Duration = Duration::from_secs(90);

const MANIFESTS: &str = r#"
apiVersion: entrepot.io/v1alpha1
kind: Connector
metadata: {name: shop, namespace: shop}
spec:
  type: shopify
  webhook:
    signature: shopify-hmac-sha256
    secretRef: {name: shop-webhook, key: secret}
---
apiVersion: entrepot.io/v1alpha1
kind: Connector
metadata: {name: erp, namespace: shop}
spec:
  type: rest
  endpoint: https://erp.example.com/api/v1
  auth:
    bearer:
      secretRef: {name: erp-api, key: token}
---
apiVersion: entrepot.io/v1alpha1
kind: Mapping
metadata: {name: order-to-erp, namespace: shop}
spec:
  program: '{externalId: (.id | tostring), amount: .total_price}'
---
apiVersion: entrepot.io/v1alpha1
kind: SyncFlow
metadata: {name: orders, namespace: shop}
spec:
  source:
    connectorRef: shop
    entity: orders
    trigger: {webhook: {topics: [orders/create]}}
  targets:
    - connectorRef: erp
      entity: salesOrder
      mappingRef: order-to-erp
      operation: upsert
  delivery:
    orderingKey: .id
  runner:
    replicas: 2
    queue:
      jetstream: {}
"#;

/// The flow as the API server holds it, if it does.
async fn flow(api: &Api<SyncFlow>) -> anyhow::Result<Option<SyncFlow>> {
    Ok(api.get_opt("orders").await?)
}

/// Makes the controller reconcile the flow now rather than at its next resync.
async fn touch(api: &Api<SyncFlow>, n: u32) {
    let patch = serde_json::json!({"metadata": {"annotations": {"example.com/touched": n.to_string()}}});
    api.patch("orders", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

/// Each stream's config and creation time, by name.
async fn streams(js: &jetstream::Context) -> Vec<(String, jetstream::stream::Config, String)> {
    let names: Vec<String> = js.stream_names().try_collect().await.unwrap();
    let mut out = Vec::new();
    for name in names {
        let info = js.get_stream(&name).await.unwrap().cached_info().clone();
        out.push((name, info.config, format!("{:?}", info.created)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn ready(flow: &SyncFlow) -> Option<(String, String, String)> {
    let c = flow.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_flow_gets_its_streams_reports_their_backlog_and_takes_them_along_when_deleted() {
    let cluster = ControlPlane::start().await.unwrap();
    let crds = repo_root().join("crds");
    cluster.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]).await.expect_ok("the CRDs");
    cluster
        .kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])
        .await
        .expect_ok("the CRDs are established");
    cluster.namespace(NS).await.unwrap();
    let mut nats = NatsServer::start().await;
    let url = nats.url();

    // The operator's SyncFlow controller, with the chart's NATS values.
    let defaults = RunnerDefaults {
        nats: NatsDefaults { url: Some(url.clone()), replicas: Some(1), credentials_secret: None },
        ..RunnerDefaults::with_image("ghcr.io/entrepot-io/entrepot:test")
    };
    let ctx = Arc::new(sync_flow::Context::new(cluster.client(), defaults, Metrics::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(sync_flow::run(ctx, Some(NS), async move {
        let _ = stopped.await;
    }));

    cluster
        .kubectl_as(&cluster.kubeconfig(), &["apply", "-f", "-"], Some(MANIFESTS))
        .await
        .expect_ok("the flow and what it references");
    let flows: Api<SyncFlow> = Api::namespaced(cluster.client(), NS);

    // The runners: a Deployment of the flow's replicas. The finalizer: on the flow.
    let deployment = wait_for(WAIT, "the runner Deployment", || async {
        Ok(Api::<Deployment>::namespaced(cluster.client(), NS).get_opt("orders-runner").await?)
    })
    .await
    .unwrap();
    assert_eq!(deployment.spec.unwrap().replicas, Some(2));
    let created = flow(&flows).await.unwrap().unwrap();
    assert_eq!(created.metadata.finalizers.clone().unwrap_or_default(), [FINALIZER]);

    // Its streams and buckets, and its target Connector's quota bucket, each as planned.
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    let layout = Layout::new(NS, "orders");
    let plans = layout.plan(&created.spec, 1);
    let connector = [Layout::connector_plan(NS, "erp", 1)];
    let made = wait_for(WAIT, "the flow's six streams and the Connector's bucket", || async {
        let made = streams(&js).await;
        Ok((made.len() == plans.len() + 1).then_some(made))
    })
    .await
    .unwrap();
    for plan in plans.iter().chain(&connector) {
        let name = if plan.kind == StreamKind::Bucket { format!("KV_{}", plan.name) } else { plan.name.clone() };
        let (_, config, _) = made.iter().find(|(n, _, _)| *n == name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!((config.num_replicas, config.max_age), (plan.replicas, plan.max_age.unwrap_or_default()), "{name}");
        if plan.kind == StreamKind::Stream {
            assert_eq!(config.subjects, plan.subjects, "{name}");
        }
    }

    // Three records waiting and one dead letter, no runner up: the backlog comes from
    // JetStream at the next reconcile, and a second reconcile changes nothing in NATS.
    for partition in [1, 2, 2] {
        js.publish(layout.inbox_subject(partition), "{}".into()).await.unwrap().await.unwrap();
    }
    js.publish(layout.dead_subject(), "{}".into()).await.unwrap().await.unwrap();
    let before = streams(&js).await;
    touch(&flows, 1).await;
    let status = wait_for(WAIT, "the JetStream backlog in the status", || async {
        let backlog = flow(&flows).await?.and_then(|f| f.status?.backlog);
        Ok(backlog.filter(|b| b.pending == 3 && b.dead_lettered == 1))
    })
    .await
    .unwrap();
    assert!(status.oldest_pending_seconds >= 0);
    assert_eq!(streams(&js).await, before, "a second reconcile changed a stream");
    let again = Connections::default().provision(&url, &plans).await.unwrap();
    assert!(again.iter().all(|(_, c)| *c == Change::Unchanged), "{again:?}");
    let again = Connections::default().provision_shared(&url, &connector).await.unwrap();
    assert_eq!(again, [(connector[0].name.clone(), Change::Unchanged)]);
    let table = cluster.kubectl(&["get", "syncflows", "-n", NS, "--no-headers"]).await;
    let row: Vec<&str> = table.stdout.split_whitespace().collect();
    // NAME READY SOURCE TARGETS BACKLOG OLDEST DLQ ...
    assert_eq!((row[0], row[4], row[6]), ("orders", "3", "1"), "kubectl get syncflows:\n{}", table.stdout);

    // A second JetStream flow sending to the same Connector: its quota bucket must
    // outlive the first flow.
    let mut returns = SyncFlow::new("returns", created.spec.clone());
    returns.metadata.namespace = Some(NS.into());
    flows.create(&PostParams::default(), &returns).await.expect("a second flow sending to erp");

    // NATS down, the flow deleted: it stays, and says why.
    nats.kill();
    cluster.kubectl(&["delete", "syncflow", "orders", "-n", NS, "--wait=false"]).await.expect_ok("delete");
    let (_, _, message) = wait_for(WAIT, "the flow kept, saying NATS does not answer", || async {
        let Some(f) = flow(&flows).await? else { anyhow::bail!("the flow went without its streams") };
        Ok(ready(&f).filter(|(_, reason, _)| reason == "QueueUnreachable"))
    })
    .await
    .unwrap();
    assert!(message.contains(&url) && message.contains(FINALIZER), "{message}");
    let kept = flow(&flows).await.unwrap().expect("kept while its streams cannot be deleted");
    assert!(kept.metadata.deletion_timestamp.is_some());

    // NATS back: the streams are deleted, then the flow; its children go with it.
    nats.restart().await;
    wait_for(Duration::from_secs(180), "the flow gone once its streams are", || async {
        Ok(flow(&flows).await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    let left: Vec<String> = streams(&js).await.into_iter().map(|(name, _, _)| name).collect();
    assert!(!left.iter().any(|name| layout.streams().contains(name)), "no stream of the flow is left: {left:?}");
    let bucket = format!("KV_{}", connector[0].name);
    assert!(left.contains(&bucket), "the Connector's bucket stays for the other flow: {left:?}");
    wait_for(WAIT, "the Deployment collected with its owner", || async {
        let gone = Api::<Deployment>::namespaced(cluster.client(), NS).get_opt("orders-runner").await?.is_none();
        Ok(gone.then_some(()))
    })
    .await
    .unwrap();

    // The last flow sending to the Connector deleted: its bucket goes with it.
    cluster.kubectl(&["delete", "syncflow", "returns", "-n", NS, "--wait=false"]).await.expect_ok("delete");
    wait_for(Duration::from_secs(180), "the second flow gone", || async {
        Ok(flows.get_opt("returns").await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    assert!(streams(&js).await.is_empty(), "nothing is left in NATS: {:?}", streams(&js).await);

    let _ = stop.send(());
    controller.await.unwrap();
}
