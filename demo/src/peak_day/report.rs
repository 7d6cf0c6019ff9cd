//! What the peak day came to: the figures, the checks that must hold, and the printout.

use std::{collections::BTreeMap, time::Duration};

use entrepot_sim::storefront::StorefrontReport;

use super::{
    DISCONTINUED_SKU,
    measure::{Outage, Overshow, Percentiles},
};
use entrepot::reconcile::ReconcileSummary;

/// What the peak day came to.
#[derive(Debug)]
pub struct Report {
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// The storefront's webhook traffic.
    pub storefront: StorefrontReport,
    /// Marketplace orders placed.
    pub marketplace_orders: usize,
    /// Marketplace buyers who found nothing in stock.
    pub marketplace_sold_out: usize,
    /// Marketplace notifications sent twice / out of order.
    pub notification_faults: (u64, u64),
    /// POS sales made / refused for an empty shelf; receipts; returns; picks.
    pub movements: Movements,
    /// Orders taken across channels (ERP external id → when).
    pub taken: usize,
    /// Taken orders not in the ERP.
    pub missing_in_erp: Vec<String>,
    /// ERP records written more than once (a revision posted twice).
    pub written_twice: Vec<String>,
    /// ERP records of orders nobody took.
    pub unexpected_in_erp: Vec<String>,
    /// Sales orders in the ERP.
    pub in_erp: usize,
    /// Orders a channel took that the WMS could not reserve.
    pub oversold_orders: Vec<String>,
    /// Moments a channel showed more than the WMS could ship.
    pub overshows: Vec<Overshow>,
    /// Order taken → sales order created in the ERP.
    pub posting: Percentiles,
    /// The ERP's outage: its backlog, the rate it drained at, and posting time outside it.
    pub outage: Outage,
    /// What the ERP grants: requests in flight, and the time it holds each.
    pub erp_grant: (usize, Duration),
    /// WMS stock change → the channel shows it, per channel.
    pub freshness: BTreeMap<String, Percentiles>,
    /// 429s the ERP answered / the runner counted per target.
    pub erp_throttled: u64,
    /// Requests the ERP served (neither throttled nor unavailable).
    pub erp_served: u64,
    /// Requests the runner saw throttled, per flow and target.
    pub runner_throttled: BTreeMap<String, u64>,
    /// 503s the ERP answered during its outage.
    pub erp_unavailable: u64,
    /// Retries the runner made, all flows.
    pub retries: u64,
    /// Records dropped as duplicates / as stale, all flows.
    pub deduplicated: u64,
    /// Stale records not delivered.
    pub stale: u64,
    /// Every dead letter: flow, reason, message.
    pub dead_letters: Vec<(String, String, String)>,
    /// The reconciliation runs after the flows drained.
    pub reconciliation: Vec<ReconcileSummary>,
    /// Whether the flows drained before the deadline.
    pub drained: bool,
    /// Whether the runner acknowledged the order for a discontinued SKU.
    pub discontinued_acknowledged: bool,
}

/// Stock movements made during the day.
#[derive(Debug, Default, Clone, Copy)]
pub struct Movements {
    /// POS sales made.
    pub pos_sales: usize,
    /// POS sales refused (empty shelf).
    pub pos_refused: usize,
    /// Goods receipts.
    pub receipts: usize,
    /// Customer returns.
    pub returns: usize,
    /// Reserved units picked and shipped.
    pub picks: usize,
}

