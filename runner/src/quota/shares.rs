//! How one Connector's declared rate and concurrency are split among its senders when
//! several runners send to it (a flow's queue in JetStream): a pure function of what each
//! sender says of itself, so every runner computes the same split from the same entries.
//!
//! A sender is one runner's flows of one priority sending to the Connector. It says
//! whether it wants more than it has (records ready that waited for a slot or a token)
//! and what it used lately. The split mirrors what one runner's [`super::Quota`] does
//! between its flows (a slot goes to the highest priority waiting), with a guard against
//! starving the lower priorities:
//! - **rate**: a small reserve ([`STARVE_GUARD`] of the rate) is split evenly among every
//!   sender that sends or wants to, so a low-priority flow under a high-priority backlog
//!   still moves; the rest goes priority by priority, highest first, each level splitting
//!   what is left fairly (max-min: a sender that wants less than an even split gets what
//!   it wants, the others share the remainder). A sender that wants no more than it used
//!   gets what it used and a margin; an idle sender gets nothing: its share goes to the
//!   others. What nobody wants stays unassigned, so a sender that starts to want it can
//!   take it without waiting for another to give some up.
//! - **slots**: whole requests in flight, never more than declared in all. Priority by
//!   priority, down to the highest that wants more: a sender that wants no more gets
//!   what it had in flight lately, one that wants more gets one slot, while slots last.
//!   Then one slot for the lower priorities (the sender with the most rate among them),
//!   the guard again; the rest to the senders of the highest priority that want more, by
//!   largest remainder of their rate shares. A sender with no slot waits.
//! - **burst**: each sender's bucket holds its part of the declared burst, and at least
//!   one request (a bucket that holds less never sends); where those rounded-up parts
//!   pass the declared burst, the rates give way by the excess, so that the rates and the
//!   bursts together stay within the declared rate and burst (what a second may see). A
//!   sender without a slot gets no rate either (it could not use it).

use entrepot_api::resource::Priority;
use serde::{Deserialize, Serialize};

/// Part of the rate reserved for every sender that sends or wants to, whatever its
/// priority.
pub const STARVE_GUARD: f64 = 0.05;
/// What a sender that wants no more than it used gets on top of it: this share of its use,
/// and this share of the Connector's rate.
const MARGIN_OF_USE: f64 = 0.25;
const MARGIN_OF_RATE: f64 = 0.02;

/// A Connector's limits as they stand (the rate after adaptation to the target's 429s).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Requests per second for all senders together; `None`: unlimited.
    pub rate: Option<f64>,
    /// Requests that may go at once after a quiet spell, for all senders together.
    pub burst: f64,
    /// Requests in flight for all senders together.
    pub concurrency: u32,
}

/// One sender: a runner's flows of one priority sending to the Connector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sender {
    /// The runner.
    pub member: String,
    /// Its flows' `spec.delivery.priority`.
    pub priority: Priority,
    /// Whether it wants more than it has: records ready that waited for a slot or a token.
    pub wants: bool,
    /// Requests per second it sent lately.
    pub used: f64,
    /// Requests it had in flight lately, at their peak: what a sender that wants no more
    /// needs of the slots.
    pub in_flight: f64,
}

/// What one runner may use of the Connector: the limits its local quota enforces.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Share {
    /// Requests per second (`None`: unlimited, the Connector declares no rate).
    pub rate: Option<f64>,
    /// Its token bucket's size (0 with no rate share).
    pub burst: f64,
    /// Requests in flight.
    pub slots: u32,
}

/// A runner's shares of a Connector, one per priority (by [`index`]).
pub type Shares = [Share; 3];

/// The priorities, in the order of their [`index`].
pub const PRIORITIES: [Priority; 3] = [Priority::Low, Priority::Normal, Priority::High];

/// The index of `priority` in arrays by priority ([`Shares`], reports).
pub fn index(priority: Priority) -> usize {
    match priority {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
    }
}

/// The rate share and slots of each of `senders`, in their order.
pub fn split(limits: &Limits, senders: &[Sender]) -> Vec<(Option<f64>, u32)> {
    let rates = limits.rate.map(|rate| split_rate(rate, senders));
    // Without a rate, every sender that sends or wants to counts alike.
    let weights: Vec<f64> = match &rates {
        Some(rates) => rates.clone(),
        None => senders.iter().map(|s| if s.wants || s.used > 0.0 { 1.0 } else { 0.0 }).collect(),
    };
    let slots = split_slots(limits.concurrency, senders, &weights);
    let rates = rates.map(|mut rates| {
        // A rate without a slot cannot be used: it stays unassigned.
        for (rate, slots) in rates.iter_mut().zip(&slots) {
            if *slots == 0 {
                *rate = 0.0;
            }
        }
        pay_for_bursts(limits, &mut rates);
        rates
    });
    (0..senders.len()).map(|i| (rates.as_ref().map(|r| r[i]), slots[i])).collect()
}

