//! Every panel of every Grafana dashboard the chart ships (`charts/entrepot/dashboards/`)
//! returns series from a real Prometheus (Debian's `/usr/bin/prometheus`) scraping a
//! runner that has moved records through every path the panels show. Template
//! variables get what Grafana sends with "All" selected: the values of the variable's own
//! `label_values(...)` query, as a regex alternation; `$__rate_interval` gets `1m`.

use std::{collections::BTreeMap, path::PathBuf};

use entrepot_e2e::{
    observed::{ObservedRunner, Prometheus},
    repo_root,
};
use serde_json::Value;

const JOB: &str = "entrepot-runner";

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = repo_root().join("charts/entrepot/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let dashboards: Vec<(PathBuf, Value)> = files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let json = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, json)
        })
        .collect();
    assert_eq!(dashboards.len(), 4, "fleet, flow, connector and inventory dashboards: {dashboards:?}");
    dashboards
}

/// Every panel, rows' nested panels included, with its title.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// `$name` and `${name}` of every variable replaced.
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut text = expr.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m");
    // Longer names first, so `$flow` does not eat the start of `$flowing`.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        text = text.replace(&format!("${{{name}}}"), &values[name]).replace(&format!("${name}"), &values[name]);
    }
    assert!(!text.contains('$'), "a variable left in {text}");
    text
}

/// `label_values(selector, label)` split in two.
fn label_values_query(query: &str) -> (String, String) {
    let inner = query.trim().strip_prefix("label_values(").and_then(|q| q.strip_suffix(')'));
    let inner = inner.unwrap_or_else(|| panic!("a variable query of the form label_values(selector, label): {query}"));
    let (selector, label) = inner.rsplit_once(',').expect("label_values(selector, label)");
    (selector.trim().to_string(), label.trim().to_string())
}

#[tokio::test]
async fn every_panel_of_every_dashboard_returns_series_from_a_real_prometheus() {
    let observed = ObservedRunner::start().await;
    let prometheus = Prometheus::start(JOB, observed.admin_address()).await;
    prometheus.wait_for_scrapes(JOB, 4).await;
    let mut failures = Vec::new();
    let mut queries = 0;
    for (path, dashboard) in dashboards() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut values = BTreeMap::new();
        values.insert("datasource".to_string(), "prometheus".to_string());
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            if variable["type"] != "query" {
                continue;
            }
            let name = variable["name"].as_str().unwrap().to_string();
            let query = variable["query"]["query"].as_str().or(variable["query"].as_str()).unwrap();
            let (selector, label) = label_values_query(&substitute(query, &values));
            let found = prometheus.label_values(&label, &selector).await;
            if found.is_empty() {
                failures.push(format!("{file}: variable {name}: label_values({selector}, {label}) has no values"));
            }
            values.insert(name, format!("({})", found.join("|")));
        }
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else { continue };
                let query = substitute(expr, &values);
                queries += 1;
                match prometheus.query(&query).await {
                    Ok(series) if !series.is_empty() => {}
                    Ok(_) => failures.push(format!("{file}: panel {title:?}: no series for {query}")),
                    Err(e) => failures.push(format!("{file}: panel {title:?}: {query}: {e}")),
                }
            }
        }
    }
    assert!(queries >= 30, "only {queries} panel queries found");
    assert!(failures.is_empty(), "{} of {queries} panel queries failed:\n{}", failures.len(), failures.join("\n"));
    observed.runner.stop().await;
}

#[test]
fn every_dashboard_has_a_uid_a_datasource_variable_and_panels_with_queries() {
    for (path, dashboard) in dashboards() {
        let file = path.display();
        assert!(dashboard["uid"].as_str().is_some_and(|u| u.starts_with("entrepot-")), "{file}: uid");
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        assert!(variables.iter().any(|v| v["type"] == "datasource"), "{file}: a datasource variable");
        for panel in panels(&dashboard) {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{file}: {}", panel["title"]);
            assert!(
                panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "{file}: {} has no query",
                panel["title"]
            );
        }
    }
}
