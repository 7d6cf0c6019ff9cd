//! The ledger of a Connector shared by several runners: one key-value entry that every
//! runner sending to the Connector reads and rewrites with compare-and-set, once a round
//! (`queue/jetstream/connector_quota.rs` does the reading and writing; this is what is in
//! it and what one round decides, as a pure function).
//!
//! It holds each runner's senders (priority, wants more, used lately), what the runner
//! *holds* (the rate and slots its local quota may use now, slots in flight included),
//! the rate in force for all of them after adaptation to the target's 429s, and a pause
//! every runner keeps. A round:
//! 1. drops the runners whose entry expired (a runner that cannot renew its entry stops
//!    sending before it expires: see `connector_quota.rs`);
//! 2. adapts the shared rate to what this runner saw: a 429 cuts it (once a second at
//!    most, however many runners saw the same overload, measured on what every runner
//!    had accepted: [`super::adapt::cut`]), clean answers probe it back up (once a second
//!    for all runners: [`super::adapt::probe`]), a rate the target names replaces it;
//! 3. splits the limits among every runner's senders ([`super::shares`]);
//! 4. lowers what this runner holds at once where its share fell, and raises it (highest
//!    priority first) only as far as what the others hold leaves, in the entry it writes.
//!
//! Why the sum never passes the limits: a runner lowers what it uses before it writes
//! that it holds less, and uses more only after it wrote, with compare-and-set on the
//! revision it read, that it holds more; what it may hold is what the others' holdings in
//! that same revision leave. Every write is checked against the one before, so the
//! holdings in the latest revision always fit the limits, and each runner uses no more
//! than it holds there. Only a cut of the rate (a 429) leaves the holdings above the new
//! rate, until each runner's next round.

use std::collections::BTreeMap;

use entrepot_api::resource::Priority;
use serde::{Deserialize, Serialize};

use super::{
    adapt,
    shared::Report,
    shares::{self, Limits, PRIORITIES, Sender, Shares},
};

/// One cut of the shared rate a second at most: the runners that saw the same overload
/// cut it once.
const CUT_SPACING_MS: i64 = 1_000;
/// The shared rate probes up once a second at most.
const PROBE_SPACING_MS: i64 = 1_000;
/// Weight of the latest round in what a sender used lately.
const SMOOTHING: f64 = 0.5;
/// Requests per second below which a sender counts as idle.
const IDLE: f64 = 0.05;
/// What is kept of what a sender used lately after a round it sent nothing in and wanted
/// nothing: its share goes to the others within a few rounds.
const KEPT_WHEN_QUIET: f64 = 0.25;
/// What is kept of a sender's peak in flight from one round to the next: a sender that
/// stopped sending gives its slots up within two rounds.
const PEAK_KEPT: f64 = 0.4;

/// The ledger's content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    /// The rate in force for all runners; absent until the first round of a Connector
    /// that declares a rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<SharedRate>,
    /// Every runner pauses until then (Unix ms): the `Retry-After` of a 429.
    #[serde(default)]
    pub paused_until: i64,
    /// The runners, by name.
    #[serde(default)]
    pub members: BTreeMap<String, Member>,
}

/// The rate in force for all runners, after adaptation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedRate {
    /// Requests per second, all runners together.
    pub rate: f64,
    /// The declared rate it adapted under: a new declaration moves a rate that was at
    /// the declared one along.
    pub declared: f64,
    /// The rate the target grants, learned from the 429s; probing slows near it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<f64>,
    /// When the rate last changed (Unix ms).
    pub changed_at: i64,
    /// When it was last cut for a 429 (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_at: Option<i64>,
}

/// One runner's entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Unix ms after which the entry counts no more (the runner stopped renewing it).
    pub until: i64,
    /// The Connector's limits as this runner's configuration declares them (runners
    /// disagree during a rollout: the strictest counts).
    pub declared: Limits,
    /// Its senders: its flows of each priority.
    pub senders: Vec<SenderEntry>,
    /// Answers per second not throttled, lately.
    pub accepted: f64,
    /// What its local quota may use now.
    pub holds: Holds,
}

/// One sender's entry.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SenderEntry {
    /// Its flows' priority.
    pub priority: Priority,
    /// Records ready that waited for a slot or a token.
    pub wants: bool,
    /// Requests per second sent lately.
    pub used: f64,
    /// Requests in flight lately, at their peak.
    #[serde(default)]
    pub in_flight: f64,
}

