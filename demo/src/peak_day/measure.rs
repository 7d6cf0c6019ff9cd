//! The peak-day figures, computed from what the simulators recorded: posting times from
//! the ERP's records, inventory freshness and oversells from the WMS's shippable history
//! against what each channel showed, change by change.

use std::time::Duration;

use jiff::Timestamp;

/// p50, p99 and the maximum of a set of durations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// How many values.
    pub count: usize,
    /// The median.
    pub p50: Duration,
    /// The 99th percentile (nearest rank).
    pub p99: Duration,
    /// The largest.
    pub max: Duration,
}

impl Percentiles {
    /// Of `values` (any order).
    pub fn of(mut values: Vec<Duration>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort();
        let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Self { count: values.len(), p50: rank(0.50), p99: rank(0.99), max: values[values.len() - 1] }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (n={})",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

/// The ERP's outage and the backlog it left behind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outage {
    /// When the ERP went down / came back.
    pub down: Timestamp,
    /// When it came back.
    pub up: Timestamp,
    /// When the last order it kept waiting was posted.
    pub drained: Timestamp,
    /// Orders taken before it came back and posted after it went down.
    pub backlog: usize,
    /// Requests the ERP served a second from its return until the backlog drained.
    pub served_per_sec: f64,
    /// Posting time of the orders the outage did not hold up: posted before it began,
    /// or taken after its backlog drained.
    pub posting_outside: Percentiles,
}

impl Outage {
    /// From each order's taking and posting times (`None`: never posted), the outage
    /// window, and samples of the ERP's served-request count over the run.
    pub fn of(
        orders: &[(Timestamp, Option<Timestamp>)],
        down: Timestamp,
        up: Timestamp,
        served: &[(Timestamp, u64)],
    ) -> Self {
        let held_up = |taken: Timestamp, posted: Timestamp| taken < up && posted >= down;
        let posted = || orders.iter().filter_map(|(taken, posted)| Some((*taken, (*posted)?)));
        let drained = posted().filter(|(t, p)| held_up(*t, *p)).map(|(_, p)| p).max().unwrap_or(up).max(up);
        let backlog = posted().filter(|(t, p)| held_up(*t, *p)).count();
        let posting_outside =
            Percentiles::of(posted().filter(|(t, p)| *p < down || *t > drained).map(|(t, p)| elapsed(t, p)).collect());
        // The served count at a moment: the last sample at or before it.
        let at = |when: Timestamp| served.iter().take_while(|(t, _)| *t <= when).last().map_or(0, |(_, n)| *n);
        let span = elapsed(up, drained).as_secs_f64();
        let served_per_sec = if span > 0.0 { at(drained).saturating_sub(at(up)) as f64 / span } else { 0.0 };
        Self { down, up, drained, backlog, served_per_sec, posting_outside }
    }
}

/// The time from `from` to `to`, zero when `to` is earlier.
pub fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to - from).unwrap_or_default()
}

/// One state of a SKU's stock at the WMS: shippable units from `at` on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StockState {
    /// When it began.
    pub at: Timestamp,
    /// On hand − reserved.
    pub shippable: i64,
}

/// One quantity a channel showed from `at` on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shown {
    /// When the channel began showing it.
    pub at: Timestamp,
    /// The quantity.
    pub quantity: i64,
}

/// A moment a channel showed more than the WMS could ship.
#[derive(Clone, Debug, PartialEq)]
pub struct Overshow {
    /// The channel.
    pub channel: String,
    /// The SKU.
    pub sku: String,
    /// When.
    pub at: Timestamp,
    /// What the channel showed.
    pub shown: i64,
    /// What the WMS could ship.
    pub shippable: i64,
}

fn value_at<T: Copy>(history: &[(Timestamp, T)], at: Timestamp) -> Option<T> {
    history.iter().take_while(|(t, _)| *t <= at).last().map(|(_, v)| *v)
}

