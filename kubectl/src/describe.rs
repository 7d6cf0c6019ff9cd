//! `kubectl entrepot describe FLOW`: one SyncFlow as its operator last saw it: source,
//! targets with their health, the Connectors it calls, backlog, runner and conditions.

use std::fmt::Write;

use anyhow::{Context, Result};
use entrepot_operator::resources::SyncFlow;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client, ResourceExt};

use crate::status::{age, columns, last_error, one_line, ready};

/// The SyncFlow `name` of `namespace`; a clear error when there is none.
pub async fn flow(client: &Client, namespace: &str, name: &str) -> Result<SyncFlow> {
    let api: Api<SyncFlow> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await
        .with_context(|| format!("cannot read SyncFlow {name} in namespace {namespace}"))?
        .with_context(|| {
            format!("no SyncFlow {name} in namespace {namespace}: `kubectl entrepot status -A` lists them all")
        })
}

fn ago(time: Option<&Time>, now: i64) -> String {
    time.map_or_else(|| "-".to_string(), |t| format!("{} ago", age(now - t.0.as_second())))
}

/// The flow as text, for people.
pub fn render(flow: &SyncFlow, now: i64) -> String {
    let mut out = String::new();
    let w = &mut out;
    let status = flow.status.clone().unwrap_or_default();
    let line = |w: &mut String, label: &str, value: String| writeln!(w, "{label:<13}{value}").expect("to a String");
    line(w, "Name:", flow.name_any());
    line(w, "Namespace:", flow.namespace().unwrap_or_default());
    let source = &flow.spec.source;
    line(w, "Source:", format!("{} ({})", source.connector_ref, source.entity));
    line(w, "Ready:", ready(flow));
    if let Some(error) = last_error(flow) {
        line(w, "Last error:", one_line(&error, 200));
    }
    let backlog = match &status.backlog {
        Some(b) => format!(
            "{} pending, oldest {}, {} dead-lettered",
            b.pending,
            age(b.oldest_pending_seconds),
            b.dead_lettered
        ),
        None => "not reported yet".to_string(),
    };
    line(w, "Backlog:", backlog);
    if let Some(t) = &status.throughput {
        line(
            w,
            "Throughput:",
            format!(
                "{}/min delivered, {}/min failed, {}/min throttled",
                t.delivered_per_minute, t.failed_per_minute, t.throttled_per_minute
            ),
        );
    }
    line(w, "Delivered:", status.delivered.map_or_else(|| "-".to_string(), |d| d.to_string()));
    line(w, "Last deliv.:", ago(status.last_delivered_time.as_ref(), now));
    if let Some(r) = &status.runner {
        line(w, "Runner:", format!("{} ({}/{} available)", r.workload, r.available_replicas, r.replicas));
    }

    w.push_str("\nTargets:\n");
    let mut rows =
        vec![["NAME", "CONNECTOR", "ENTITY", "HEALTH", "LAST DELIVERED", "LAST ERROR"].map(String::from).to_vec()];
    for target in &flow.spec.targets {
        let report = status.targets.iter().find(|t| t.connector == target.connector_ref);
        let error = report.and_then(|r| r.last_error.clone());
        let health = match (report, &error) {
            (None, _) => "Unknown",
            (Some(_), Some(_)) => "Failing",
            (Some(_), None) => "Healthy",
        };
        rows.push(vec![
            target.name.clone().unwrap_or_else(|| target.connector_ref.clone()),
            target.connector_ref.clone(),
            target.entity.clone(),
            health.to_string(),
            ago(report.and_then(|r| r.last_delivered_time.as_ref()), now),
            error.map_or_else(|| "-".to_string(), |e| one_line(&e, 100)),
        ]);
    }
    indent(w, &columns(&rows));

    if !status.connectors.is_empty() {
        w.push_str("\nConnectors:\n");
        let mut rows = vec![["NAME", "LAST SUCCESS", "LAST ERROR", "CATEGORY", "MESSAGE"].map(String::from).to_vec()];
        for c in &status.connectors {
            rows.push(vec![
                c.name.clone(),
                ago(c.last_success_time.as_ref(), now),
                ago(c.last_error_time.as_ref(), now),
                c.last_error_category.clone().unwrap_or_else(|| "-".to_string()),
                c.last_error_message.as_deref().map_or_else(|| "-".to_string(), |m| one_line(m, 100)),
            ]);
        }
        indent(w, &columns(&rows));
    }

    w.push_str("\nConditions:\n");
    if status.conditions.is_empty() {
        w.push_str("  none yet: the operator has not reconciled this flow\n");
    } else {
        let mut rows = vec![["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"].map(String::from).to_vec()];
        for c in &status.conditions {
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                ago(Some(&c.last_transition_time), now),
                one_line(&c.message, 160),
            ]);
        }
        indent(w, &columns(&rows));
    }
    out
}

fn indent(w: &mut String, text: &str) {
    for l in text.lines() {
        writeln!(w, "  {l}").expect("writing to a String");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = r#"
apiVersion: entrepot.io/v1alpha1
kind: SyncFlow
metadata: {name: orders, namespace: retail}
spec:
  source: {connectorRef: shop, entity: orders, trigger: {webhook: {topics: [orders/create]}}}
  targets:
    - {connectorRef: erp, entity: salesOrder}
    - {name: wms-copy, connectorRef: wms, entity: order}
status:
  observedGeneration: 1
  conditions:
    - {type: Ready, status: "True", reason: Syncing, message: "", lastTransitionTime: "2026-01-01T00:00:00Z"}
  backlog: {pending: 0, oldestPendingSeconds: 0, deadLettered: 1}
  runner: {workload: StatefulSet/orders-runner, configChecksum: abc, replicas: 1, availableReplicas: 1}
  targets:
    - {connector: erp, lastError: "rejected: 422 invalid SKU", lastDeliveredTime: "2026-01-01T00:00:00Z"}
  connectors:
    - {name: erp, lastErrorCategory: rejected, lastErrorMessage: "422 invalid SKU", lastErrorTime: "2026-01-01T00:00:00Z"}
"#;

    #[test]
    fn a_flow_shows_each_target_with_its_health_and_its_conditions() {
        let flow: SyncFlow = serde_saphyr::from_str(FLOW).unwrap();
        let now = jiff::Timestamp::from_second(1_767_225_600 + 600).unwrap().as_second();
        let text = render(&flow, now);
        assert!(text.contains("Source:      shop (orders)"), "{text}");
        assert!(text.contains("0 pending, oldest 0s, 1 dead-lettered"), "{text}");
        assert!(text.contains("StatefulSet/orders-runner (1/1 available)"), "{text}");
        let erp = text.lines().find(|l| l.trim_start().starts_with("erp ")).unwrap();
        assert!(
            erp.contains("Failing") && erp.contains("10m ago") && erp.ends_with("rejected: 422 invalid SKU"),
            "{text}"
        );
        let wms = text.lines().find(|l| l.trim_start().starts_with("wms-copy")).unwrap();
        assert!(wms.contains("Unknown"), "{text}");
        assert!(text.contains("  Ready   True     Syncing   10m ago"), "{text}");
    }
}
