//! The chart's monitoring objects, rendered by `helm template`: the PodMonitor selects
//! the runner pods the operator renders and scrapes their admin port; the PrometheusRule
//! holds exactly the rules file `promtool test rules` checks (tests/alert_rules.rs), its
//! runbook links under `metrics.prometheusRules.runbookBaseUrl` when that is set; one
//! ConfigMap per dashboard carries the Grafana sidecar's label and the file as it is.
//! All three only when their value asks for them.

use entrepot_e2e::{chart::helm_template, quickstart, repo_root};
use entrepot_operator::{
    resources::{SyncFlow, SyncFlowSpec},
    sync_flow::{
        build::{RunnerDefaults, Workload, children},
        validate::{References, validate},
    },
};
use serde_json::Value;

const ENABLED: [&str; 6] = [
    "--set",
    "metrics.podMonitor.enabled=true",
    "--set",
    "metrics.prometheusRules.enabled=true",
    "--set",
    "metrics.dashboards.enabled=true",
];

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The quickstart flow's runner pod template, as the operator renders it.
fn runner_pod() -> Value {
    let manifests = quickstart();
    let refs = References {
        connectors: manifests.connectors.iter().map(|(k, c)| (k.name.clone(), Ok(c.clone()))).collect(),
        mappings: manifests.mappings.iter().map(|(k, m)| (k.name.clone(), Ok(m.clone()))).collect(),
    };
    let (key, spec) = manifests.flows.iter().next().unwrap();
    let mut flow = SyncFlow::new(&key.name, SyncFlowSpec(spec.clone()));
    flow.metadata.namespace = Some("retail".into());
    flow.metadata.uid = Some("5f1c1a52-0000-4000-8000-000000000002".into());
    let config = validate(&key.name, "retail", spec, &refs).unwrap();
    let built = children(&flow, &config, &RunnerDefaults::with_image("entrepot:test")).unwrap();
    let Workload::Continuous { stateful_set, .. } = built.workload else { panic!("the quickstart runs continuously") };
    serde_json::to_value(stateful_set.spec.unwrap().template).unwrap()
}

#[test]
fn monitoring_objects_are_rendered_only_when_asked_for() {
    let docs = helm_template(&[]);
    for kind in ["PodMonitor", "PrometheusRule"] {
        assert!(of_kind(&docs, kind).is_empty(), "no {kind} by default");
    }
    assert!(!docs.iter().any(|d| d["metadata"]["labels"]["grafana_dashboard"].is_string()), "no dashboards by default");
}

#[test]
fn the_pod_monitor_scrapes_the_admin_port_of_the_runner_pods_the_operator_renders() {
    let docs = helm_template(&ENABLED);
    let monitors = of_kind(&docs, "PodMonitor");
    assert_eq!(monitors.len(), 1);
    let spec = &monitors[0]["spec"];
    let pod = runner_pod();
    let labels = &pod["metadata"]["labels"];
    for (key, value) in spec["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[key], value, "the runner pod has {key}={value}: {labels}");
    }
    let endpoint = &spec["podMetricsEndpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    let ports = pod["spec"]["containers"][0]["ports"].as_array().unwrap();
    let port = ports.iter().find(|p| p["name"] == endpoint["port"]).expect("the endpoint names a port of the runner");
    assert_eq!(port["containerPort"], 9090, "the admin port, where /metrics is served");
    assert_eq!(spec["namespaceSelector"]["any"], true, "runners live in the flows' namespaces");
    let relabel = &endpoint["relabelings"][0];
    assert_eq!(
        (&relabel["targetLabel"], &relabel["replacement"]),
        (&Value::from("job"), &Value::from("entrepot-runner"))
    );

    let docs = helm_template(&[&ENABLED[..], &["--set", "watchNamespace=retail"]].concat());
    let spec = &of_kind(&docs, "PodMonitor")[0]["spec"];
    assert_eq!(spec["namespaceSelector"]["matchNames"], serde_json::json!(["retail"]));
}

#[test]
fn the_prometheus_rule_is_the_tested_rules_file() {
    let docs = helm_template(&ENABLED);
    let rules = of_kind(&docs, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let file = std::fs::read_to_string(repo_root().join("charts/entrepot/rules/entrepot.rules.yaml")).unwrap();
    let tested: Value = serde_saphyr::from_str(&file).unwrap();
    // With the default runbookBaseUrl, the links too are the file's as they are.
    assert_eq!(rules[0]["spec"], tested);
}

#[test]
fn the_runbook_links_point_at_the_base_url_the_values_give_each_keeping_its_anchor() {
    let base = "https://wiki.example.com/platform/entrepot/runbooks";
    let set = format!("metrics.prometheusRules.runbookBaseUrl={base}");
    let docs = helm_template(&[&ENABLED[..], &["--set", &set]].concat());
    let rendered = &of_kind(&docs, "PrometheusRule")[0]["spec"];
    let file = std::fs::read_to_string(repo_root().join("charts/entrepot/rules/entrepot.rules.yaml")).unwrap();
    let mut want: Value = serde_saphyr::from_str(&file).unwrap();
    for rule in want["groups"].as_array_mut().unwrap().iter_mut().flat_map(|g| g["rules"].as_array_mut().unwrap()) {
        let url = rule["annotations"]["runbook_url"].as_str().expect("every alert links its runbook");
        let (_, anchor) = url.split_once('#').unwrap_or_else(|| panic!("{url} has an #anchor"));
        rule["annotations"]["runbook_url"] = format!("{base}#{anchor}").into();
    }
    assert_eq!(rendered, &want, "the tested rules, only the runbook links' base changed");
}

#[test]
fn each_dashboard_is_a_config_map_for_the_grafana_sidecar() {
    let docs = helm_template(&[&ENABLED[..], &["--set", "metrics.dashboards.namespace=monitoring"]].concat());
    let maps: Vec<&Value> = of_kind(&docs, "ConfigMap")
        .into_iter()
        .filter(|d| d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    let dir = repo_root().join("charts/entrepot/dashboards");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(maps.len(), files.len(), "one ConfigMap per dashboard");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let map = maps.iter().find(|m| m["data"].get(&name).is_some()).unwrap_or_else(|| panic!("{name} shipped"));
        assert_eq!(map["metadata"]["namespace"], "monitoring");
        let shipped: Value = serde_json::from_str(map["data"][&name].as_str().unwrap()).unwrap();
        assert_eq!(shipped, serde_json::from_str::<Value>(&text).unwrap(), "{name} as it is in the chart");
    }
}
