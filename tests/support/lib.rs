//! Test support shared by the end-to-end tests: the quickstart configuration pointed at
//! a local target, an in-process runner, a runner child process, a scripted HTTP target,
//! signed webhook deliveries, and the fake ERP and token endpoint of a poll flow.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::any,
};
use entrepot::{manifest::Manifests, runtime::Runtime, secrets::Secrets, source::signature::sign};
use entrepot_api::{config::RunnerConfig, resource::SignatureScheme, status::RunnerStatus};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

mod apis;
pub mod chart;
pub mod cluster;
pub mod crd_schema;
pub mod image;
mod jetstream;
pub mod module_graph;
pub mod observed;
pub mod pki;
mod postgres;
mod process;
pub mod refused;
pub mod rendered_pod;
pub mod sim_process;
pub use apis::{ItemsApi, TokenEndpoint};
pub use jetstream::{jetstream_flow, jetstream_runner, runner_logs};
pub use postgres::{PG_DATABASE, PG_PASSWORD, PG_USER, Postgres};
pub use process::{
    CliRun, RunnerProcess, free_port, run_cli, run_cli_with, runner_binary, test_binary, write_quickstart,
    write_reconciliation_example,
};

/// The quickstart's webhook signing secret (examples/quickstart/secrets.yaml).
pub const WEBHOOK_SECRET: &str = "demo-shopify-client-secret";
/// The quickstart's ERP token.
pub const ERP_TOKEN: &str = "demo-erp-token";
/// The quickstart flow.
pub const FLOW: &str = "shopify-orders-to-erp";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository").to_path_buf()
}

/// The quickstart manifests.
pub fn quickstart() -> Manifests {
    example("quickstart")
}

/// The manifests of `examples/<name>`.
pub fn example(name: &str) -> Manifests {
    let dir = repo_root().join("examples").join(name);
    Manifests::load_dir(&dir).unwrap_or_else(|e| panic!("{} loads: {e}", dir.display()))
}

/// The quickstart's runner configuration with the ERP endpoint at `erp_url` and retries
/// fast enough for tests.
pub fn quickstart_config(erp_url: &str) -> RunnerConfig {
    let mut config = quickstart().runner_config().expect("the quickstart resolves");
    for flow in &mut config.flows {
        for c in flow.connectors.values_mut().filter(|c| c.endpoint.is_some()) {
            c.endpoint = Some(erp_url.to_string());
        }
        flow.spec.delivery.retry.initial_backoff = Duration::from_millis(20).into();
        flow.spec.delivery.retry.max_backoff = Duration::from_millis(200).into();
    }
    config
}

/// A runner running in this process.
pub struct InProcessRunner {
    /// `http://127.0.0.1:PORT` of the webhook server.
    pub webhook_url: String,
    /// `http://127.0.0.1:PORT` of the admin server.
    pub admin_url: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl InProcessRunner {
    /// Starts `config` with its queue in `data_dir`, with the quickstart's Secrets.
    /// Starts `config` with its queue in `data_dir` and the quickstart's Secrets.
    pub async fn start(config: RunnerConfig, data_dir: &Path) -> Self {
        Self::start_with(config, &Secrets::with_manifests(quickstart().secrets), data_dir).await
    }

    /// Starts `config` with its queue in `data_dir`, with these Secrets.
    /// Starts `config` with `secrets` and its queue in `data_dir`.
    pub async fn start_with(config: RunnerConfig, secrets: &Secrets, data_dir: &Path) -> Self {
        let rt = Runtime::new(config, secrets, data_dir).expect("the runner starts");
        let webhooks = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let webhook_url = format!("http://{}", webhooks.local_addr().unwrap());
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(entrepot::runtime::serve(rt, webhooks, admin, shutdown));
        Self { webhook_url, admin_url, stop, task }
    }

    /// The URL of a flow's webhook.
    pub fn webhook(&self, flow: &str) -> String {
        format!("{}/webhooks/{flow}", self.webhook_url)
    }

    /// Stops the runner and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("the runner task").expect("the runner serves");
    }
}

/// Reads `/v1/status`.
pub async fn status(admin_url: &str) -> RunnerStatus {
    reqwest::get(format!("{admin_url}/v1/status")).await.unwrap().json().await.unwrap()
}

/// Polls `check` every 20 ms until it is true, for at most `limit`; panics with `what`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts a Shopify-signed delivery of `body`; `webhook_id` identifies the delivery.
pub async fn post_webhook(url: &str, body: &[u8], webhook_id: &str, signature: Option<String>) -> reqwest::Response {
    signed_request(url, body, webhook_id, signature).send().await.expect("the runner answers")
}