/// In any one second a bucket lets through its rate and what it holds: the buckets
/// together, the rates and the bursts. Each holds its part of the declared burst but one
/// request at least, so when the parts of senders with little rate round up, the rates
/// give way by as much: the sum stays within the declared rate and burst.
fn pay_for_bursts(limits: &Limits, rates: &mut [f64]) {
    let Some(total) = limits.rate.filter(|r| *r > 0.0) else { return };
    let bursts: f64 = rates.iter().map(|r| burst_of(limits, Some(*r))).sum();
    let excess = bursts - limits.burst;
    if excess > 0.0 {
        let scale = ((total - excess) / total).max(0.0);
        rates.iter_mut().for_each(|r| *r *= scale);
    }
}

/// What each priority of runner `member` may use: its senders' shares, with their parts
/// of the burst.
pub fn shares_of(limits: &Limits, senders: &[Sender], member: &str) -> Shares {
    let mut shares = [nothing(limits); 3];
    for (sender, (rate, slots)) in senders.iter().zip(split(limits, senders)) {
        if sender.member == member {
            let share = &mut shares[index(sender.priority)];
            share.rate = share.rate.zip(rate).map(|(a, b)| a + b);
            share.slots += slots;
        }
    }
    for share in &mut shares {
        share.burst = burst_of(limits, share.rate);
    }
    shares
}

/// A share of nothing: no rate (when there is a rate), no slot.
pub fn nothing(limits: &Limits) -> Share {
    Share { rate: limits.rate.map(|_| 0.0), burst: 0.0, slots: 0 }
}

/// A runner's shares together: requests per second (`None`: unlimited) and slots.
pub fn total(shares: &Shares) -> (Option<f64>, u32) {
    let rate = shares.iter().try_fold(0.0, |sum, s| s.rate.map(|r| sum + r));
    (rate, shares.iter().map(|s| s.slots).sum())
}

/// A runner's part of the declared burst for its rate share: at least one request, none
/// without a share.
pub fn burst_of(limits: &Limits, rate: Option<f64>) -> f64 {
    match (rate, limits.rate) {
        (Some(share), Some(total)) if share > 0.0 && total > 0.0 => (limits.burst * share / total).max(1.0),
        (Some(_), _) => 0.0,
        (None, _) => limits.burst.max(1.0),
    }
}

/// What a sender asks of the rate: all it can get when it wants more, else what it used
/// and a margin, nothing when idle.
fn demand(sender: &Sender, rate: f64) -> f64 {
    if sender.wants {
        f64::INFINITY
    } else if sender.used > 0.0 {
        sender.used * (1.0 + MARGIN_OF_USE) + rate * MARGIN_OF_RATE
    } else {
        0.0
    }
}

fn split_rate(rate: f64, senders: &[Sender]) -> Vec<f64> {
    let rate = rate.max(0.0);
    let demands: Vec<f64> = senders.iter().map(|s| demand(s, rate)).collect();
    let mut shares = fair(rate * STARVE_GUARD, &demands);
    let mut left = rate - shares.iter().sum::<f64>();
    for level in [Priority::High, Priority::Normal, Priority::Low] {
        let at: Vec<usize> = (0..senders.len()).filter(|&i| senders[i].priority == level).collect();
        let residual: Vec<f64> = at.iter().map(|&i| demands[i] - shares[i]).collect();
        for (&i, given) in at.iter().zip(fair(left, &residual)) {
            shares[i] += given;
            left -= given;
        }
    }
    // Rounding never lets the sum pass the rate.
    let total: f64 = shares.iter().sum();
    if total > rate && total > 0.0 {
        shares.iter_mut().for_each(|s| *s *= rate / total);
    }
    shares
}

/// `amount` split max-min fairly among `demands`: in order of demand, each gets what it
/// asks or an even split of what is left, whichever is less.
fn fair(amount: f64, demands: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..demands.len()).filter(|&i| demands[i] > 0.0).collect();
    order.sort_by(|&a, &b| demands[a].total_cmp(&demands[b]).then(a.cmp(&b)));
    let mut out = vec![0.0; demands.len()];
    let mut left = amount.max(0.0);
    for (n, &i) in order.iter().enumerate() {
        let even = left / (order.len() - n) as f64;
        out[i] = demands[i].min(even);
        left -= out[i];
    }
    out
}

/// A weight to compare by: equal shares computed in different orders differ in their
/// last bits, and must not hand a slot from one runner to another at every round.
fn rounded(weight: f64) -> i64 {
    (weight * 1e6).round() as i64
}

