//! The alerts the chart ships (`charts/entrepot/rules/entrepot.rules.yaml`): each fires
//! on the series that should fire it and not on a healthy one (`promtool test rules`
//! over `tests/alerts/entrepot.rules.test.yaml`), is labelled `transient` or `business`,
//! and links a section of `docs/runbooks.md` that exists; every dead-letter reason has
//! its section there too.

use std::{collections::BTreeSet, process::Command};

use entrepot::queue::DeadLetterReason;
use entrepot_e2e::{observed::prometheus_tool, repo_root};
use serde_json::Value;

const RUNBOOKS: &str = "https://github.com/entrepot-io/entrepot/blob/main/docs/runbooks.md#";

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn alerts() -> Vec<Value> {
    let rules = yaml("charts/entrepot/rules/entrepot.rules.yaml");
    let alerts: Vec<Value> =
        rules["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect();
    assert_eq!(alerts.len(), 6, "one alert per kind of trouble");
    alerts
}

/// The anchors GitHub gives the headings of a Markdown file: lower case, punctuation
/// other than `-` and `_` dropped, spaces as `-`.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    markdown
        .lines()
        .filter(|l| {
            fenced ^= l.starts_with("```");
            !fenced && !l.starts_with("```")
        })
        .filter_map(|l| l.strip_prefix('#').map(|h| h.trim_start_matches('#').trim()))
        .map(|heading| {
            heading
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_fires_on_trouble_and_not_on_a_healthy_series() {
    let out = Command::new(prometheus_tool("promtool"))
        .args(["test", "rules", "entrepot.rules.test.yaml"])
        .current_dir(repo_root().join("tests/alerts"))
        .output()
        .expect("promtool runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("SUCCESS"), "promtool test rules:\n{said}");
    // Every alert has a test that fires it and one that does not.
    let tests = yaml("tests/alerts/entrepot.rules.test.yaml");
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        let cases: Vec<&Value> = tests["tests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
            .filter(|c| c["alertname"] == name)
            .collect();
        let fires = cases.iter().any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let quiet = cases.iter().any(|c| c["exp_alerts"].as_array().is_some_and(|a| a.is_empty()));
        assert!(fires && quiet, "{name}: a case where it fires and one where it does not");
    }
}

#[test]
fn every_alert_is_transient_or_business_and_links_a_runbook_section_that_exists() {
    let runbooks = std::fs::read_to_string(repo_root().join("docs/runbooks.md")).unwrap();
    let anchors = anchors(&runbooks);
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        let category = alert["labels"]["category"].as_str().unwrap_or_default();
        assert!(["transient", "business"].contains(&category), "{name}: category {category:?}");
        assert!(alert["labels"]["severity"].is_string(), "{name}: a severity");
        let url = alert["annotations"]["runbook_url"].as_str().unwrap_or_default();
        let anchor =
            url.strip_prefix(RUNBOOKS).unwrap_or_else(|| panic!("{name}: runbook_url {url} is not under {RUNBOOKS}"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: the anchor is the alert's name");
        assert!(anchors.contains(anchor), "{name}: docs/runbooks.md has no section #{anchor}");
    }
}

#[test]
fn every_dead_letter_reason_has_a_runbook_section() {
    let runbooks = std::fs::read_to_string(repo_root().join("docs/runbooks.md")).unwrap();
    let anchors = anchors(&runbooks);
    for reason in DeadLetterReason::ALL {
        let anchor = format!("dead-letter-{}", reason.as_str());
        assert!(
            anchors.contains(&anchor),
            "docs/runbooks.md has no section #{anchor} (heading `Dead letter: {}`)",
            reason.as_str()
        );
    }
}