/// A Shopify-signed delivery of `body`, ready to send (add headers first if needed).
pub fn signed_request(url: &str, body: &[u8], webhook_id: &str, signature: Option<String>) -> reqwest::RequestBuilder {
    let signature =
        signature.unwrap_or_else(|| sign(SignatureScheme::ShopifyHmacSha256, WEBHOOK_SECRET.as_bytes(), body));
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-shopify-hmac-sha256", signature)
        .header("x-shopify-webhook-id", webhook_id)
        .header("x-shopify-topic", "orders/create")
        .body(body.to_vec())
}

/// Posts a signed delivery and returns the status, or an error when the runner cannot
/// be reached (it may be down: the caller retries, as a storefront does).
pub async fn post_webhook_raw(url: &str, body: &[u8], webhook_id: &str) -> Result<u16, reqwest::Error> {
    Ok(signed_request(url, body, webhook_id, None).send().await?.status().as_u16())
}

/// A minimal Shopify order with one line.
pub fn shopify_order(id: u64, sku: &str, updated_at: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id, "name": format!("#{id}"), "email": "buyer@example.com",
        "created_at": "2026-11-27T10:00:00-05:00", "updated_at": updated_at, "currency": "USD",
        "customer": {"first_name": "Ada", "last_name": "Buyer"},
        "subtotal_price": "10.00", "total_tax": "0.00", "total_discounts": "0.00", "total_price": "10.00",
        "total_shipping_price_set": {"shop_money": {"amount": "0.00", "currency_code": "USD"}},
        "line_items": [{"id": 1, "variant_id": 2, "sku": sku, "title": "Thing", "quantity": 1,
                        "price": "10.00", "total_discount": "0.00", "tax_lines": []}]
    }))
    .unwrap()
}

/// One request the scripted target received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body as JSON.
    pub body: serde_json::Value,
}

/// A scripted answer: status, headers, body.
type Scripted = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
struct Script {
    answers: Vec<Scripted>,
    /// Requests whose body contains the text get the status (with `Retry-After`, if
    /// any), so many times.
    failing: Vec<(String, u16, usize, Option<&'static str>)>,
    received: Vec<Received>,
}

/// An HTTP target that answers from a script (then 204 forever) and records requests.
#[derive(Clone)]
pub struct ScriptedTarget {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl ScriptedTarget {
    /// Starts the target.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new().fallback(any(answer)).with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url: format!("http://{addr}"), script }
    }

    /// The next answers, in order: status, headers, body.
    pub fn push(&self, status: u16, headers: &[(&'static str, &str)], body: &str) {
        let headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        self.script.lock().unwrap().answers.push((status, headers, body.into()));
    }

    /// Answers `status` to the next `times` requests whose body contains `text`, before
    /// any scripted answer.
    pub fn fail_matching(&self, text: &str, status: u16, times: usize) {
        self.script.lock().unwrap().failing.push((text.into(), status, times, None));
    }

    /// Throttles the next `times` requests whose body contains `text`: `429` with
    /// `Retry-After: 0` (come back at once, so a test of many throttles stays short).
    pub fn throttle_matching(&self, text: &str, times: usize) {
        self.script.lock().unwrap().failing.push((text.into(), 429, times, Some("0")));
    }

    /// Drops every [`fail_matching`](Self::fail_matching) rule: the target is back.
    pub fn recover(&self) {
        self.script.lock().unwrap().failing.clear();
    }

    /// What it received so far.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = script.lock().unwrap();
    s.received.push(Received { headers, body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null) });
    let text = String::from_utf8_lossy(&body);
    if let Some(rule) = s.failing.iter_mut().find(|(t, _, n, _)| *n > 0 && text.contains(t.as_str())) {
        rule.2 -= 1;
        let mut response = StatusCode::from_u16(rule.1).unwrap().into_response();
        if let Some(after) = rule.3 {
            response.headers_mut().insert("retry-after", after.parse().unwrap());
        }
        return response;
    }
    if s.answers.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let (status, headers, body) = s.answers.remove(0);
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (k, v) in headers {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}

/// Writes a secret or projected volume the way the kubelet's atomic writer does: files
/// in a timestamped directory, `..data` linking to it, each top-level entry a link
/// `<entry> -> ..data/<entry>`; a later generation swaps `..data` with one `rename`.
/// Paths may be nested (`<secret>/<key>` in a projected volume). (The runner's unit
/// tests have a flat version; its test support is not public.)
pub fn kubelet_secret_volume(dir: &Path, generation: u32, files: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    let timestamped = dir.join(format!("..2026_12_07_12_00_00.{generation}"));
    for (path, value) in files {
        let file = timestamped.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, value).unwrap();
        let top = Path::new(path).components().next().unwrap().as_os_str();
        if std::fs::symlink_metadata(dir.join(top)).is_err() {
            symlink(Path::new("..data").join(top), dir.join(top)).unwrap();
        }
    }
    symlink(timestamped.file_name().unwrap(), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
}
