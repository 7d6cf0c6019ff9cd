//! ERP concurrency goodput: how much of the concurrency a NetSuite-like ERP grants the
//! runner uses when the Connector declares more, and how often it is refused.
//!
//! The quickstart flow runs in this process with its ERP Connector of type `netsuite`
//! (asynchronous writes: a POST, then the job's status and result). The simulated ERP
//! grants N requests in flight, each held `LATENCY`, and refuses the (N+1)th with `429`
//! and `Retry-After: 1`. Orders go to the runner's webhook as fast as it takes them;
//! the clock stops when the last is delivered. N slots at that latency allow
//! `N / LATENCY` requests a second: goodput is the share of that the ERP served.
//!
//! `cargo run -p entrepot-e2e --example erp_concurrency [orders]` (figures in
//! docs/benchmarks.md).

use std::time::{Duration, Instant};

use entrepot_api::resource::{ConnectorLimits, ConnectorType, Operation};
use entrepot_e2e::{ERP_TOKEN, FLOW, InProcessRunner, post_webhook, quickstart_config, shopify_order, status};
use entrepot_sim::erp::{self, ErpConfig};
use futures::{StreamExt, stream};

/// Time the ERP holds each request.
const LATENCY: Duration = Duration::from_millis(20);

struct Run {
    elapsed: Duration,
    served: u64,
    throttled: u64,
    /// Requests served a second while the backlog was there: from the 10th to the 90th
    /// percentile of orders created (the webhook burst and the last retry left out).
    steady: f64,
}

async fn run(granted: usize, declared: u32, orders: u64) -> Run {
    let erp = erp::bind(
        ErpConfig {
            max_concurrency: granted,
            latency: LATENCY,
            bearer_token: Some(ERP_TOKEN.into()),
            ..Default::default()
        },
        "127.0.0.1:0",
    )
    .await
    .expect("the ERP starts");
    let mut config = quickstart_config(&erp.base_url());
    let flow = &mut config.flows[0];
    let connector = flow.connectors.get_mut("erp-demo").expect("the quickstart's ERP");
    connector.kind = ConnectorType::NetSuite;
    connector.idempotency_header = None;
    connector.limits = Some(ConnectorLimits { concurrency: Some(declared), ..Default::default() });
    flow.spec.targets[0].operation = Operation::Create;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let runner = InProcessRunner::start(config, dir.path()).await;

    let start = Instant::now();
    let url = runner.webhook(FLOW);
    stream::iter(1..=orders)
        .for_each_concurrent(16, |id| {
            let url = url.clone();
            async move {
                let body = shopify_order(id, "MUG-WHT", "2026-11-27T11:00:00-05:00");
                let response = post_webhook(&url, &body, &format!("wh-{id}"), None).await;
                assert_eq!(response.status(), 200, "order {id} is taken");
            }
        })
        .await;
    let mut samples = Vec::new();
    loop {
        let stats = erp.stats();
        samples.push((start.elapsed().as_secs_f64(), stats.created, stats.served()));
        let s = status(&runner.admin_url).await;
        let flow = &s.flows[0];
        assert_eq!(flow.dead_lettered, 0, "no order is dead-lettered");
        if flow.delivered == orders {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed();
    let stats = erp.stats();
    assert_eq!(stats.created, orders, "every order once: {stats:?}");
    runner.stop().await;
    let at = |share: f64| {
        *samples
            .iter()
            .find(|(_, created, _)| *created as f64 >= orders as f64 * share)
            .expect("every order is created")
    };
    let ((t0, _, s0), (t1, _, s1)) = (at(0.1), at(0.9));
    Run { elapsed, served: stats.served(), throttled: stats.throttled, steady: (s1 - s0) as f64 / (t1 - t0) }
}

#[tokio::main]
async fn main() {
    let orders: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(400);
    println!(
        "| declared | granted | orders | elapsed | orders/s | requests served/s | allowed/s | goodput (% of allowed) | steady goodput (%) | throttled (% of requests) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let only: Option<(u32, usize)> = std::env::args()
        .nth(2)
        .and_then(|a| a.split_once(':').and_then(|(d, g)| Some((d.parse().ok()?, g.parse().ok()?))));
    let pairs: Vec<(u32, usize)> = only.map_or_else(
        // Declared = granted first: the same runner with nothing to find out.
        || {
            [1, 2, 3, 4, 8]
                .into_iter()
                .flat_map(|d| [(d, 1), (d, 2), (d, 3)])
                .filter(|(d, g)| *d as usize == *g || *d >= 4)
                .collect()
        },
        |p| vec![p],
    );
    for (declared, granted) in pairs {
        {
            let r = run(granted, declared, orders).await;
            let seconds = r.elapsed.as_secs_f64();
            let allowed = granted as f64 / LATENCY.as_secs_f64();
            let served = r.served as f64 / seconds;
            println!(
                "| {declared} | {granted} | {orders} | {seconds:.2} s | {:.1} | {served:.1} | {allowed:.0} | {:.1} | {:.1} | {:.2} |",
                orders as f64 / seconds,
                served / allowed * 100.0,
                r.steady / allowed * 100.0,
                r.throttled as f64 / (r.served + r.throttled) as f64 * 100.0,
            );
        }
    }
}
