//! The runner's `/metrics`, scraped while it moves records, passes `promtool check
//! metrics` (Prometheus' own lint of names, types, units and help), and carries the
//! series retail operations read: posting time, inventory freshness per channel, failed
//! transactions by category, the replay backlog and duplicates, each with bounded labels.

use std::{io::Write, process::Stdio};

use entrepot_e2e::{
    FLOW,
    observed::{CHANNEL, INVENTORY_FLOW, ObservedRunner, prometheus_tool},
};

#[tokio::test]
async fn the_scrape_of_a_runner_moving_records_passes_promtool_check_metrics() {
    let observed = ObservedRunner::start().await;
    let text = observed.scrape().await;
    let mut promtool = std::process::Command::new(prometheus_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");

    let orders = format!(r#"connector="erp-demo",flow="{FLOW}",target="erp-demo""#);
    let channel = format!(r#"channel="{CHANNEL}",connector="erp-demo",flow="{INVENTORY_FLOW}",target="{CHANNEL}""#);
    for series in [
        format!("entrepot_delivery_latency_seconds_count{{{orders}}} 2"),
        format!("entrepot_records_delivered_total{{{orders}}} 2"),
        format!(r#"entrepot_records_failed_total{{category="throttled",{orders}}} 3"#),
        format!(r#"entrepot_records_failed_total{{category="business",{orders}}} 1"#),
        format!(r#"entrepot_records_failed_total{{category="mapping",connector="",flow="{FLOW}",target=""}} 1"#),
        format!(
            r#"entrepot_records_dead_lettered_total{{connector="erp-demo",flow="{FLOW}",reason="rejected",target="erp-demo"}} 1"#
        ),
        format!(r#"entrepot_records_dead_lettered_total{{connector="",flow="{FLOW}",reason="mapping",target=""}} 1"#),
        format!(r#"entrepot_records_duplicate_total{{flow="{FLOW}",stage="delivery_id"}} 1"#),
        format!(r#"entrepot_dead_letters{{flow="{FLOW}"}} 2"#),
        format!(r#"entrepot_freshness_budget_seconds{{flow="{INVENTORY_FLOW}"}} 120"#),
        "entrepot_runner_ready 1".to_string(),
        r#"entrepot_connector_rate_limit{connector="erp-demo"}"#.to_string(),
        format!("entrepot_inventory_last_event_timestamp_seconds{{{channel}}}"),
    ] {
        assert!(text.contains(&series), "missing {series} in\n{text}");
    }
    assert!(
        !text.contains(&format!("entrepot_inventory_last_event_timestamp_seconds{{channel=\"erp-demo\",connector=\"erp-demo\",flow=\"{FLOW}\"")),
        "an order flow has no inventory freshness"
    );
    // Record ids never become label values.
    for id in ["shopify:1", "order-1", "MUG-WHT"] {
        assert!(!text.contains(id), "{id} is a label value:\n{text}");
    }
    observed.runner.stop().await;
}