/// Every moment, after `from`, at which the channel showed more than the WMS could ship:
/// checked at each change of either side.
pub fn overshows(channel: &str, sku: &str, stock: &[StockState], shown: &[Shown], from: Timestamp) -> Vec<Overshow> {
    let stock: Vec<(Timestamp, i64)> = stock.iter().map(|s| (s.at, s.shippable)).collect();
    let shown: Vec<(Timestamp, i64)> = shown.iter().map(|s| (s.at, s.quantity)).collect();
    let mut moments: Vec<Timestamp> = stock.iter().chain(&shown).map(|(t, _)| *t).filter(|t| *t >= from).collect();
    moments.sort();
    moments.dedup();
    moments
        .into_iter()
        .filter_map(|at| {
            let (q, s) = (value_at(&shown, at)?, value_at(&stock, at).unwrap_or(0));
            (q > s).then(|| Overshow { channel: channel.into(), sku: sku.into(), at, shown: q, shippable: s })
        })
        .collect()
}

/// How long after each WMS stock change (from `from` on) the channel showed a figure
/// that reflects it: the first change of the channel to `expected(shippable)` of that
/// state or of a later one already made. A change the channel already reflected counts 0.
/// Changes the channel never caught up with are left out (and show as a smaller count).
pub fn freshness(
    stock: &[StockState],
    shown: &[Shown],
    expected: impl Fn(i64) -> i64,
    from: Timestamp,
) -> Vec<Duration> {
    let mut out = Vec::new();
    for (i, state) in stock.iter().enumerate().filter(|(_, s)| s.at >= from) {
        let reflects = |at: Timestamp, quantity: i64| {
            stock[i..].iter().take_while(|later| later.at <= at).any(|later| expected(later.shippable) == quantity)
        };
        let before = shown.iter().take_while(|s| s.at <= state.at).last();
        if before.is_some_and(|s| reflects(state.at, s.quantity)) {
            out.push(Duration::ZERO);
            continue;
        }
        if let Some(caught_up) = shown.iter().filter(|s| s.at > state.at).find(|s| reflects(s.at, s.quantity)) {
            out.push(elapsed(state.at, caught_up.at));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_764_000_000_000 + ms).unwrap()
    }

    #[test]
    fn the_outage_backlog_and_the_posting_time_outside_it() {
        let (down, up) = (t(10_000), t(20_000));
        let orders = [
            (t(1_000), Some(t(1_100))),   // posted before the outage: outside
            (t(9_000), Some(t(21_000))),  // taken before, posted after it began: backlog
            (t(15_000), Some(t(23_000))), // taken during it: backlog, the last to drain
            (t(22_000), Some(t(22_500))), // taken before the backlog drained: neither
            (t(24_000), Some(t(24_200))), // after the backlog drained: outside
            (t(25_000), None),            // never posted
        ];
        let served = [(t(0), 0), (t(19_000), 100), (t(20_000), 100), (t(23_000), 400), (t(30_000), 500)];
        let outage = Outage::of(&orders, down, up, &served);
        assert_eq!((outage.backlog, outage.drained), (2, t(23_000)));
        assert_eq!(outage.served_per_sec, 100.0, "300 requests in the 3 s from its return to the drain");
        let outside = outage.posting_outside;
        assert_eq!((outside.count, outside.max), (2, Duration::from_millis(200)));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let p = Percentiles::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!(
            (p.p50, p.p99, p.max, p.count),
            (Duration::from_millis(50), Duration::from_millis(99), Duration::from_millis(100), 100)
        );
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
    }

    #[test]
    fn a_channel_above_the_shippable_stock_is_an_overshow() {
        let stock = [StockState { at: t(0), shippable: 10 }, StockState { at: t(100), shippable: 4 }];
        // The channel showed 7 until 150 ms: above the 4 left from 100 ms.
        let shown = [Shown { at: t(10), quantity: 7 }, Shown { at: t(150), quantity: 2 }];
        let found = overshows("shop", "A", &stock, &shown, t(0));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].at, found[0].shown, found[0].shippable), (t(100), 7, 4));
    }

    #[test]
    fn freshness_is_the_time_until_the_channel_shows_this_state_or_a_later_one() {
        let half = |s: i64| s / 2;
        let stock = [
            StockState { at: t(0), shippable: 10 },
            StockState { at: t(100), shippable: 8 },
            StockState { at: t(110), shippable: 6 },
        ];
        // 5 at 40 ms (state 0), then straight to 3 at 300 ms (state 2; state 1's 4 skipped).
        let shown = [Shown { at: t(40), quantity: 5 }, Shown { at: t(300), quantity: 3 }];
        let f = freshness(&stock, &shown, half, t(0));
        assert_eq!(f, [Duration::from_millis(40), Duration::from_millis(200), Duration::from_millis(190)]);
    }
}
