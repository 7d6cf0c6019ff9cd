//! Quota goodput: how much of a target's fixed quota the runner's governor uses, and how
//! often it is throttled. A simulated target grants a token bucket (rate, burst) and
//! answers 429 with `Retry-After` beyond it; senders go through `quota::Quota`
//! (concurrency cap, token bucket, adaptation from 429s and call-limit headers) exactly
//! as the delivery workers do. Prints a table.
//!
//! `cargo run -p entrepot --example quota_goodput` (numbers in docs/benchmarks.md).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::post};
use entrepot::{
    protocol::{QuotaSignal, parse_retry_after},
    quota::Quota,
};
use entrepot_api::resource::{ConnectorLimits, Priority};

/// The target's own quota: a token bucket, refused beyond it.
struct Granted {
    rate: f64,
    burst: f64,
    tokens: Mutex<(f64, Instant)>,
    shopify_headers: bool,
    ok: AtomicU64,
    throttled: AtomicU64,
}

async fn answer(State(g): State<Arc<Granted>>) -> impl IntoResponse {
    let (allowed, left, wait) = {
        let mut t = g.tokens.lock().unwrap();
        let now = Instant::now();
        t.0 = (t.0 + now.duration_since(t.1).as_secs_f64() * g.rate).min(g.burst);
        t.1 = now;
        if t.0 >= 1.0 {
            t.0 -= 1.0;
            (true, t.0, 0.0)
        } else {
            (false, t.0, (1.0 - t.0) / g.rate)
        }
    };
    let mut headers = axum::http::HeaderMap::new();
    if g.shopify_headers {
        let used = (g.burst - left).ceil() as u64;
        headers.insert("x-shopify-shop-api-call-limit", format!("{used}/{}", g.burst as u64).parse().unwrap());
    }
    if allowed {
        g.ok.fetch_add(1, Ordering::Relaxed);
        (StatusCode::OK, headers)
    } else {
        g.throttled.fetch_add(1, Ordering::Relaxed);
        headers.insert("retry-after", format!("{wait:.2}").parse().unwrap());
        (StatusCode::TOO_MANY_REQUESTS, headers)
    }
}

struct Scenario {
    name: &'static str,
    granted_rate: f64,
    granted_burst: f64,
    declared: ConnectorLimits,
    shopify_headers: bool,
}

async fn run(s: &Scenario, records: u64) -> (f64, f64, u64, u64) {
    let granted = Arc::new(Granted {
        rate: s.granted_rate,
        burst: s.granted_burst,
        tokens: Mutex::new((s.granted_burst, Instant::now())),
        shopify_headers: s.shopify_headers,
        ok: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = Router::new().route("/", post(answer)).with_state(granted.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let quota = Arc::new(Quota::new(Some(&s.declared)));
    let client = reqwest::Client::new();
    let remaining = Arc::new(AtomicU64::new(records));
    let start = Instant::now();
    let mut workers = Vec::new();
    // More records in flight than the concurrency cap, as many keys would be.
    for _ in 0..quota.concurrency() * 2 {
        let (quota, client, url, remaining) = (quota.clone(), client.clone(), url.clone(), remaining.clone());
        workers.push(tokio::spawn(async move {
            while remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1)).is_ok() {
                loop {
                    let permit = quota.admit(quota.slot(Priority::Normal).await).await;
                    let response = client.post(&url).send().await.unwrap();
                    let status = response.status();
                    let retry_after =
                        response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
                    quota.observe(&QuotaSignal::read(status, response.headers(), retry_after));
                    drop(permit);
                    if status.is_success() {
                        break;
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    server.abort();
    let ok = granted.ok.load(Ordering::Relaxed);
    let throttled = granted.throttled.load(Ordering::Relaxed);
    // The target could have served its burst plus `rate` per second over the run.
    let allowed = s.granted_burst + s.granted_rate * elapsed;
    (ok as f64 / allowed * 100.0, throttled as f64 / (ok + throttled) as f64 * 100.0, ok, throttled)
}

#[tokio::main]
async fn main() {
    let records: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let limits = |rate: f64, burst: u32| ConnectorLimits {
        requests_per_second: Some(rate),
        burst: Some(burst),
        concurrency: Some(8),
        ..Default::default()
    };
    let scenarios = [
        Scenario {
            name: "declared = granted (50/s, burst 10)",
            granted_rate: 50.0,
            granted_burst: 10.0,
            declared: limits(50.0, 10),
            shopify_headers: false,
        },
        Scenario {
            name: "declared 80/s, granted 50/s",
            granted_rate: 50.0,
            granted_burst: 10.0,
            declared: limits(80.0, 10),
            shopify_headers: false,
        },
        Scenario {
            name: "declared 80/s, granted 50/s, call-limit header",
            granted_rate: 50.0,
            granted_burst: 10.0,
            declared: limits(80.0, 10),
            shopify_headers: true,
        },
        Scenario {
            name: "Shopify standard (2/s, bucket 40)",
            granted_rate: 2.0,
            granted_burst: 40.0,
            declared: limits(2.0, 40),
            shopify_headers: true,
        },
    ];
    println!("| scenario | records | goodput (% of allowed) | throttled (% of requests) | 200s | 429s |");
    println!("|---|---|---|---|---|---|");
    for s in &scenarios {
        let n = if s.granted_rate < 10.0 { 100 } else { records };
        let (goodput, throttled, ok, refused) = run(s, n).await;
        println!("| {} | {n} | {goodput:.1} | {throttled:.2} | {ok} | {refused} |", s.name);
    }
}