impl Report {
    /// What went wrong; empty when the day went as it must.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.drained {
            problems.push("the flows did not drain in time".into());
        }
        if !self.discontinued_acknowledged {
            problems.push(format!("the order for {DISCONTINUED_SKU} was not acknowledged by the runner"));
        }
        if !self.missing_in_erp.is_empty() {
            problems.push(format!(
                "{} orders taken are not in the ERP, e.g. {:?}",
                self.missing_in_erp.len(),
                &self.missing_in_erp[..self.missing_in_erp.len().min(5)]
            ));
        }
        if !self.written_twice.is_empty() {
            problems.push(format!(
                "{} ERP orders were posted more than once, e.g. {:?}",
                self.written_twice.len(),
                &self.written_twice[..self.written_twice.len().min(5)]
            ));
        }
        if !self.unexpected_in_erp.is_empty() {
            problems.push(format!(
                "{} ERP orders were never taken: {:?}",
                self.unexpected_in_erp.len(),
                self.unexpected_in_erp
            ));
        }
        if !self.oversold_orders.is_empty() {
            problems.push(format!("{} orders were oversold: {:?}", self.oversold_orders.len(), self.oversold_orders));
        }
        if !self.overshows.is_empty() {
            problems.push(format!(
                "channels showed more than the WMS could ship {} times, e.g. {:?}",
                self.overshows.len(),
                self.overshows.first()
            ));
        }
        let unexplained: Vec<_> = self.dead_letters.iter().filter(|(_, _, m)| !m.contains(DISCONTINUED_SKU)).collect();
        if !unexplained.is_empty() {
            problems.push(format!("dead letters other than the discontinued SKU's order: {unexplained:?}"));
        }
        if self.dead_letters.len() != 1 {
            problems.push(format!(
                "expected the discontinued SKU's order as the one dead letter, found {}",
                self.dead_letters.len()
            ));
        }
        for r in &self.reconciliation {
            let drift = r.missing_in_target + r.missing_in_source + r.mismatched;
            if drift > 0 {
                problems.push(format!("reconciliation {} found drift: {}", r.schedule, r.to_line()));
            }
        }
        problems
    }

    /// Prints the report.
    pub fn print(&self) {
        let s = &self.storefront;
        println!("\nPeak day ({:.0}s)", self.elapsed.as_secs_f64());
        println!(
            "  orders taken                        {:>6}  (storefront {}, marketplace {}; sold out: {} / {})",
            self.taken, s.orders_sent, self.marketplace_orders, s.sold_out, self.marketplace_sold_out
        );
        println!(
            "  webhook faults                      storefront {} duplicated, {} out of order; marketplace {} duplicated, {} reordered",
            s.duplicate_deliveries, s.out_of_order, self.notification_faults.0, self.notification_faults.1
        );
        let m = &self.movements;
        println!(
            "  stock movements                     POS sales {} ({} refused, empty shelf), receipts {}, returns {}, picks {}",
            m.pos_sales, m.pos_refused, m.receipts, m.returns, m.picks
        );
        println!(
            "  sales orders in the ERP             {:>6}  (missing {}, posted twice {}, never taken {})",
            self.in_erp,
            self.missing_in_erp.len(),
            self.written_twice.len(),
            self.unexpected_in_erp.len()
        );
        println!(
            "  oversells                           {:>6}  (orders the WMS could not reserve {}, moments a channel showed more than shippable {})",
            self.oversold_orders.len() + self.overshows.len(),
            self.oversold_orders.len(),
            self.overshows.len()
        );
        println!("  order-to-ERP posting time           {}", self.posting);
        let o = &self.outage;
        println!("    outside the outage and its backlog {}", o.posting_outside);
        let (slots, latency) = self.erp_grant;
        let allowed = slots as f64 / latency.as_secs_f64();
        println!(
            "    outage backlog                   {} orders drained {:.1} s after the ERP came back; it served {:.0} requests/s \
             of the {:.0} its {slots} slots at {} ms allow ({:.0}%)",
            o.backlog,
            super::measure::elapsed(o.up, o.drained).as_secs_f64(),
            o.served_per_sec,
            allowed,
            latency.as_millis(),
            o.served_per_sec / allowed * 100.0
        );
        for (channel, p) in &self.freshness {
            println!("  inventory freshness ({channel:<11})   {p}");
        }
        println!(
            "  throttled requests                  ERP answered {} × 429 ({:.2}% of {} requests); runner saw {}",
            self.erp_throttled,
            self.erp_throttled as f64 / (self.erp_throttled + self.erp_served).max(1) as f64 * 100.0,
            self.erp_throttled + self.erp_served,
            self.runner_throttled.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
        );
        println!(
            "  ERP outage                          {} × 503; runner retries {}",
            self.erp_unavailable, self.retries
        );
        println!("  duplicates dropped / stale dropped  {} / {}", self.deduplicated, self.stale);
        println!("  dead letters                        {:>6}", self.dead_letters.len());
        for (flow, reason, message) in &self.dead_letters {
            println!("    {flow}: {reason}: {message}");
        }
        for r in &self.reconciliation {
            println!("  reconciliation                      {}", r.to_line());
        }
    }
}
