//! End-to-end load: signed webhooks into a runner (durable queue on disk, jq mappings,
//! per-key delivery) to an HTTP target on loopback. The runner is a child process (this
//! program re-run with `--runner-child`), so its memory and CPU are its own. Every order
//! is distinct (its own id, name and webhook id: identical bodies would be deduplicated
//! and measure nothing), 4 KB like `tests/fixtures/shopify-order.json`, and signed as
//! Shopify signs; bodies and signatures are made before the clock starts. Prints a table:
//! - the target's own loopback rate with `wrk` (the ceiling) and with this program's
//!   HTTP client, both sending the body the runner sends it;
//! - for 16 and then 64 concurrent senders, each against a fresh runner: webhook intake
//!   (acknowledged = fsync'd), end to end (acknowledged → delivered, durable), added
//!   latency p50/p99 (sent → target received) at a fixed rate, and the runner's resident
//!   memory idle, at its peak (`VmHWM`) and after the load.
//!
//! `cargo run --release -p entrepot --example e2e_load [records] [fixed-rate]`
//! (`apt-get install wrk` first; figures in docs/benchmarks.md).
//!
//! `... --example e2e_load scale [records] [fixed-rate]`: the queue on disk next to the
//! queue in NATS JetStream (a nats-server of its own, `bash scripts/install-tools.sh`
//! builds it) shared by 1, 2 and 3 runners, the senders spread over the runners: end to
//! end and added latency for each, in the same run.

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
use entrepot_api::resource::{ConnectorLimits, JetStreamQueueSpec, SignatureScheme};
use tokio::io::{AsyncBufReadExt, BufReader};

/// What the target saw: when each record arrived, and one body it was sent.
#[derive(Default)]
struct Sink {
    arrivals: Mutex<HashMap<String, Instant>>,
    sample: Mutex<Option<Bytes>>,
}

async fn receive(State(sink): State<Arc<Sink>>, body: Bytes) -> StatusCode {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(id) = v["externalId"].as_str() {
        sink.arrivals.lock().unwrap().insert(id.to_string(), Instant::now());
        sink.sample.lock().unwrap().get_or_insert(body);
    }
    StatusCode::NO_CONTENT
}

/// One signed order, ready to send.
struct Order {
    id: u64,
    body: Bytes,
    signature: String,
}

/// Order `id`: the 4 KB fixture with its own id, name and number.
fn order(fixture: &serde_json::Value, secret: &[u8], id: u64) -> Order {
    let mut v = fixture.clone();
    v["id"] = id.into();
    v["name"] = format!("#{id}").into();
    v["order_number"] = id.into();
    v["admin_graphql_api_id"] = format!("gid://shopify/Order/{id}").into();
    let body = serde_json::to_vec_pretty(&v).unwrap();
    let signature = sign(SignatureScheme::ShopifyHmacSha256, secret, &body);
    Order { id, body: body.into(), signature }
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

async fn send_order(client: &reqwest::Client, url: &str, order: &Order) {
    let status = client
        .post(url)
        .header("x-shopify-hmac-sha256", &order.signature)
        .header("x-shopify-webhook-id", format!("w-{}", order.id))
        .header("x-shopify-topic", "orders/create")
        .body(order.body.clone())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "order {} not acknowledged", order.id);
}

