//! `kubectl entrepot status`: one line per SyncFlow, read from the status the operator
//! writes (the same fields as the printer columns of `kubectl get syncflows`).

use std::fmt::Write;

use anyhow::{Context, Result};
use entrepot_operator::resources::SyncFlow;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, Client, ResourceExt, api::ListParams};

/// The SyncFlows of `namespace`, or of every namespace when `None`, by namespace and name.
pub async fn flows(client: &Client, namespace: Option<&str>) -> Result<Vec<SyncFlow>> {
    let api: Api<SyncFlow> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let where_ = namespace.map_or_else(|| "any namespace".to_string(), |ns| format!("namespace {ns}"));
    let mut list = api
        .list(&ListParams::default())
        .await
        .with_context(|| format!("cannot list the SyncFlows of {where_} (is the Entrepot CRD installed?)"))?
        .items;
    list.sort_by_key(|f| (f.namespace(), f.name_any()));
    Ok(list)
}

/// Now, in seconds since the epoch, for ages.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The condition `type_` of a flow, if the operator has set it.
pub fn condition<'a>(flow: &'a SyncFlow, type_: &str) -> Option<&'a Condition> {
    flow.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// `True`, `False`, or `Unknown` when the operator has not said (yet).
pub fn ready(flow: &SyncFlow) -> String {
    condition(flow, "Ready").map_or_else(|| "Unknown".to_string(), |c| c.status.clone())
}

/// What went wrong last: a target's last failure, else why the flow is not Ready.
pub fn last_error(flow: &SyncFlow) -> Option<String> {
    let status = flow.status.as_ref()?;
    let target = status.targets.iter().find_map(|t| Some(format!("{}: {}", t.connector, t.last_error.as_ref()?)));
    target.or_else(|| {
        let c = condition(flow, "Ready").filter(|c| c.status != "True")?;
        Some(if c.message.is_empty() { c.reason.clone() } else { format!("{}: {}", c.reason, c.message) })
    })
}

/// A duration in seconds as people read it: `45s`, `12m`, `3h`, `2d`.
pub fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

/// At most `max` characters of `text` on one line, `…` where cut.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        return flat;
    }
    flat.chars().take(max.saturating_sub(1)).chain(['…']).collect()
}

/// The table: NAMESPACE (with `all_namespaces`), NAME, READY, PENDING, OLDEST, DLQ, DELIVERED, LAST ERROR.
pub fn table(flows: &[SyncFlow], all_namespaces: bool) -> String {
    if flows.is_empty() {
        return "No SyncFlows found.\n".to_string();
    }
    let mut rows = vec![
        ["NAMESPACE", "NAME", "READY", "PENDING", "OLDEST", "DLQ", "DELIVERED", "LAST ERROR"]
            .map(String::from)
            .to_vec(),
    ];
    for flow in flows {
        let status = flow.status.clone().unwrap_or_default();
        let counted = status.backlog.is_some();
        let backlog = status.backlog.unwrap_or_default();
        let number = |n: i64| if counted { n.to_string() } else { "-".to_string() };
        rows.push(vec![
            flow.namespace().unwrap_or_default(),
            flow.name_any(),
            ready(flow),
            number(backlog.pending),
            if counted { age(backlog.oldest_pending_seconds) } else { "-".to_string() },
            number(backlog.dead_lettered),
            status.delivered.map_or_else(|| "-".to_string(), |d| d.to_string()),
            last_error(flow).map_or_else(|| "-".to_string(), |e| one_line(&e, 80)),
        ]);
    }
    let skip = usize::from(!all_namespaces);
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.into_iter().skip(skip).collect()).collect();
    columns(&rows)
}

/// Rows as aligned columns, three spaces apart; the last column is not padded.
pub fn columns(rows: &[Vec<String>]) -> String {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                write!(out, "{cell:<width$}   ", width = widths[i]).expect("writing to a String");
            }
        }
        out.truncate(out.trim_end_matches(' ').len());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(yaml: &str) -> SyncFlow {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const FLOW: &str = r#"
apiVersion: entrepot.io/v1alpha1
kind: SyncFlow
metadata: {name: orders, namespace: retail}
spec:
  source: {connectorRef: shop, entity: orders, trigger: {webhook: {topics: [orders/create]}}}
  targets: [{connectorRef: erp, entity: salesOrder}]
status:
  observedGeneration: 1
  conditions:
    - {type: Ready, status: "False", reason: TargetFailing, message: "erp refuses records", lastTransitionTime: "2026-01-01T00:00:00Z"}
  backlog: {pending: 3, oldestPendingSeconds: 400, deadLettered: 2}
  delivered: 7
  targets:
    - {connector: erp, lastError: "rejected: 422 invalid SKU"}
"#;

    #[test]
    fn a_flow_shows_its_readiness_backlog_and_last_error() {
        let text = table(&[flow(FLOW)], true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME     READY"), "{text}");
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&row[..7], ["retail", "orders", "False", "3", "6m", "2", "7"], "{text}");
        assert!(lines[1].ends_with("erp: rejected: 422 invalid SKU"), "{text}");
    }

    #[test]
    fn a_flow_the_operator_has_not_looked_at_shows_unknown_and_no_counts() {
        let fresh = flow(FLOW.split("status:").next().unwrap());
        let text = table(&[fresh], false);
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row, ["orders", "Unknown", "-", "-", "-", "-", "-"], "{text}");
        assert_eq!(table(&[], false), "No SyncFlows found.\n");
    }

    #[test]
    fn long_errors_are_cut_to_one_line() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line(&"x".repeat(20), 5), "xxxx…");
        assert_eq!(age(45), "45s");
        assert_eq!(age(7_300), "2h");
    }
}
