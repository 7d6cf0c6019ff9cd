//! End-to-end load: signed webhooks into a runner (durable queue on disk, jq mappings,
//! per-key delivery) to an HTTP target on loopback. The runner is a child process (this
//! program re-run with `--runner-child`), so its memory is its own. Prints a table:
//! - the target's own loopback rate measured with `wrk` (the ceiling), and with this
//!   program's HTTP client;
//! - webhook intake rate (acknowledged = fsync'd) and end-to-end rate at full speed;
//! - added latency p50/p99 (sent → target received) at a fixed rate;
//! - the runner's resident memory idle, at its peak and after the load.
//!
//! `cargo run -p entrepot --example e2e_load [records] [fixed-rate]` (numbers in
//! docs/benchmarks.md; `apt-get install wrk` first). Debug builds of our crates:
//! release numbers are higher.

use std::{
    collections::HashMap,
    io::Read,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use entrepot::{
    manifest::Manifests,
    runtime::{Runtime, serve},
    secrets::Secrets,
    source::signature::sign,
};
use entrepot_api::resource::{ConnectorLimits, SignatureScheme};
use tokio::io::{AsyncBufReadExt, BufReader};

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(id) = v["externalId"].as_str() {
        arrivals.lock().unwrap().insert(id.to_string(), Instant::now());
    }
    StatusCode::NO_CONTENT
}

fn order(id: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id, "name": format!("#{id}"), "email": "buyer@example.com",
        "created_at": "2026-11-27T10:00:00-05:00", "updated_at": "2026-11-27T10:05:00-05:00", "currency": "USD",
        "customer": {"first_name": "Ada", "last_name": "Buyer"},
        "subtotal_price": "10.00", "total_tax": "0.00", "total_discounts": "0.00", "total_price": "10.00",
        "total_shipping_price_set": {"shop_money": {"amount": "0.00", "currency_code": "USD"}},
        "line_items": [{"id": 1, "variant_id": 2, "sku": "SKU-1", "title": "Thing", "quantity": 1,
                        "price": "10.00", "total_discount": "0.00", "tax_lines": []}]
    }))
    .unwrap()
}

/// `VmRSS` (now) or `VmHWM` (peak) of a process, in MiB.
fn memory_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn send_order(client: &reqwest::Client, url: &str, secret: &[u8], id: u64) {
    let body = order(id);
    let sig = sign(SignatureScheme::ShopifyHmacSha256, secret, &body);
    let status = client
        .post(url)
        .header("x-shopify-hmac-sha256", sig)
        .header("x-shopify-webhook-id", format!("w-{id}"))
        .header("x-shopify-topic", "orders/create")
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "order {id} not acknowledged");
}

/// The runner half: the quickstart pointed at `target_url`, 16 requests in flight, its
/// queue in `dir`. Prints `READY <webhook addr> <admin addr>` and runs until stdin closes
/// (the parent exited).
async fn runner_child(target_url: String, dir: std::path::PathBuf) {
    let manifests =
        Manifests::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")).unwrap();
    let mut config = manifests.runner_config().unwrap();
    let erp = config.flows[0].connectors.get_mut("erp-demo").unwrap();
    erp.endpoint = Some(target_url);
    erp.limits = Some(ConnectorLimits { concurrency: Some(16), ..Default::default() });
    let rt = Runtime::new(config, &Secrets::with_manifests(manifests.secrets.clone()), &dir).unwrap();
    let webhooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("READY {} {}", webhooks.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::task::spawn_blocking(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = stop.send(true);
    });
    let _ = serve(rt, webhooks, admin, shutdown).await;
}

