//! The peak-day scenario at a small scale (`entrepot-demo --scenario peak-day` runs it
//! full size): storefront and marketplace orders through duplicate and out-of-order
//! deliveries, an ERP that throttles throughout and goes down in the middle, WMS and POS
//! stock moving to both channels. Every figure the demo prints is checked here.

use std::time::Duration;

use entrepot_demo::peak_day::{Params, measure};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_peak_day_posts_every_order_once_oversells_nothing_and_reconciles_clean() {
    let dir = tempfile::tempdir().unwrap();
    let params = Params {
        storefront_orders: 120,
        marketplace_orders: 40,
        burst: Duration::from_secs(10),
        outage: Duration::from_secs(3),
        pos_sales: 40,
        opening_stock: 300,
        data_dir: Some(dir.path().join("queue")),
        ..Params::default()
    };
    let report = measure(&params).await.expect("the scenario runs");
    report.print();
    assert!(report.problems().is_empty(), "{:#?}", report.problems());

    // Each order taken is in the ERP once, through the faults the scenario promises.
    assert_eq!(report.taken, report.storefront.orders_sent + report.marketplace_orders);
    assert_eq!(report.in_erp, report.taken);
    assert!(
        report.storefront.duplicate_deliveries > 0 && report.storefront.out_of_order > 0,
        "{:?}",
        report.storefront
    );
    // The ERP grants 3 in flight where 4 are declared: the runner keeps to what it
    // grants, so it is refused rarely (at most 2% of requests).
    assert!(
        report.erp_throttled * 50 <= report.erp_throttled + report.erp_served,
        "{} × 429 of {} requests",
        report.erp_throttled,
        report.erp_throttled + report.erp_served
    );
    assert!(report.erp_unavailable > 0, "the ERP was down");
    // The outage held orders up; the others were measured apart.
    assert!(report.outage.backlog > 0, "{:?}", report.outage);
    assert!(report.outage.posting_outside.count > 0, "{:?}", report.outage);
    assert!(report.outage.served_per_sec > 0.0, "{:?}", report.outage);
    assert!(report.deduplicated > 0, "duplicates were dropped");
    // No channel ever showed more than the WMS could ship, and both kept up with it.
    assert!(report.oversold_orders.is_empty() && report.overshows.is_empty());
    for (channel, freshness) in &report.freshness {
        assert!(freshness.count > 0, "{channel}: no stock change measured");
    }
    assert_eq!(report.posting.count, report.taken);
    // The one order the ERP refuses is a dead letter with the ERP's business reason.
    assert_eq!(report.dead_letters.len(), 1);
    let (flow, reason, message) = &report.dead_letters[0];
    assert_eq!((flow.as_str(), reason.as_str()), ("storefront-orders-to-erp", "rejected"));
    assert!(message.contains("DISCONTINUED-HAT"), "{message}");
    // Reconciliation after the drain: every storefront order matched.
    let r = &report.reconciliation[0];
    assert_eq!(
        (r.matched, r.missing_in_target, r.missing_in_source, r.mismatched),
        (report.storefront.orders_sent as u64, 0, 0, 0)
    );
}
