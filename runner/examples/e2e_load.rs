//! End-to-end load: signed webhooks into a runner (durable queue on disk, jq mappings,
//! per-key delivery) to an HTTP target on loopback, all in this process. Prints a table:
//! - the target's own loopback rate with the same HTTP client (the ceiling);
//! - webhook intake rate (acknowledged = fsync'd) and end-to-end rate at full speed;
//! - added latency p50/p99 (sent → target received) at a fixed rate;
//! - resident memory before and after.
//!
//! `cargo run -p entrepot --example e2e_load [records] [fixed-rate]` (numbers in
//! docs/benchmarks.md). Debug builds of our crates: release numbers are higher.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use entrepot::{
    manifest::Manifests,
    runtime::{Runtime, serve},
    secrets::Secrets,
    source::signature::sign,
    spec::{ConnectorLimits, SignatureScheme},
};

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

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
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

#[tokio::main]
async fn main() {
    let records: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let fixed_rate: u64 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let rss_start = rss_mib();

    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/salesOrders", post(receive)).with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();

    // The ceiling: the target alone, same client, 32 concurrent.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let (client, url) = (client.clone(), format!("{target_url}/salesOrders"));
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

    // The runner on the quickstart, pointed at the target, 16 requests in flight.
    let dir = std::env::temp_dir().join(format!("entrepot-load-{}", std::process::id()));
    let manifests = Manifests::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")).unwrap();
    let mut config = manifests.runner_config().unwrap();
    let flow = &mut config.flows[0];
    let erp = flow.connectors.get_mut("erp-demo").unwrap();
    erp.endpoint = Some(target_url.clone());
    erp.limits = Some(ConnectorLimits { concurrency: Some(16), ..Default::default() });
    let rt = Runtime::new(config, &Secrets::with_manifests(manifests.secrets.clone()), &dir).unwrap();
    let webhooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/shopify-orders-to-erp", webhooks.local_addr().unwrap());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(rt, webhooks, admin, shutdown));
    let secret: Arc<[u8]> = manifests.secrets.values().find_map(|s| s.get("client-secret")).unwrap().as_bytes().into();
    let rss_idle = rss_mib();

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
    let rss_load = rss_mib();

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
    let _ = stop.send(true);
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);

    println!("| measure | value |");
    println!("|---|---|");
    println!("| target alone, same client, 32 concurrent | {baseline:.0} req/s |");
    println!("| webhook intake (acknowledged after fsync), 32 concurrent | {intake:.0} events/s |");
    println!("| end to end (acknowledged → delivered), {records} events | {end_to_end:.0} events/s |");
    println!("| added latency at {fixed_rate}/s, p50 | {:.1} ms |", percentile(&latencies, 0.5).as_secs_f64() * 1000.0);
    println!("| added latency at {fixed_rate}/s, p99 | {:.1} ms |", percentile(&latencies, 0.99).as_secs_f64() * 1000.0);
    println!("| resident memory: start / runner idle / after the burst | {rss_start:.0} / {rss_idle:.0} / {rss_load:.0} MiB |");
}