/// Sends `orders` with `concurrency` senders, each to one of `urls` in turn; returns when
/// all are acknowledged.
async fn send_all(client: &reqwest::Client, urls: &[String], orders: Arc<Vec<Order>>, concurrency: usize) {
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, url, orders) = (client.clone(), urls[w % urls.len()].clone(), orders.clone());
        tasks.push(tokio::spawn(async move {
            for order in orders.iter().skip(w).step_by(concurrency) {
                send_order(&client, &url, order).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn quickstart() -> Manifests {
    Manifests::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")).unwrap()
}

/// The runner half: the quickstart pointed at `target_url`, 16 requests in flight, its
/// queue in `dir`, or with `shared` = (NATS URL, runners) in JetStream.
/// Prints `READY <webhook addr> <admin addr>` and runs until stdin closes (the parent
/// exited).
async fn runner_child(target_url: String, dir: std::path::PathBuf, shared: Option<(String, i32)>) {
    // Warnings and errors only (the parent sets ENTREPOT_LOG=warn): what goes wrong is
    // said, and the per-record info lines cost nothing.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("ENTREPOT_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let manifests = quickstart();
    let mut config = manifests.runner_config().unwrap();
    let erp = config.flows[0].connectors.get_mut("erp-demo").unwrap();
    erp.endpoint = Some(target_url);
    erp.limits = Some(ConnectorLimits { concurrency: Some(16), ..Default::default() });
    if let Some((url, runners)) = shared {
        let flow = &mut config.flows[0];
        flow.spec.runner.replicas = runners;
        flow.spec.runner.queue.jetstream =
            Some(JetStreamQueueSpec { url: Some(url), partitions: 12, replicas: Some(1), ..Default::default() });
    }
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

/// `wrk` against the target: 2 threads, 32 connections, 5 s, POSTing `body`. `None`
/// when wrk is not installed.
fn wrk_rate(url: &str, dir: &std::path::Path, body: &[u8]) -> Option<f64> {
    let script = dir.join("post.lua");
    let body = serde_json::to_string(std::str::from_utf8(body).ok()?).ok()?;
    std::fs::write(
        &script,
        format!("wrk.method = \"POST\"\nwrk.body = {body}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"),
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
        let shared = (args.len() > 4).then(|| (args[4].clone(), args[5].parse().unwrap()));
        rt.block_on(runner_child(args[2].clone(), args[3].clone().into(), shared));
    } else if args.get(1).map(String::as_str) == Some("scale") {
        let records = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3_000);
        let fixed_rate = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
        rt.block_on(scale(records, fixed_rate));
    } else {
        let records = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5_000);
        let fixed_rate = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000);
        rt.block_on(load(records, fixed_rate));
    }
}

/// What one runner did under load from `concurrency` senders.
struct Level {
    concurrency: usize,
    intake: f64,
    end_to_end: f64,
    p50: Duration,
    p99: Duration,
    rss: (f64, f64, f64),
}

/// The harness: the target, the client, the orders' secret and where runners keep their queues.
struct Harness {
    sink: Arc<Sink>,
    target_url: String,
    client: reqwest::Client,
    fixture: serde_json::Value,
    secret: Vec<u8>,
    dir: std::path::PathBuf,
}

impl Harness {
    fn orders(&self, ids: std::ops::Range<u64>) -> Arc<Vec<Order>> {
        Arc::new(ids.map(|id| order(&self.fixture, &self.secret, id)).collect())
    }

    async fn wait_for(&self, arrivals: usize) {
        while self.sink.arrivals.lock().unwrap().len() < arrivals {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A fresh runner (its own queue), `records` orders at full speed from `concurrency`
    /// senders, then `fixed_rate`/s for 5 s.
    async fn level(&self, concurrency: usize, records: u64, fixed_rate: u64) -> Level {
        self.level_of(concurrency, records, fixed_rate, 1, None).await
    }

    /// `runners` fresh runners; with `nats`, sharing one JetStream queue there (a server of
    /// their own), the senders spread over them. Memory is the first runner's.
    async fn level_of(
        &self,
        concurrency: usize,
        records: u64,
        fixed_rate: u64,
        runners: usize,
        nats: Option<&str>,
    ) -> Level {
        self.sink.arrivals.lock().unwrap().clear();
        let tag = format!("{}-{runners}-{}", concurrency, nats.map_or("disk", |_| "nats"));
        let mut children = Vec::new();
        let mut urls = Vec::new();
        for i in 0..runners {
            let data = self.dir.join(format!("data-{tag}-{i}"));
            let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
            command.arg("--runner-child").arg(&self.target_url).arg(&data);
            if let Some(nats) = nats {
                command.arg(nats).arg(runners.to_string());
            }
            let mut child = command
                .env("ENTREPOT_LOG", "warn")
                .env("ENTREPOT_RUNNER_NAME", format!("bench-{i}"))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut ready = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).await.unwrap();
            let webhook_addr = ready.split_whitespace().nth(1).expect("the runner child prints READY");
            urls.push(format!("http://{webhook_addr}/webhooks/shopify-orders-to-erp"));
            children.push(child);
        }
        let pid = children[0].id().unwrap();
        let burst = self.orders(0..records);
        let n = fixed_rate * 5;
        let paced = self.orders(1_000_000..1_000_000 + n);
        // Time for the runners to share the partitions out.
        tokio::time::sleep(Duration::from_millis(if runners > 1 { 3_000 } else { 500 })).await;
        let rss_idle = memory_mib(pid, "VmRSS:");

        let start = Instant::now();
        send_all(&self.client, &urls, burst, concurrency).await;
        let intake = records as f64 / start.elapsed().as_secs_f64();
        self.wait_for(records as usize).await;
        let end_to_end = records as f64 / start.elapsed().as_secs_f64();
        eprintln!("{tag}: intake {intake:.0}/s, end to end {end_to_end:.0}/s; now {fixed_rate}/s for 5 s");

        // A fixed rate for 5 s: latency from send to arrival.
        let mut sent = HashMap::new();
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / fixed_rate as f64));
        let mut tasks = Vec::new();
        for i in 0..n as usize {
            ticks.tick().await;
            let (client, url, orders) = (self.client.clone(), urls[i % urls.len()].clone(), paced.clone());
            sent.insert(format!("shopify:{}", orders[i].id), Instant::now());
            tasks.push(tokio::spawn(async move { send_order(&client, &url, &orders[i]).await }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        self.wait_for((records + n) as usize).await;
        let mut latencies: Vec<Duration> = {
            let arrivals = self.sink.arrivals.lock().unwrap();
            sent.iter().map(|(id, t)| arrivals[id].duration_since(*t)).collect()
        };
        latencies.sort();
        let (rss_peak, rss_after) = (memory_mib(pid, "VmHWM:"), memory_mib(pid, "VmRSS:"));
        for mut child in children {
            drop(child.stdin.take());
            let _ = child.wait().await;
        }
        for i in 0..runners {
            let _ = std::fs::remove_dir_all(self.dir.join(format!("data-{tag}-{i}")));
        }
        Level {
            concurrency,
            intake,
            end_to_end,
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            rss: (rss_idle, rss_peak, rss_after),
        }
    }

    /// The target alone with this program's client: `records` POSTs of `body`, 32 concurrent.
    async fn baseline(&self, body: Bytes, records: u64) -> f64 {
        let url = format!("{}/salesOrders", self.target_url);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..32u64 {
            let (client, url, body) = (self.client.clone(), url.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                for _ in (w..records).step_by(32) {
                    client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        records as f64 / start.elapsed().as_secs_f64()
    }
}

async fn harness() -> Harness {
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/salesOrders", post(receive)).with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = std::env::temp_dir().join(format!("entrepot-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifests = quickstart();
    let secret = manifests.secrets.values().find_map(|s| s.get("client-secret")).unwrap().as_bytes().to_vec();
    let fixture_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/shopify-order.json");
    let fixture = serde_json::from_slice(&std::fs::read(fixture_path).unwrap()).unwrap();
    Harness { sink, target_url, client: reqwest::Client::new(), fixture, secret, dir }
}

/// The queue on disk, then in JetStream shared by 1, 2 and 3 runners: one table.
async fn scale(records: u64, fixed_rate: u64) {
    let harness = harness().await;
    let mut rows = vec![("on disk (embedded)", 1, harness.level_of(16, records, fixed_rate, 1, None).await)];
    for runners in 1..=3 {
        let nats = entrepot_sim::nats::NatsServer::start().await;
        let level = harness.level_of(16, records, fixed_rate, runners, Some(&nats.url())).await;
        eprintln!("JetStream, {runners} runners: {:.0}/s end to end", level.end_to_end);
        rows.push(("JetStream", runners, level));
    }
    let _ = std::fs::remove_dir_all(&harness.dir);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{records} orders at full speed from 16 senders, then {fixed_rate}/s for 5 s");
    println!("| queue | runners | intake | end to end | added latency p50 / p99 | first runner's memory peak |");
    println!("|---|---|---|---|---|---|");
    for (label, runners, l) in rows {
        println!(
            "| {label} | {runners} | {:.0}/s | {:.0}/s | {:.1} / {:.1} ms | {:.0} MiB |",
            l.intake,
            l.end_to_end,
            ms(l.p50),
            ms(l.p99),
            l.rss.1
        );
    }
}

async fn load(records: u64, fixed_rate: u64) {
    let harness = harness().await;
    let dir = harness.dir.clone();

    let levels = [harness.level(16, records, fixed_rate).await, harness.level(64, records, fixed_rate).await];

    // The ceiling: the target alone, sent what the runner sends it.
    let body = harness.sink.sample.lock().unwrap().clone().expect("the target received a record");
    let wrk = tokio::task::spawn_blocking({
        let (url, dir, body) = (format!("{}/salesOrders", harness.target_url), dir.clone(), body.clone());
        move || wrk_rate(&url, &dir, &body)
    })
    .await
    .unwrap();
    let baseline = harness.baseline(body.clone(), records).await;
    let _ = std::fs::remove_dir_all(&dir);

    // The goal (issue 12): end to end at least half of what wrk gets from the target alone.
    let share = |rate: f64| wrk.map_or_else(String::new, |w| format!(" ({:.2}× wrk)", rate / w));
    let wrk_text = wrk.map_or_else(|| "wrk not installed".to_string(), |r| format!("{r:.0} req/s"));
    let order_bytes = order(&harness.fixture, &harness.secret, 1).body.len();
    println!("orders of {order_bytes} bytes; the target is sent {} bytes each", body.len());
    println!("| measure | value |");
    println!("|---|---|");
    println!("| target alone, wrk, 2 threads, 32 connections | {wrk_text} |");
    println!("| target alone, this client, 32 concurrent | {baseline:.0} req/s |");
    for l in &levels {
        let c = l.concurrency;
        println!("| {c} senders: webhook intake (acknowledged after fsync) | {:.0} events/s |", l.intake);
        println!(
            "| {c} senders: end to end (acknowledged → delivered), {records} events | {:.0} events/s{} |",
            l.end_to_end,
            share(l.end_to_end)
        );
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {c} senders: added latency at {fixed_rate}/s, p50 / p99 | {:.1} / {:.1} ms |",
            ms(l.p50),
            ms(l.p99)
        );
        let (idle, peak, after) = l.rss;
        println!("| {c} senders: runner memory idle / peak (VmHWM) / after | {idle:.0} / {peak:.0} / {after:.0} MiB |");
    }
}
