//! Several runners on one flow, its queue in NATS JetStream: a storefront posts orders and
//! their revisions (some deliveries twice) to whichever runner it reaches, runners are
//! killed with SIGKILL or stopped and started, and a NATS server of the three is killed.
//! Whatever was acknowledged reaches the target once per idempotency key, the revisions
//! of each order in order, and nothing is left pending.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use entrepot_e2e::*;
use entrepot_sim::nats::NatsCluster;
use rand::{RngExt, SeedableRng, rngs::StdRng};

const RUNNERS: usize = 3;

/// What the target was sent, in arrival order: each request's idempotency key
/// (`shopify:<order id>:<version>`).
#[derive(Default)]
struct Received {
    arrivals: Vec<String>,
    stored: BTreeSet<String>,
    /// Orders refused as invalid (400), by id.
    refuse: BTreeSet<String>,
}

/// A target that stores each idempotency key once (a repeat is answered as the first
/// was, as NetSuite and Stripe do) and keeps the order in which keys arrived.
async fn target() -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    async fn take(State(r): State<Arc<Mutex<Received>>>, headers: HeaderMap) -> StatusCode {
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let mut r = r.lock().unwrap();
        let order = key.split(':').nth(1).unwrap_or_default().to_string();
        if r.refuse.contains(&order) {
            return StatusCode::BAD_REQUEST;
        }
        r.arrivals.push(key.clone());
        if r.stored.insert(key) { StatusCode::CREATED } else { StatusCode::OK }
    }
    let app = Router::new().route("/salesOrders", post(take)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// The quickstart's Connectors, Mappings and Secrets, and its flow on a JetStream queue
/// shared by `RUNNERS` runners.
fn manifests(dir: &Path, target: &str, nats: &str, stream_replicas: u8) -> PathBuf {
    let manifests = dir.join("manifests");
    write_quickstart(&manifests, target);
    let delivery =
        "    versionKey: .sourceVersion\n    retry: {maxAttempts: 1000, initialBackoff: 100ms, maxBackoff: 1s}";
    let flow = jetstream_flow(FLOW, delivery, RUNNERS, nats, stream_replicas);
    std::fs::write(manifests.join("syncflow.yaml"), flow).unwrap();
    manifests
}

/// The storefront: orders 1..=`orders`, each in `revisions` revisions sent in order, about
/// one delivery in ten sent twice; each delivery is posted to a runner in turn and sent
/// again (to the next) until one answers 2xx, as Shopify retries. Returns the
/// idempotency keys acknowledged.
struct Storefront {
    urls: Arc<Mutex<Vec<Option<String>>>>,
    acked: Arc<Mutex<BTreeSet<String>>>,
    sent: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
}

impl Storefront {
    fn start(urls: Vec<Option<String>>, orders: u64, revisions: u64, seed: u64) -> (Self, tokio::task::JoinHandle<()>) {
        let me = Self {
            urls: Arc::new(Mutex::new(urls)),
            acked: Arc::default(),
            sent: Arc::default(),
            done: Arc::default(),
        };
        let (urls, acked, sent, done) = (me.urls.clone(), me.acked.clone(), me.sent.clone(), me.done.clone());
        let task = tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut turn = 0usize;
            // Revisions go out in order; orders interleave.
            for revision in 1..=revisions {
                for order in 1..=orders {
                    let updated = format!("2026-11-27T10:{:02}:{:02}-05:00", revision, order % 60);
                    let body = shopify_order(order, "SKU-1", &updated);
                    // As the flow makes it: `.orderId + ":" + .sourceVersion`, the order id
                    // carrying its source's name.
                    let key = format!("shopify:{order}:2026-11-27T15:{revision:02}:{:02}Z", order % 60);
                    let times = if rng.random_bool(0.1) { 2 } else { 1 };
                    for _ in 0..times {
                        loop {
                            turn += 1;
                            let url = urls.lock().unwrap()[turn % RUNNERS].clone();
                            let Some(url) = url else { continue };
                            sent.fetch_add(1, Ordering::Relaxed);
                            let webhook = format!("{url}/webhooks/{FLOW}");
                            match post_webhook_raw(&webhook, &body, &format!("d-{order}-{revision}")).await {
                                Ok(status) if (200..300).contains(&status) => break,
                                _ => tokio::time::sleep(Duration::from_millis(50)).await,
                            }
                        }
                    }
                    acked.lock().unwrap().insert(key);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        (me, task)
    }

    fn set(&self, i: usize, url: Option<String>) {
        self.urls.lock().unwrap()[i] = url;
    }
}

/// Every acknowledged key stored once and no other; each order's revisions first
/// arrived in order; nothing pending.
async fn check(received: &Mutex<Received>, acked: &BTreeSet<String>, admin: &str, dir: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let stored = received.lock().unwrap().stored.clone();
        let pending = status(admin).await.flows[0].pending;
        if acked.is_subset(&stored) && pending == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<&String> = acked.difference(&stored).take(10).collect();
            let logs = runner_logs(dir, RUNNERS);
            panic!(
                "not everything acknowledged reached the target: {} of {} missing (first: {missing:?}), {pending} \
                 pending; runners' last log lines (newest first):\n{logs}",
                acked.difference(&stored).count(),
                acked.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = received.lock().unwrap();
    assert_eq!(&r.stored, acked, "the target holds exactly the acknowledged records");
    let mut first_seen = BTreeSet::new();
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for key in &r.arrivals {
        if first_seen.insert(key.as_str()) {
            let (order, version) = key.rsplit_once(":2026").unwrap();
            versions.entry(order).or_default().push(version);
        }
    }
    for (order, seen) in &versions {
        assert!(seen.is_sorted(), "order {order}: revisions arrived out of order: {seen:?}");
    }
    let resent = r.arrivals.len() - r.stored.len();
    eprintln!("{} records, {} requests ({resent} repeats of a key, absorbed by it)", r.stored.len(), r.arrivals.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runners_and_a_nats_cluster_survive_twenty_kills_and_deliver_each_acknowledged_order_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsCluster::start(3).await;
    let (target, received) = target().await;
    let manifests = manifests(dir.path(), &target, &nats.urls(), 3);
    let mut runners = Vec::new();
    for i in 0..RUNNERS {
        runners.push(Some(jetstream_runner(dir.path(), &manifests, i).await));
    }
    let urls = runners.iter().map(|r| r.as_ref().map(|r| r.webhook_url.clone())).collect();
    let (storefront, load) = Storefront::start(urls, 150, 3, 14);

    // Twenty kills while the storefront posts: SIGKILL of a runner (restarted a moment
    // later under the same name), and once a NATS server.
    let mut rng = StdRng::seed_from_u64(7);
    let nats_kill_at = 9;
    for event in 0..20 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..1200))).await;
        if event == nats_kill_at {
            let node = rng.random_range(0..3);
            nats.kill(node);
            tokio::time::sleep(Duration::from_secs(3)).await;
            nats.restart(node).await;
            continue;
        }
        let i = rng.random_range(0..RUNNERS);
        storefront.set(i, None);
        runners[i].take().unwrap().kill9();
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
        let restarted = jetstream_runner(dir.path(), &manifests, i).await;
        storefront.set(i, Some(restarted.webhook_url.clone()));
        runners[i] = Some(restarted);
    }
    load.await.unwrap();
    assert!(storefront.done.load(Ordering::SeqCst));
    let acked = storefront.acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 450);
    let admin = runners[0].as_ref().unwrap().admin_url.clone();
    check(&received, &acked, &admin, dir.path()).await;
    eprintln!("deliveries posted: {}", storefront.sent.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_from_three_runners_to_one_and_back_strands_nothing_and_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let nats = entrepot_sim::nats::NatsServer::start().await;
    let (target, received) = target().await;
    let manifests = manifests(dir.path(), &target, &nats.url(), 1);
    let mut runners = Vec::new();
    for i in 0..RUNNERS {
        runners.push(Some(jetstream_runner(dir.path(), &manifests, i).await));
    }
    let urls = runners.iter().map(|r| r.as_ref().map(|r| r.webhook_url.clone())).collect();
    let (storefront, load) = Storefront::start(urls, 200, 2, 21);

    tokio::time::sleep(Duration::from_secs(2)).await;
    // Down to one: runners 1 and 2 stop (SIGTERM: they let go of their partitions).
    for i in [1, 2] {
        storefront.set(i, None);
        runners[i].take().unwrap().stop().await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // And back to three.
    for i in [1, 2] {
        let started = jetstream_runner(dir.path(), &manifests, i).await;
        storefront.set(i, Some(started.webhook_url.clone()));
        runners[i] = Some(started);
    }
    load.await.unwrap();
    let acked = storefront.acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 400);
    let admin = runners[0].as_ref().unwrap().admin_url.clone();
    check(&received, &acked, &admin, dir.path()).await;
    let r = received.lock().unwrap();
    assert_eq!(r.arrivals.len(), r.stored.len(), "a clean scale-down hands work over without sending anything twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_a_shared_queue_are_listed_shown_replayed_and_discarded_from_any_runner() {
    let dir = tempfile::tempdir().unwrap();
    let nats = entrepot_sim::nats::NatsServer::start().await;
    let (target, received) = target().await;
    received.lock().unwrap().refuse = ["10", "20", "30"].map(String::from).into();
    let manifests = manifests(dir.path(), &target, &nats.url(), 1);
    let mut runners = Vec::new();
    for i in 0..RUNNERS {
        runners.push(jetstream_runner(dir.path(), &manifests, i).await);
    }
    for order in 1..=30u64 {
        let body = shopify_order(order, "SKU-1", "2026-11-27T10:05:00-05:00");
        let url = runners[order as usize % RUNNERS].webhook(FLOW);
        assert_eq!(post_webhook(&url, &body, &format!("d-{order}"), None).await.status(), 200);
    }
    let admin = |i: usize| runners[i].admin_url.clone();
    eventually(Duration::from_secs(60), "27 delivered, 3 dead-lettered", || async {
        let flow = &status(&admin(0)).await.flows[0];
        received.lock().unwrap().stored.len() == 27 && flow.dead_lettered == 3 && flow.pending == 0
    })
    .await;

    // Listed by another runner than the one that dead-lettered them: one stream for all.
    let listed = run_cli(&["deadletters", "list", "--admin", &admin(1), "--output", "json"]).await.expect_ok("list");
    let letters: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(letters.len(), 3, "{listed}");
    let id_of = |order: &str| {
        letters
            .iter()
            .find(|l| l["envelope"]["sourceDeliveryId"] == format!("d-{order}").as_str())
            .map(|l| l["id"].as_u64().unwrap())
            .unwrap_or_else(|| panic!("order {order} among the dead letters: {listed}"))
    };
    let (ten, twenty, thirty) = (id_of("10"), id_of("20"), id_of("30"));
    let shown = run_cli(&["deadletters", "show", &ten.to_string(), "--admin", &admin(2)]).await.expect_ok("show");
    assert!(shown.contains("400"), "the target's answer is shown: {shown}");

    // The target fixed: two replayed (from runner 2), one discarded (from runner 0).
    received.lock().unwrap().refuse.clear();
    let (ten, twenty, thirty) = (ten.to_string(), twenty.to_string(), thirty.to_string());
    run_cli(&["deadletters", "replay", &ten, &twenty, "--admin", &admin(2), "--why", "target fixed"])
        .await
        .expect_ok("replay");
    run_cli(&["deadletters", "discard", &thirty, "--admin", &admin(0), "--why", "not needed"])
        .await
        .expect_ok("discard");
    eventually(Duration::from_secs(60), "the replayed orders delivered, no dead letter left", || async {
        let flow = &status(&admin(1)).await.flows[0];
        received.lock().unwrap().stored.len() == 29 && flow.dead_lettered == 0 && flow.pending == 0
    })
    .await;
    let stored = received.lock().unwrap().stored.clone();
    assert!(
        stored.iter().any(|k| k.starts_with("shopify:10:")) && !stored.iter().any(|k| k.starts_with("shopify:30:"))
    );
}
