//! The simulators as local processes (this crate's `entrepot-sim-under-test`, the same
//! program as `entrepot-sim`), for tests where the systems around a cluster run outside
//! it, as they do for a retailer: an ERP the runner pods post to, a storefront that sends
//! them signed webhooks.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{free_port, test_binary};

/// The variable the ERP process reads its bearer token from (never a flag: `ps` shows
/// flags).
const TOKEN_ENV: &str = "ENTREPOT_TEST_ERP_TOKEN";
/// The variable the storefront process reads its webhook secret from.
const SECRET_ENV: &str = "ENTREPOT_TEST_WEBHOOK_SECRET";

/// `entrepot-sim erp` in a child process, on a loopback port of its own.
pub struct ErpProcess {
    child: Option<Child>,
    port: u16,
    token: String,
    skus: Vec<String>,
    http: reqwest::Client,
}

impl ErpProcess {
    /// Starts an ERP that requires bearer `token` and knows `skus`, and waits until it
    /// answers.
    pub async fn start(token: &str, skus: &[&str]) -> Self {
        let mut me = Self {
            child: None,
            port: free_port(),
            token: token.into(),
            skus: skus.iter().map(|s| s.to_string()).collect(),
            http: reqwest::Client::new(),
        };
        me.restart().await;
        me
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An outage: the process is killed, so connections are refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The ERP's credential rotated: from now on it takes `token` only. Restarts the
    /// process (an empty ledger).
    pub async fn rotate_token(&mut self, token: &str) {
        self.token = token.into();
        self.restart().await;
    }

    /// Starts the process again on the same port, with an empty ledger, and waits until
    /// it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let mut command = Command::new(test_binary("entrepot-sim-under-test"));
        command.args(["erp", "--listen", &format!("127.0.0.1:{}", self.port), "--token-env", TOKEN_ENV]);
        for sku in &self.skus {
            command.args(["--sku", sku]);
        }
        let child = command
            .env(TOKEN_ENV, &self.token)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("the ERP simulator starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.page(0).await.is_err() {
            if let Some(exit) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the ERP simulator exited at start: {exit}");
            }
            assert!(Instant::now() < deadline, "the ERP simulator does not answer after 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn page(&self, offset: usize) -> reqwest::Result<Value> {
        self.http
            .get(format!("{}/salesOrders?limit=100&offset={offset}", self.url()))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    /// The external id of every sales order this process holds, once per stored order
    /// (an order stored twice is listed twice), read through its list API.
    pub async fn external_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        loop {
            let page = self.page(ids.len()).await.expect("the ERP lists its orders");
            let items = page["items"].as_array().expect("a page has items");
            ids.extend(items.iter().map(|o| o["externalId"].as_str().expect("an order has an externalId").to_string()));
            if items.is_empty() || !page["hasMore"].as_bool().unwrap_or(false) {
                return ids;
            }
        }
    }
}

impl Drop for ErpProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `entrepot-sim storefront` to completion: `count` signed Shopify orders to
/// `target`, a share `duplicate_ratio` of them delivered twice, from `seed`. Returns the
/// ids of the orders it made, after checking that each was acknowledged.
pub async fn storefront(target: &str, secret: &str, count: usize, duplicate_ratio: f64, seed: u64) -> Vec<u64> {
    let out = tokio::process::Command::new(test_binary("entrepot-sim-under-test"))
        .args(["storefront", "--target", target, "--secret-env", SECRET_ENV, "--json"])
        .args(["--count", &count.to_string(), "--rate", "50", "--seed", &seed.to_string()])
        .args(["--duplicate-ratio", &duplicate_ratio.to_string()])
        .env(SECRET_ENV, secret)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the storefront simulator runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the storefront simulator failed: {stderr}");
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("its report is not JSON ({e}): {stderr}"));
    assert_eq!(report["acknowledged"], count, "every order acknowledged: {report}");
    report["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_u64().unwrap()).collect()
}
