//! A runner moving records for the monitoring tests (`metrics_scrape.rs`,
//! `dashboards.rs`): the quickstart order flow plus an inventory flow, both to one
//! scripted target with a declared quota, and a scenario that makes every series the
//! dashboards read: orders delivered, some throttled (429) and retried, one rejected
//! (422: a dead letter), one that fails mapping, inventory snapshots delivered to a
//! channel. A real Prometheus started on loopback to scrape it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use entrepot::{manifest::Manifests, secrets::Secrets};

use crate::{
    FLOW, InProcessRunner, ScriptedTarget, eventually, free_port, post_webhook, shopify_order, status, write_quickstart,
};

/// The inventory flow of the scenario.
pub const INVENTORY_FLOW: &str = "stock-to-storefront";
/// Its one target: the sales channel whose freshness is measured.
pub const CHANNEL: &str = "storefront-us";

const WAIT: Duration = Duration::from_secs(60);

/// The inventory flow: signed stock webhooks mapped to `InventorySnapshot`, sent to the
/// target as channel stock levels.
const INVENTORY_MANIFESTS: &str = r#"
apiVersion: entrepot.io/v1alpha1
kind: Mapping
metadata: {name: stock-to-canonical}
spec:
  produces: {entity: InventorySnapshot, version: v1}
  program: |
    {sku: .sku, locationId: .location, sourceSystem: "wms", externalId: (.sku + "@" + .location),
     sourceVersion: .counted_at, snapshotAt: .counted_at,
     onHand: {value: .on_hand, uom: "EA"}, available: {value: .available, uom: "EA"}}
---
apiVersion: entrepot.io/v1alpha1
kind: Mapping
metadata: {name: canonical-to-channel-stock}
spec:
  program: '{sku: .sku, location: .locationId, available: .available.value}'
---
apiVersion: entrepot.io/v1alpha1
kind: SyncFlow
metadata: {name: stock-to-storefront}
spec:
  source:
    connectorRef: shopify-demo
    entity: inventorySnapshots
    trigger: {webhook: {}}
  mappingRef: stock-to-canonical
  targets:
    - name: storefront-us
      connectorRef: erp-demo
      entity: inventoryLevel
      path: /inventory
      mappingRef: canonical-to-channel-stock
      operation: create
  delivery:
    orderingKey: .sku + "@" + .locationId
    idempotencyKey: .sku + "@" + .locationId + ":" + .snapshotAt
    retry: {maxAttempts: 5, initialBackoff: 20ms, maxBackoff: 200ms}
    freshnessBudget: 2m
"#;

/// A runner that has moved records through every path the dashboards show.
pub struct ObservedRunner {
    /// The runner.
    pub runner: InProcessRunner,
    /// What it sends to.
    pub target: ScriptedTarget,
    _dir: tempfile::TempDir,
}

impl ObservedRunner {
    /// Starts the runner and plays the scenario; returns once every record is settled.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let target = ScriptedTarget::start().await;
        let manifests = dir.path().join("manifests");
        write_quickstart(&manifests, &target.url);
        // A declared quota: the Connector dashboard shows the rate it learns.
        let connectors = manifests.join("connectors.yaml");
        let text = std::fs::read_to_string(&connectors).unwrap();
        let limited = text.replace(
            "  idempotencyHeader: Idempotency-Key",
            "  idempotencyHeader: Idempotency-Key\n  limits: {requestsPerSecond: 50, concurrency: 4}",
        );
        assert_ne!(text, limited, "the quickstart's ERP Connector has an idempotency header to anchor the quota on");
        std::fs::write(&connectors, limited).unwrap();
        std::fs::write(manifests.join("inventory.yaml"), INVENTORY_MANIFESTS).unwrap();
        let loaded = Manifests::load_dir(&manifests).expect("the scenario's manifests load");
        let mut config = loaded.runner_config().expect("the scenario's manifests resolve");
        for flow in &mut config.flows {
            flow.spec.delivery.retry.initial_backoff = Duration::from_millis(10).into();
            flow.spec.delivery.retry.max_backoff = Duration::from_millis(50).into();
        }
        let runner =
            InProcessRunner::start_with(config, &Secrets::with_manifests(loaded.secrets), &dir.path().join("data"))
                .await;