/// What a runner's local quota may use now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holds {
    /// Requests per second.
    pub rate: f64,
    /// Requests in flight, its share or those in flight, whichever is more.
    pub slots: u32,
}

/// What one runner brings to a round.
#[derive(Clone, Debug)]
pub struct Round<'a> {
    /// Its name.
    pub member: &'a str,
    /// Unix ms.
    pub now: i64,
    /// How long its entry counts without renewal.
    pub ttl_ms: i64,
    /// The limits its configuration declares.
    pub declared: Limits,
    /// Its senders as they stand ([`Usage::senders`]).
    pub senders: Vec<SenderEntry>,
    /// Its answers per second not throttled, lately.
    pub accepted: f64,
    /// What its quota saw since the last round.
    pub report: &'a Report,
    /// The shares its quota enforces now, per priority.
    pub applied: Shares,
    /// Its requests in flight now, per priority.
    pub in_use: [u32; 3],
}

/// What a round decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The ledger to write (compare-and-set on the revision read).
    pub ledger: Ledger,
    /// The shares to enforce at once, before writing: never more than before.
    pub at_once: Shares,
    /// The shares to enforce once the write went through.
    pub after_write: Shares,
    /// This runner's shares of the split: more than `after_write` while the others still
    /// hold what it is to have.
    pub target: Shares,
}

/// One round of runner `round.member` on `ledger` as read.
pub fn decide(ledger: &Ledger, round: &Round<'_>) -> Decision {
    let now = round.now;
    let mut next = ledger.clone();
    next.members.retain(|name, m| m.until > now && name != round.member);
    let declared = next.members.values().map(|m| m.declared).fold(round.declared, strictest);
    if round.report.throttles > 0 {
        let pause = round.report.pause.map_or(0, |p| i64::try_from(p.as_millis()).unwrap_or(i64::MAX));
        next.paused_until = next.paused_until.max(now.saturating_add(pause));
    }
    let accepted = round.accepted + next.members.values().map(|m| m.accepted).sum::<f64>();
    next.rate = declared.rate.map(|d| adapt_rate(next.rate.take(), d, round.report, accepted, now));
    let limits = Limits { rate: next.rate.as_ref().map(|r| r.rate), ..declared };

    let mut senders: Vec<Sender> = next
        .members
        .iter()
        .flat_map(|(name, m)| m.senders.iter().map(move |s| (name.as_str(), s)))
        .chain(round.senders.iter().map(|s| (round.member, s)))
        .map(|(member, s)| Sender {
            member: member.to_string(),
            priority: s.priority,
            wants: s.wants,
            used: s.used,
            in_flight: s.in_flight,
        })
        .collect();
    senders.sort_by(|a, b| (&a.member, a.priority).cmp(&(&b.member, b.priority)));
    let target = shares::shares_of(&limits, &senders, round.member);

    let others = next.members.values().fold(Holds::default(), |sum, m| Holds {
        rate: sum.rate + m.holds.rate,
        slots: sum.slots.saturating_add(m.holds.slots),
    });
    // What fell is lowered at once.
    let mut shares = target;
    for (share, had) in shares.iter_mut().zip(&round.applied) {
        share.rate = share.rate.map(|t| t.min(had.rate.unwrap_or(0.0)));
        share.slots = share.slots.min(had.slots);
    }
    let held_slots = |shares: &Shares| -> u32 { shares.iter().zip(round.in_use).map(|(s, u)| s.slots.max(u)).sum() };
    let mut rate_room = limits.rate.map_or(0.0, |r| r - others.rate - shares::total(&shares).0.unwrap_or(0.0));
    let mut slot_room = limits.concurrency.saturating_sub(others.slots.saturating_add(held_slots(&shares)));
    let at_once = with_bursts(shares, &limits);
    // What rose, highest priority first, within what the others' holdings leave.
    for i in (0..PRIORITIES.len()).rev() {
        if let (Some(want), Some(has)) = (target[i].rate, shares[i].rate) {
            let more = (want - has).min(rate_room).max(0.0);
            shares[i].rate = Some(has + more);
            rate_room -= more;
        }
        while shares[i].slots < target[i].slots {
            let costs = u32::from(shares[i].slots >= round.in_use[i]);
            if costs > slot_room {
                break;
            }
            shares[i].slots += 1;
            slot_room -= costs;
        }
    }
    let after_write = with_bursts(shares, &limits);
    next.members.insert(
        round.member.to_string(),
        Member {
            until: now + round.ttl_ms,
            declared: round.declared,
            senders: round.senders.clone(),
            accepted: round.accepted,
            holds: Holds { rate: shares::total(&after_write).0.unwrap_or(0.0), slots: held_slots(&after_write) },
        },
    );
    Decision { ledger: next, at_once, after_write, target }
}

