//! One Connector's quota shared by every runner of every flow that sends to it (issue 14):
//! three runner processes on a JetStream queue send to one ERP whose Connector declares 20
//! requests per second (burst 4) and 4 in flight.
//! - The ERP grants exactly that (it answers 429 to a request that would make more than
//!   20 + 4 taken in its last second), and each runner runs two flows, one of priority
//!   `high` and one `low`, both loaded with a backlog before the ERP answers anything: the
//!   sum of what the runners send stays within the rate and the concurrency, hardly
//!   anything is throttled, and the high-priority backlog drains first.
//! - The ERP grants less than declared (12 a second): the first 429s cut the rate every
//!   runner shares, and the runners send about what the ERP grants.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use entrepot_e2e::*;
use entrepot_sim::nats::NatsServer;
use tokio::{sync::watch, time::Instant};

const RUNNERS: usize = 3;
/// What the ERP Connector declares, and what the ERP grants.
const RATE: usize = 20;
const BURST: usize = 4;
const CONCURRENCY: usize = 4;
/// Orders in each flow's backlog.
const ORDERS: u64 = 150;
/// How long the ERP takes to answer: with the rate, about two requests in flight.
const LATENCY: Duration = Duration::from_millis(100);
const HIGH: &str = "orders-high";
const LOW: &str = "orders-low";
/// The low-priority flow's orders: ids from here.
const LOW_IDS: u64 = 100_000;

/// What the ERP saw.
#[derive(Default)]
struct Seen {
    /// Every request's arrival, in order (429s included).
    arrivals: Vec<Instant>,
    /// When each request it took arrived.
    taken: Vec<Instant>,
    throttled: usize,
    first_throttled: Option<Instant>,
    in_flight: usize,
    max_in_flight: usize,
    /// When each idempotency key was first accepted.
    delivered: BTreeMap<String, Instant>,
}

#[derive(Clone)]
struct Erp {
    seen: Arc<Mutex<Seen>>,
    /// Requests it takes in any one second.
    grants: usize,
    /// Closed while the backlogs load: requests wait, unanswered.
    open: watch::Receiver<bool>,
}

/// The ERP: takes a sales order unless it took `grants` in the last second (then 429 with
/// `Retry-After: 1`), after `LATENCY`.
async fn erp(grants: usize) -> (String, Arc<Mutex<Seen>>, watch::Sender<bool>) {
    async fn take(State(erp): State<Erp>, headers: HeaderMap) -> Response {
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let throttle = {
            let mut s = erp.seen.lock().unwrap();
            let now = Instant::now();
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            let last_second =
                s.taken.iter().rev().take_while(|at| now.duration_since(**at) < Duration::from_secs(1)).count();
            s.arrivals.push(now);
            let throttle = last_second >= erp.grants;
            if throttle {
                s.first_throttled.get_or_insert(now);
            } else {
                s.taken.push(now);
            }
            throttle
        };
        let _ = erp.open.clone().wait_for(|open| *open).await;
        tokio::time::sleep(LATENCY).await;
        let mut s = erp.seen.lock().unwrap();
        s.in_flight -= 1;
        if throttle {
            s.throttled += 1;
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
        }
        s.delivered.entry(key).or_insert_with(Instant::now);
        StatusCode::CREATED.into_response()
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (open_tx, open) = watch::channel(false);
    let app = Router::new().route("/salesOrders", post(take)).with_state(Erp { seen: seen.clone(), grants, open });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen, open_tx)
}

/// The quickstart's Connectors (the ERP's with its limits), Mappings and Secrets, and
/// `flows` (name, priority) from the storefront to the ERP, on one JetStream server.
fn manifests(dir: &Path, erp: &str, nats: &str, flows: &[(&str, &str)]) -> PathBuf {
    let manifests = dir.join("manifests");
    write_quickstart(&manifests, erp);
    let connectors = manifests.join("connectors.yaml");
    let text = std::fs::read_to_string(&connectors).unwrap().replace(
        "  idempotencyHeader: Idempotency-Key",
        &format!(
            "  idempotencyHeader: Idempotency-Key\n  limits: {{requestsPerSecond: {RATE}, burst: {BURST}, \
             concurrency: {CONCURRENCY}}}"
        ),
    );
    assert!(text.contains("requestsPerSecond"), "the ERP Connector declares its limits");
    std::fs::write(&connectors, text).unwrap();
    let flow = |name: &str, priority: &str| {
        let delivery = format!(
            "    priority: {priority}\n    retry: {{maxAttempts: 1000, initialBackoff: 100ms, maxBackoff: 1s}}"
        );
        jetstream_flow(name, &delivery, RUNNERS, nats, 1)
    };
    let flows: Vec<String> = flows.iter().map(|(name, priority)| flow(name, priority)).collect();
    std::fs::write(manifests.join("syncflow.yaml"), flows.join("---\n")).unwrap();
    manifests
}