/// `wrk` against the target: 2 threads, 32 connections, 5 s, the same small JSON POST.
/// `None` when wrk is not installed.
fn wrk_rate(url: &str, dir: &std::path::Path) -> Option<f64> {
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '{\"externalId\":\"wrk\"}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )
    .ok()?;
    let out =
        std::process::Command::new("wrk").args(["-t2", "-c32", "-d5s", "-s"]).arg(&script).arg(url).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    if args.get(1).map(String::as_str) == Some("--runner-child") {
        rt.block_on(runner_child(args[2].clone(), args[3].clone().into()));
    } else {
        let records = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
        let fixed_rate = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000);
        rt.block_on(load(records, fixed_rate));
    }
}

async fn load(records: u64, fixed_rate: u64) {
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/salesOrders", post(receive)).with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let dir = std::env::temp_dir().join(format!("entrepot-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The ceiling: the target alone, with wrk and then with this program's client.
    let target = format!("{target_url}/salesOrders");
    let wrk = tokio::task::spawn_blocking({
        let (target, dir) = (target.clone(), dir.clone());
        move || wrk_rate(&target, &dir)
    })
    .await
    .unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let (client, url) = (client.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..records).step_by(32) {
                client.post(&url).body(format!("{{\"externalId\":\"base-{i}\"}}")).send().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let baseline = records as f64 / start.elapsed().as_secs_f64();
    arrivals.lock().unwrap().clear();

    // The runner, in its own process.
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("--runner-child")
        .arg(&target_url)
        .arg(dir.join("data"))
        .env("ENTREPOT_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).await.unwrap();
    let webhook_addr = ready.split_whitespace().nth(1).expect("the runner child prints READY");
    let url = format!("http://{webhook_addr}/webhooks/shopify-orders-to-erp");
    let manifests =
        Manifests::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")).unwrap();
    let secret: Arc<[u8]> = manifests.secrets.values().find_map(|s| s.get("client-secret")).unwrap().as_bytes().into();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = memory_mib(pid, "VmRSS:");

    // Full speed: 32 concurrent senders.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..records).step_by(32) {
                send_order(&client, &url, &secret, i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let intake = records as f64 / start.elapsed().as_secs_f64();
    while arrivals.lock().unwrap().len() < records as usize {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end_to_end = records as f64 / start.elapsed().as_secs_f64();

    // A fixed rate for 5 s: latency from send to arrival.
    let n = fixed_rate * 5;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / fixed_rate as f64));
    let mut tasks = Vec::new();
    for i in 0..n {
        ticks.tick().await;
        let id = 1_000_000 + i;
        sent.lock().unwrap().insert(format!("shopify:{id}"), Instant::now());
        let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
        tasks.push(tokio::spawn(async move { send_order(&client, &url, &secret, id).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    while arrivals.lock().unwrap().len() < (records + n) as usize {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut latencies: Vec<Duration> = {
        let (sent, arrivals) = (sent.lock().unwrap(), arrivals.lock().unwrap());
        sent.iter().map(|(id, t)| arrivals[id].duration_since(*t)).collect()
    };
    latencies.sort();
    let (rss_peak, rss_after) = (memory_mib(pid, "VmHWM:"), memory_mib(pid, "VmRSS:"));
    drop(child.stdin.take());
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&dir);

    let wrk = wrk.map_or_else(|| "wrk not installed".to_string(), |r| format!("{r:.0} req/s"));
    println!("| measure | value |");
    println!("|---|---|");
    println!("| target alone, wrk, 32 connections | {wrk} |");
    println!("| target alone, this client, 32 concurrent | {baseline:.0} req/s |");
    println!("| webhook intake (acknowledged after fsync), 32 concurrent | {intake:.0} events/s |");
    println!("| end to end (acknowledged → delivered), {records} events | {end_to_end:.0} events/s |");
    println!("| added latency at {fixed_rate}/s, p50 | {:.1} ms |", percentile(&latencies, 0.5).as_secs_f64() * 1000.0);
    println!(
        "| added latency at {fixed_rate}/s, p99 | {:.1} ms |",
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0
    );
    println!(
        "| runner resident memory: idle / peak / after the load | {rss_idle:.0} / {rss_peak:.0} / {rss_after:.0} MiB |"
    );
}