/// `shares` with each bucket sized for its rate.
fn with_bursts(mut shares: Shares, limits: &Limits) -> Shares {
    for share in &mut shares {
        share.burst = shares::burst_of(limits, share.rate);
    }
    shares
}

/// The stricter of two declarations, limit by limit.
fn strictest(a: Limits, b: Limits) -> Limits {
    let rate = match (a.rate, b.rate) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    Limits { rate, burst: a.burst.min(b.burst), concurrency: a.concurrency.min(b.concurrency) }
}

/// The shared rate after what this runner saw: `accepted` is every runner's answers per
/// second not throttled, lately.
fn adapt_rate(current: Option<SharedRate>, declared: f64, report: &Report, accepted: f64, now: i64) -> SharedRate {
    let mut r =
        current.unwrap_or(SharedRate { rate: declared, declared, learned: None, changed_at: now, cut_at: None });
    if r.declared != declared {
        r.rate = if r.rate >= r.declared { declared } else { r.rate.min(declared) };
        r.declared = declared;
    }
    if let Some(granted) = report.granted {
        r.rate = declared.min(granted);
        r.changed_at = now;
    }
    if report.throttles > 0 {
        if r.cut_at.is_none_or(|at| now - at >= CUT_SPACING_MS) {
            // Measured over two seconds since the last cut at least, as one runner does.
            let since = r.cut_at.unwrap_or(i64::MIN);
            let measured = (now.saturating_sub(since) >= 2_000 && accepted > 0.0).then_some(accepted);
            let (rate, learned) = adapt::cut(r.rate, declared, measured);
            (r.rate, r.learned, r.changed_at, r.cut_at) = (rate, Some(learned), now, Some(now));
        }
    } else if report.accepted > 0
        && report.granted.is_none()
        && r.rate < declared
        && now - r.changed_at >= PROBE_SPACING_MS
    {
        r.rate = adapt::probe(r.rate, declared, r.learned);
        r.changed_at = now;
    }
    r
}

/// What a runner's senders used lately, smoothed over rounds.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    used: [f64; 3],
    in_flight: [f64; 3],
    accepted: f64,
}

impl Usage {
    /// Takes in a report covering `seconds`; returns the senders of `priorities` (the
    /// runner's flows' priorities sending to the Connector).
    pub fn senders(&mut self, report: &Report, seconds: f64, priorities: &[Priority]) -> Vec<SenderEntry> {
        let seconds = seconds.max(0.001);
        for (i, (used, admitted)) in self.used.iter_mut().zip(report.admitted).enumerate() {
            *used = if admitted == 0 && !report.wants[i] {
                *used * KEPT_WHEN_QUIET
            } else {
                *used * (1.0 - SMOOTHING) + SMOOTHING * admitted as f64 / seconds
            };
            // Idle is idle: what is left of an old spell holds no share.
            if *used < IDLE {
                *used = 0.0;
            }
        }
        for (kept, peak) in self.in_flight.iter_mut().zip(report.in_flight) {
            *kept = f64::from(peak).max(*kept * PEAK_KEPT);
        }
        self.accepted = self.accepted * (1.0 - SMOOTHING) + SMOOTHING * report.accepted as f64 / seconds;
        PRIORITIES
            .iter()
            .enumerate()
            .filter(|(_, p)| priorities.contains(p))
            .map(|(i, &priority)| SenderEntry {
                priority,
                wants: report.wants[i],
                used: self.used[i],
                in_flight: self.in_flight[i],
            })
            .collect()
    }

    /// Answers per second not throttled, lately.
    pub fn accepted(&self) -> f64 {
        self.accepted
    }
}
