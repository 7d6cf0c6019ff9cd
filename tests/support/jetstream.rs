//! Runners of flows whose queue is in NATS JetStream (`tests/jetstream.rs`,
//! `tests/jetstream_quota.rs`): the quickstart's flow on such a queue, runner processes of
//! it, and their logs.

use std::path::Path;

use super::RunnerProcess;

/// The quickstart's flow from the storefront's order webhooks to the ERP, named `name`,
/// with `delivery` (lines under `spec.delivery`, indented by four spaces) beside its
/// ordering and idempotency keys, run by `replicas` runners on a JetStream queue at
/// `nats` (12 partitions, streams kept in `stream_replicas` copies).
pub fn jetstream_flow(name: &str, delivery: &str, replicas: usize, nats: &str, stream_replicas: u8) -> String {
    format!(
        "apiVersion: entrepot.io/v1alpha1
kind: SyncFlow
metadata:
  name: {name}
spec:
  source:
    connectorRef: shopify-demo
    entity: orders
    trigger:
      webhook:
        topics: [orders/create, orders/updated]
  mappingRef: shopify-order-to-canonical
  targets:
    - connectorRef: erp-demo
      entity: salesOrder
      path: /salesOrders
      mappingRef: canonical-to-erp-salesorder
      operation: create
  delivery:
    orderingKey: .orderId
    idempotencyKey: .orderId + \":\" + .sourceVersion
{delivery}
  runner:
    replicas: {replicas}
    queue:
      jetstream: {{url: '{nats}', partitions: 12, replicas: {stream_replicas}}}
"
    )
}

/// Runner `i` of the flows in `manifests`: its own ports and data directory under `dir`,
/// the same name after a restart (as a pod keeps its name when its container restarts),
/// leases that move within seconds, its log in `dir/runner-<i>.log`.
pub async fn jetstream_runner(dir: &Path, manifests: &Path, i: usize) -> RunnerProcess {
    let data = dir.join(format!("data-{i}"));
    let args = vec!["run".into(), manifests.display().to_string(), "--data-dir".into(), data.display().to_string()];
    let env = vec![
        ("ENTREPOT_RUNNER_NAME".into(), format!("runner-{i}")),
        ("ENTREPOT_JETSTREAM_LEASES".into(), "3000,500,1000".into()),
        ("ENTREPOT_LOG".into(), "info".into()),
    ];
    RunnerProcess::spawn_logged(args, env, &dir.join(format!("runner-{i}.log"))).await
}

/// The last lines of the logs of runners `0..runners` in `dir`, newest first: what a
/// failing test shows.
pub fn runner_logs(dir: &Path, runners: usize) -> String {
    (0..runners)
        .map(|i| std::fs::read_to_string(dir.join(format!("runner-{i}.log"))).unwrap_or_default())
        .map(|log| log.lines().rev().take(15).collect::<Vec<_>>().join("\n"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}