        // Orders: #2 throttled three times, #3 rejected (a dead letter), #4 unmappable.
        target.throttle_matching(r#""shopify:2""#, 3);
        target.fail_matching(r#""shopify:3""#, 422, 1);
        for id in 1..=3u64 {
            let body = shopify_order(id, "MUG-WHT", "2026-11-27T10:00:00-05:00");
            assert_eq!(post_webhook(&runner.webhook(FLOW), &body, &format!("order-{id}"), None).await.status(), 200);
        }
        let unmappable = br#"{"id": 4, "created_at": "not a date"}"#;
        assert_eq!(post_webhook(&runner.webhook(FLOW), unmappable, "order-4", None).await.status(), 200);
        // The same delivery again: a duplicate.
        let again = shopify_order(1, "MUG-WHT", "2026-11-27T10:00:00-05:00");
        assert_eq!(post_webhook(&runner.webhook(FLOW), &again, "order-1", None).await.status(), 200);
        // Stock counts for the channel.
        for (i, sku) in ["MUG-WHT", "TSHIRT-BLK-M"].iter().enumerate() {
            let body = serde_json::json!({"sku": sku, "location": "DC-EAST", "counted_at": "2026-11-27T15:00:00Z",
                                          "on_hand": 10 + i, "available": 8 + i});
            let body = serde_json::to_vec(&body).unwrap();
            let url = runner.webhook(INVENTORY_FLOW);
            assert_eq!(post_webhook(&url, &body, &format!("stock-{i}"), None).await.status(), 200);
        }
        eventually(WAIT, "every order and snapshot settled", || async {
            let s = status(&runner.admin_url).await;
            let flow = |name: &str| s.flows.iter().find(|f| f.name == name).cloned().unwrap();
            let (orders, stock) = (flow(FLOW), flow(INVENTORY_FLOW));
            orders.delivered == 2 && orders.dead_lettered == 2 && orders.pending == 0 && stock.delivered == 2
        })
        .await;
        Self { runner, target, _dir: dir }
    }

    /// `/metrics` now.
    pub async fn scrape(&self) -> String {
        reqwest::get(format!("{}/metrics", self.runner.admin_url)).await.unwrap().text().await.unwrap()
    }

    /// `host:port` of the admin server (what Prometheus scrapes).
    pub fn admin_address(&self) -> &str {
        self.runner.admin_url.trim_start_matches("http://")
    }
}

/// A Debian tool of the `prometheus` package, or a failure saying how to get it.
pub fn prometheus_tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: install Debian's `prometheus` package (apt-get install prometheus; .ci/run does)",
        path.display()
    );
    path
}

/// A Prometheus server on a free loopback port, with a storage directory of its own,
/// scraping one target every second.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`, path `/metrics`) as job `job`,
    /// and waits until it is ready.
    pub async fn start(job: &str, target: &str) -> Self {
        let binary = prometheus_tool("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: {job}\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts");
        let me = Self { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        let ready = format!("{}/-/ready", me.url);
        eventually(WAIT, "prometheus ready", || async {
            reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        me
    }

    /// Runs `query` now; the series of its result (`data.result`).
    pub async fn query(&self, query: &str) -> Result<Vec<serde_json::Value>, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/query", self.url), [("query", query)])
            .map_err(|e| e.to_string())?;
        let answer: serde_json::Value =
            reqwest::get(url).await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        if answer["status"] != "success" {
            return Err(answer.to_string());
        }
        Ok(answer["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The values of `label` on the series `selector` selects.
    pub async fn label_values(&self, label: &str, selector: &str) -> Vec<String> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/label/{label}/values", self.url),
            [("match[]", selector)],
        )
        .unwrap();
        let answer: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        answer["data"].as_array().unwrap().iter().filter_map(|v| v.as_str().map(String::from)).collect()
    }

    /// Waits until Prometheus has scraped job `job` at least `n` times successfully.
    pub async fn wait_for_scrapes(&self, job: &str, n: u32) {
        let query = format!("sum_over_time(up{{job=\"{job}\"}}[5m]) >= {n}");
        eventually(WAIT, &format!("{n} scrapes of {job}"), || async {
            self.query(&query).await.is_ok_and(|series| !series.is_empty())
        })
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