/// `RUNNERS` runners of `flows` sending to an ERP that grants `grants` requests a second,
/// answering nothing yet.
struct Setup {
    dir: tempfile::TempDir,
    _nats: NatsServer,
    runners: Vec<RunnerProcess>,
    seen: Arc<Mutex<Seen>>,
    open: watch::Sender<bool>,
}

impl Setup {
    async fn start(flows: &[(&str, &str)], grants: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start().await;
        let (url, seen, open) = erp(grants).await;
        let manifests = manifests(dir.path(), &url, &nats.url(), flows);
        let mut runners = Vec::new();
        for i in 0..RUNNERS {
            runners.push(jetstream_runner(dir.path(), &manifests, i).await);
        }
        Self { dir, _nats: nats, runners, seen, open }
    }

    /// Posts `orders` (flow, id) through every runner in turn, 16 at a time, then lets the
    /// ERP answer; when it did.
    async fn load_then_open(&self, orders: impl Iterator<Item = (&'static str, u64)>) -> Instant {
        let posts = orders.enumerate().map(|(i, (flow, id))| post_order(&self.runners[i % RUNNERS], flow, id));
        futures::StreamExt::collect::<Vec<()>>(futures::StreamExt::buffer_unordered(futures::stream::iter(posts), 16))
            .await;
        self.open.send(true).unwrap();
        Instant::now()
    }

    /// Waits until the ERP took `orders` orders, checking `meanwhile` every 100 ms.
    async fn delivered(&self, orders: usize, mut meanwhile: impl AsyncFnMut()) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done = self.seen.lock().unwrap().delivered.len();
            if done == orders {
                return;
            }
            if Instant::now() > deadline {
                let logs = runner_logs(self.dir.path(), RUNNERS);
                panic!("{done} of {orders} orders delivered; runners' last log lines (newest first):\n{logs}");
            }
            meanwhile().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The key of order `id` (as the flows make it).
fn key(id: u64) -> String {
    format!("shopify:{id}:2026-11-27T15:00:00Z")
}

/// This runner's share of the ERP Connector's rate (`/metrics`).
async fn share_rate(runner: &RunnerProcess) -> f64 {
    let metrics = reqwest::get(format!("{}/metrics", runner.admin_url)).await.unwrap().text().await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with("entrepot_quota_share_rate{connector=\"erp-demo\"}"));
    line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{metrics}"))
}

/// Order `id` posted to `flow` through runner `runner`, until it is acknowledged.
async fn post_order(runner: &RunnerProcess, flow: &str, id: u64) {
    let body = shopify_order(id, "SKU-1", "2026-11-27T10:00:00-05:00");
    loop {
        match post_webhook_raw(&runner.webhook(flow), &body, &format!("{flow}-{id}")).await {
            Ok(200..300) => return,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The most requests any one-second window held (windows ending at each arrival).
fn busiest_second(arrivals: &[Instant]) -> usize {
    let mut first = 0;
    let mut busiest = 0;
    for (i, at) in arrivals.iter().enumerate() {
        while at.duration_since(arrivals[first]) >= Duration::from_secs(1) {
            first += 1;
        }
        busiest = busiest.max(i + 1 - first);
    }
    busiest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runners_and_two_flows_share_one_connectors_rate_and_concurrency_by_priority() {
    let setup = Setup::start(&[(HIGH, "high"), (LOW, "low")], RATE + BURST).await;
    // Both backlogs, through every runner, while the ERP answers nothing.
    let opened = setup.load_then_open((1..=ORDERS).flat_map(|n| [(HIGH, n), (LOW, LOW_IDS + n)])).await;
    setup.delivered(2 * ORDERS as usize, async || {}).await;

    let metrics = reqwest::get(format!("{}/metrics", setup.runners[0].admin_url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("entrepot_quota_share_rate{connector=\"erp-demo\"}"), "{metrics}");
    assert!(metrics.contains("entrepot_quota_share_slots{connector=\"erp-demo\"}"));

    let (high, low): (Vec<String>, Vec<String>) =
        ((1..=ORDERS).map(key).collect(), (1..=ORDERS).map(|n| key(LOW_IDS + n)).collect());
    let s = setup.seen.lock().unwrap();
    let last = |keys: &[String]| keys.iter().map(|k| s.delivered[k]).max().unwrap().duration_since(opened);
    let (high_drained, low_drained) = (last(&high), last(&low));
    let high_done_at = opened + high_drained;
    let low_by_then = low.iter().filter(|k| s.delivered[*k] <= high_done_at).count();
    let busiest = busiest_second(&s.arrivals);
    // Deliveries in each second since the ERP opened: high, low.
    let mut per_second = vec![(0, 0); high_drained.max(low_drained).as_secs() as usize + 1];
    for (key, at) in &s.delivered {
        let second = &mut per_second[at.duration_since(opened).as_secs() as usize];
        if high.contains(key) { second.0 += 1 } else { second.1 += 1 }
    }
    eprintln!("deliveries per second (high, low): {per_second:?}");
    let throttled_share = s.throttled as f64 / s.arrivals.len() as f64;
    eprintln!(
        "{} requests, {} throttled ({:.2}%); busiest second: {busiest} requests (declared {RATE}/s, burst {BURST}); \
         at most {} in flight (declared {CONCURRENCY}); high-priority backlog drained after {:.1} s, low-priority \
         after {:.1} s ({low_by_then} of its {ORDERS} delivered by the time the high one was)",
        s.arrivals.len(),
        s.throttled,
        100.0 * throttled_share,
        s.max_in_flight,
        high_drained.as_secs_f64(),
        low_drained.as_secs_f64(),
    );
    // The burst is what the declared bucket lets go at once after a quiet spell: a
    // second may hold the rate and the burst.
    assert!(busiest <= RATE + BURST, "{busiest} requests in one second: above {RATE}/s and a burst of {BURST}");
    assert!(throttled_share <= 0.01, "{} of {} requests throttled", s.throttled, s.arrivals.len());
    assert!(s.max_in_flight <= CONCURRENCY, "{} requests in flight at once", s.max_in_flight);
    assert!(high_drained < low_drained, "the high-priority backlog drains first");
    assert!(low_by_then < ORDERS as usize / 2, "the low-priority flow mostly waits: {low_by_then} delivered");
    // The whole backlog at about the declared rate: not much slower than 300 / 20 s.
    assert!(low_drained < Duration::from_secs(2 * ORDERS / RATE as u64 + 10), "{low_drained:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erp_that_grants_less_than_declared_slows_every_runner_after_its_first_429s() {
    const GRANTS: usize = 12;
    const BACKLOG: u64 = 240;
    let setup = Setup::start(&[("orders", "normal")], GRANTS).await;
    let opened = setup.load_then_open((1..=BACKLOG).map(|n| ("orders", n))).await;
    // What the three runners' shares add up to, from time to time.
    let mut shares: Vec<(Duration, f64)> = Vec::new();
    let mut last_look = Instant::now();
    setup
        .delivered(BACKLOG as usize, async || {
            if last_look.elapsed() >= Duration::from_millis(500) {
                last_look = Instant::now();
                let mut sum = 0.0;
                for runner in &setup.runners {
                    sum += share_rate(runner).await;
                }
                shares.push((opened.elapsed(), sum));
            }
        })
        .await;
    let drained = opened.elapsed();

    let s = setup.seen.lock().unwrap();
    let first_429 = s.first_throttled.expect("the ERP throttled").duration_since(opened);
    let throttled_share = s.throttled as f64 / s.arrivals.len() as f64;
    // Once the runners had a few rounds to learn (3 s), while they still had a backlog.
    let learned: Vec<f64> = shares
        .iter()
        .filter(|(at, _)| *at > first_429 + Duration::from_secs(3) && *at + Duration::from_secs(2) < drained)
        .map(|(_, sum)| *sum)
        .collect();
    eprintln!(
        "{} requests, {} throttled ({:.2}%), the first after {:.1} s; {BACKLOG} orders in {:.1} s ({:.1}/s, the ERP \
         grants {GRANTS}/s, the Connector declares {RATE}/s); the runners' shares together: {:?}",
        s.arrivals.len(),
        s.throttled,
        100.0 * throttled_share,
        first_429.as_secs_f64(),
        drained.as_secs_f64(),
        BACKLOG as f64 / drained.as_secs_f64(),
        shares.iter().map(|(at, sum)| format!("{:.1}s:{sum:.1}", at.as_secs_f64())).collect::<Vec<_>>(),
    );
    assert!(!learned.is_empty(), "the shares were read while the backlog drained");
    // Every runner took the cut: their shares together near what the ERP grants, far
    // below the declared rate.
    for sum in &learned {
        assert!(*sum <= GRANTS as f64 * 1.2, "the runners' shares add up to {sum}/s: {learned:?}");
    }
    assert!(throttled_share <= 0.05, "{} of {} requests throttled", s.throttled, s.arrivals.len());
    // And they use what it grants: not much slower than the backlog at 12/s.
    assert!(drained < Duration::from_secs(BACKLOG * 3 / 2 / GRANTS as u64 + 5), "{drained:?}");
}