fn split_slots(concurrency: u32, senders: &[Sender], weights: &[f64]) -> Vec<u32> {
    let mut slots = vec![0u32; senders.len()];
    let mut order: Vec<usize> = (0..senders.len()).filter(|&i| weights[i] > 0.0).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&senders[a], &senders[b]);
        y.priority
            .cmp(&x.priority)
            .then(x.wants.cmp(&y.wants))
            .then(rounded(weights[b]).cmp(&rounded(weights[a])))
            .then(x.member.cmp(&y.member))
            .then(a.cmp(&b))
    });
    let top = order.iter().find(|&&i| senders[i].wants).map(|&i| senders[i].priority);
    let mut left = concurrency;
    // Priority by priority, down to the highest that wants more: what the senders that
    // want no more have in flight, and one slot for each that wants more.
    for &i in &order {
        let sender = &senders[i];
        if top.is_some_and(|top| sender.priority < top) {
            break;
        }
        let need = if sender.wants { 1 } else { sender.in_flight.round() as u32 };
        slots[i] = need.min(left);
        left -= slots[i];
    }
    let Some(top) = top else { return slots };
    // The guard: one slot below, for the sender that wants more with the most rate (of
    // the highest priority), else for one that has requests in flight.
    let below = |i: usize| senders[i].priority < top;
    let guarded = order.iter().find(|&&i| below(i) && senders[i].wants);
    if left > 0
        && let Some(&i) = guarded.or_else(|| order.iter().find(|&&i| below(i) && senders[i].in_flight >= 0.5))
    {
        slots[i] = 1;
        left -= 1;
    }
    // The rest to the highest priority that wants more, by largest remainder.
    let takers: Vec<usize> =
        order.iter().copied().filter(|&i| senders[i].wants && slots[i] > 0 && senders[i].priority == top).collect();
    let total: f64 = takers.iter().map(|&i| weights[i]).sum();
    if takers.is_empty() || total <= 0.0 {
        return slots;
    }
    let quotas: Vec<f64> = takers.iter().map(|&i| f64::from(left) * weights[i] / total).collect();
    let mut given = 0;
    for (&i, q) in takers.iter().zip(&quotas) {
        let whole = q.floor() as u32;
        slots[i] += whole;
        given += whole;
    }
    let mut by_remainder: Vec<usize> = (0..takers.len()).collect();
    by_remainder.sort_by_key(|&k| std::cmp::Reverse(rounded(quotas[k] - quotas[k].floor())));
    for &k in by_remainder.iter().take((left - given) as usize) {
        slots[takers[k]] += 1;
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(member: &str, priority: Priority, wants: bool, used: f64) -> Sender {
        // A sender that sends has a request in flight now and then.
        Sender { member: member.into(), priority, wants, used, in_flight: if used > 0.0 { 1.0 } else { 0.0 } }
    }

    const LIMITS: Limits = Limits { rate: Some(20.0), burst: 4.0, concurrency: 4 };

    fn sums(limits: &Limits, senders: &[Sender]) -> (f64, u32) {
        let split = split(limits, senders);
        (split.iter().map(|(r, _)| r.unwrap_or(0.0)).sum(), split.iter().map(|(_, s)| s).sum())
    }

    #[test]
    fn the_sums_never_pass_the_limits() {
        let priorities = [Priority::Low, Priority::Normal, Priority::High];
        // Every mix of up to 9 senders: priorities, wanting or not, some use.
        for n in 0..=9usize {
            for seed in 0..60u64 {
                let senders: Vec<Sender> = (0..n)
                    .map(|i| {
                        let bits = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(i as u32 * 7);
                        let used = [0.0, 0.5, 3.0, 25.0][(bits % 4) as usize];
                        sender(&format!("r{}", i % 3), priorities[(bits >> 3) as usize % 3], bits & 64 != 0, used)
                    })
                    .collect();
                for limits in [
                    LIMITS,
                    Limits { rate: Some(0.5), burst: 1.0, concurrency: 1 },
                    Limits { rate: None, burst: 1.0, concurrency: 7 },
                ] {
                    let (rate, slots) = sums(&limits, &senders);
                    assert!(rate <= limits.rate.unwrap_or(0.0) + 1e-9, "{rate} for {senders:?}");
                    // What one second may see: the rates and what the buckets hold.
                    let bursts: f64 = split(&limits, &senders).iter().map(|(r, _)| burst_of(&limits, *r)).sum::<f64>();
                    if let Some(declared) = limits.rate {
                        assert!(rate + bursts <= declared + limits.burst + 1e-9, "{senders:?}");
                    }
                    assert!(slots <= limits.concurrency, "{slots} for {senders:?}");
                    // A sender that wants more has a share unless every slot is taken.
                    for (s, (r, n)) in senders.iter().zip(split(&limits, &senders)) {
                        if s.wants && slots < limits.concurrency {
                            assert!(n > 0 && r.is_none_or(|r| r > 0.0), "{s:?} starved: {senders:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn high_priority_demand_is_served_first_and_low_keeps_a_trickle() {
        let senders = [
            sender("a", Priority::High, true, 6.0),
            sender("a", Priority::Low, true, 0.1),
            sender("b", Priority::High, true, 6.0),
            sender("b", Priority::Low, true, 0.1),
            sender("c", Priority::Low, true, 0.1),
        ];
        let split = split(&LIMITS, &senders);
        let rate = |i: usize| split[i].0.unwrap();
        // Slots: one each for the high ones, one for the low ones (the guard: a's, the
        // first by name), the last to a high one.
        assert_eq!(split.iter().map(|s| s.1).collect::<Vec<_>>(), [2, 1, 1, 0, 0]);
        // The guard: 5% of 20/s split among five senders, the rest to the two high ones;
        // the low ones without a slot have no rate, and the rates give way to the bursts'
        // rounding up (two of 1.94 and one of 1: 0.88 above the declared 4).
        let scale = (20.0 - 0.88) / 20.0;
        assert!((rate(1) - 0.2 * scale).abs() < 1e-9 && rate(3) == 0.0 && rate(4) == 0.0, "{split:?}");
        assert!((rate(0) - 9.7 * scale).abs() < 1e-9 && (rate(2) - 9.7 * scale).abs() < 1e-9, "{split:?}");
        let shares = shares_of(&LIMITS, &senders, "a");
        assert!((shares[2].burst - 4.0 * 9.7 * scale / 20.0).abs() < 1e-9);
        assert_eq!(shares[0].burst, 1.0, "a bucket holds one request at least");
        assert!((total(&shares).0.unwrap() - 9.9 * scale).abs() < 1e-9);
    }

    #[test]
    fn what_high_leaves_goes_to_low_and_an_idle_sender_holds_nothing() {
        // High sends a trickle and wants no more: low gets the rest.
        let senders = [
            sender("a", Priority::High, false, 2.0),
            sender("b", Priority::Low, true, 5.0),
            sender("c", Priority::Normal, false, 0.0),
        ];
        let split = split(&LIMITS, &senders);
        // What it used and a margin; the bursts: 1 (rounded up from 0.58) and 3.42.
        let (high, scale) = (2.0 * 1.25 + 20.0 * 0.02, (20.0 - 0.42) / 20.0);
        assert!((split[0].0.unwrap() - high * scale).abs() < 1e-9, "{split:?}");
        assert!((split[1].0.unwrap() - (20.0 - high) * scale).abs() < 1e-9, "{split:?}");
        assert_eq!(split[2], (Some(0.0), 0), "idle: nothing");
        // Slots: one for high, the other three to the low one that wants more.
        assert_eq!((split[0].1, split[1].1), (1, 3));
        assert_eq!(shares_of(&LIMITS, &senders, "c"), [nothing(&LIMITS); 3]);
    }

    #[test]
    fn equal_senders_split_evenly_and_slots_by_largest_remainder() {
        let senders: Vec<Sender> = ["a", "b", "c"].iter().map(|m| sender(m, Priority::Normal, true, 1.0)).collect();
        let split = split(&LIMITS, &senders);
        for (rate, _) in &split {
            assert!((rate.unwrap() - 20.0 / 3.0).abs() < 1e-9);
        }
        let mut slots: Vec<u32> = split.iter().map(|s| s.1).collect();
        slots.sort();
        assert_eq!(slots, [1, 1, 2]);
        // More senders than slots: the highest priority has them, but the guard's one; the
        // rest wait.
        let mut many: Vec<Sender> = (0..6).map(|i| sender(&format!("r{i}"), Priority::Low, true, 1.0)).collect();
        many[5].priority = Priority::High;
        let split = super::split(&LIMITS, &many);
        assert_eq!(split[5].1, 3);
        assert_eq!(split.iter().filter(|s| s.1 == 0).count(), 4);
        // A high-priority sender that wants no more keeps what it has in flight.
        many[5].wants = false;
        many[5].in_flight = 2.0;
        let split = super::split(&LIMITS, &many);
        assert_eq!(split[5].1, 2);
        // No rate declared: slots only.
        let unlimited = Limits { rate: None, burst: 1.0, concurrency: 4 };
        let shares = shares_of(&unlimited, &senders, "a");
        assert_eq!(total(&shares), (None, 2));
        assert_eq!(shares[1], Share { rate: None, burst: 1.0, slots: 2 });
    }
}
