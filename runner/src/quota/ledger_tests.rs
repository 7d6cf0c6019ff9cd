//! The shared ledger's rounds: the sum of what runners use never passes the limits,
//! whatever the order their reads and writes interleave in; shares settle; the rate adapts
//! once for all.

use std::{sync::Arc, time::Duration};

use entrepot_api::resource::{ConnectorLimits, Priority};
use proptest::prelude::*;

use super::{
    Quota,
    ledger::{Decision, Ledger, Round, SenderEntry, decide},
    shared::Report,
    shares::{Limits, Share, Shares, nothing, total},
};

const LIMITS: Limits = Limits { rate: Some(20.0), burst: 4.0, concurrency: 4 };
const TTL: i64 = 3_000;

/// A runner in the simulation: its senders, the share its quota enforces, and a round
/// it read but has not written yet.
struct Runner {
    name: String,
    wants: [bool; 2],
    applied: Shares,
    pending: Option<(u64, Decision, i64)>,
    written_at: Option<i64>,
}

impl Runner {
    fn new(i: usize) -> Self {
        Self {
            name: format!("runner-{i}"),
            wants: [true, true],
            applied: [nothing(&LIMITS); 3],
            pending: None,
            written_at: None,
        }
    }

    fn senders(&self) -> Vec<SenderEntry> {
        [Priority::Low, Priority::High]
            .iter()
            .zip(self.wants)
            .map(|(&priority, wants)| SenderEntry {
                priority,
                wants,
                used: if wants { 5.0 } else { 0.0 },
                in_flight: 0.0,
            })
            .collect()
    }

    fn read(&mut self, ledger: &Ledger, revision: u64, now: i64, throttled: bool) {
        let report = Report {
            throttles: u32::from(throttled),
            pause: throttled.then_some(Duration::from_millis(500)),
            accepted: 10,
            ..Default::default()
        };
        let round = Round {
            member: &self.name,
            now,
            ttl_ms: TTL,
            declared: LIMITS,
            senders: self.senders(),
            accepted: 6.0,
            report: &report,
            applied: self.applied,
            in_use: [0; 3],
        };
        let decision = decide(ledger, &round);
        self.applied = decision.at_once;
        self.pending = Some((revision, decision, now));
    }

    /// Writes the round read, if nobody wrote meanwhile (compare-and-set).
    fn write(&mut self, ledger: &mut Ledger, revision: &mut u64) {
        let Some((read, decision, now)) = self.pending.take() else { return };
        if read == *revision {
            *ledger = decision.ledger;
            *revision += 1;
            self.applied = decision.after_write;
            self.written_at = Some(now);
        }
    }

    /// A runner that could not renew its entry for the ledger's `ttl` stops sending
    /// before the others drop it.
    fn lapse(&mut self, now: i64) {
        if self.written_at.is_none_or(|at| now >= at + TTL - 1) {
            self.applied = [nothing(&LIMITS); 3];
        }
    }

    fn rate(&self) -> f64 {
        total(&self.applied).0.unwrap()
    }

    fn slots(&self) -> u32 {
        total(&self.applied).1
    }
}

#[derive(Clone, Debug)]
enum Step {
    Read(usize),
    Write(usize),
    Want(usize, usize),
    Wait(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..4usize).prop_map(Step::Read),
        4 => (0..4usize).prop_map(Step::Write),
        1 => (0..4usize, 0..2usize).prop_map(|(r, p)| Step::Want(r, p)),
        1 => (0..2_000i64).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn whatever_the_interleaving_the_runners_never_use_more_than_the_limits(steps in prop::collection::vec(step(), 1..120)) {
        let mut runners: Vec<Runner> = (0..4).map(Runner::new).collect();
        let (mut ledger, mut revision, mut now) = (Ledger::default(), 0u64, 1_000_000i64);
        for step in steps {
            match step {
                Step::Read(i) => runners[i].read(&ledger, revision, now, false),
                Step::Write(i) => runners[i].write(&mut ledger, &mut revision),
                Step::Want(i, p) => runners[i].wants[p] ^= true,
                Step::Wait(ms) => now += ms,
            }
            runners.iter_mut().for_each(|r| r.lapse(now));
            let rate: f64 = runners.iter().map(Runner::rate).sum();
            let slots: u32 = runners.iter().map(Runner::slots).sum();
            prop_assert!(rate <= 20.0 + 1e-9, "{rate}/s in use");
            prop_assert!(slots <= 4, "{slots} slots in use");
        }
    }
}

/// Each runner reads and writes in turn, `rounds` times.
fn settle(runners: &mut [Runner], ledger: &mut Ledger, revision: &mut u64, now: &mut i64, rounds: usize) {
    for _ in 0..rounds {
        for r in runners.iter_mut() {
            r.read(ledger, *revision, *now, false);
            r.write(ledger, revision);
            *now += 100;
        }
    }
}

#[test]
fn three_runners_settle_on_even_shares_and_high_priority_takes_what_low_gives_up() {
    let mut runners: Vec<Runner> = (0..3).map(Runner::new).collect();
    let (mut ledger, mut revision, mut now) = (Ledger::default(), 0u64, 1_000_000i64);
    settle(&mut runners, &mut ledger, &mut revision, &mut now, 3);
    // Each high-priority flow has a third, a slot each, the fourth slot and a trickle to
    // a low-priority one.
    for r in &runners {
        assert!(r.applied[2].rate.unwrap() > 6.0 && r.applied[2].slots == 1, "{:?}", r.applied);
    }
    assert_eq!(runners.iter().map(Runner::slots).sum::<u32>(), 4);
    assert!(runners.iter().map(Runner::rate).sum::<f64>() > 18.5);
    // Runner 0's high-priority flow is done, runner 1's low one too: each runner's share
    // follows its senders.
    runners[0].wants[1] = false;
    runners[1].wants[0] = false;
    settle(&mut runners, &mut ledger, &mut revision, &mut now, 3);
    let rates: Vec<f64> = runners.iter().map(Runner::rate).collect();
    assert!(rates[0] < 1.0, "runner 0 has only low-priority work left: {rates:?}");
    assert!(rates.iter().sum::<f64>() > 18.5, "{rates:?}");
    // An idle runner holds nothing; the others take its share.
    runners[2].wants = [false, false];
    settle(&mut runners, &mut ledger, &mut revision, &mut now, 3);
    let member = &ledger.members["runner-2"];
    assert_eq!((member.holds.rate, member.holds.slots), (0.0, 0));
    assert!(runners[1].rate() > 18.0, "{:?}", runners[1].applied);
}

#[test]
fn a_429_cuts_the_shared_rate_once_for_every_runner_and_clean_answers_probe_it_back() {
    let mut runners: Vec<Runner> = (0..3).map(Runner::new).collect();
    let (mut ledger, mut revision, mut now) = (Ledger::default(), 0u64, 1_000_000i64);
    settle(&mut runners, &mut ledger, &mut revision, &mut now, 3);
    // Two runners see 429s of the same overload: one cut, measured on what the three
    // accepted (6/s each).
    runners[0].read(&ledger, revision, now, true);
    runners[0].write(&mut ledger, &mut revision);
    let cut = ledger.rate.clone().unwrap();
    assert!((cut.rate - 18.0 * 0.97).abs() < 1e-9, "{cut:?}");
    assert_eq!(ledger.paused_until, now + 500);
    runners[1].read(&ledger, revision, now + 200, true);
    runners[1].write(&mut ledger, &mut revision);
    assert_eq!(ledger.rate.as_ref().unwrap().rate, cut.rate, "the same overload cuts once");
    assert_eq!(ledger.paused_until, now + 700, "but every 429 pauses every runner");
    // Every runner's share follows at its next round.
    settle(&mut runners, &mut ledger, &mut revision, &mut now, 1);
    let sum: f64 = runners.iter().map(Runner::rate).sum();
    assert!(sum <= cut.rate + 1e-9, "{sum}");
    // Clean answers: one probe a second for all runners together.
    now += 1_000;
    settle(&mut runners, &mut ledger, &mut revision, &mut now, 1);
    let probed = ledger.rate.as_ref().unwrap().rate;
    assert!(probed > cut.rate && probed < 20.0, "{probed}");
    now += 20_000;
    settle(&mut runners, &mut ledger, &mut revision, &mut now, 60);
    assert_eq!(ledger.rate.as_ref().unwrap().rate, 20.0, "back to the declared rate");
}

#[test]
fn the_strictest_declaration_counts_and_expired_runners_are_dropped() {
    let mut ledger = Ledger::default();
    let report = Report::default();
    let round = |member: &'static str, declared: Limits, now: i64, in_use: u32| Round {
        member,
        now,
        ttl_ms: TTL,
        declared,
        senders: vec![SenderEntry { priority: Priority::Normal, wants: true, used: 1.0, in_flight: 1.0 }],
        accepted: 0.0,
        report: &report,
        applied: [nothing(&LIMITS); 3],
        in_use: [0, in_use, 0],
    };
    ledger = decide(&ledger, &round("a", Limits { rate: Some(10.0), burst: 2.0, concurrency: 2 }, 0, 2)).ledger;
    assert_eq!(ledger.members["a"].holds.slots, 2, "slots in flight are held, whatever the share");
    let decision = decide(&ledger, &round("b", LIMITS, 100, 0));
    assert_eq!(decision.ledger.rate.as_ref().unwrap().rate, 10.0, "a's stricter rate");
    assert_eq!(total(&decision.after_write).1, 0, "a holds both slots still in flight");
    let decision = decide(&ledger, &round("b", LIMITS, TTL + 1, 0));
    assert!(!decision.ledger.members.contains_key("a"), "a stopped renewing");
    assert_eq!(decision.after_write[1].slots, 4);
    assert_eq!(decision.after_write[1].rate, Some(20.0));
}

#[tokio::test(start_paused = true)]
async fn a_shared_quota_sends_within_its_share_and_reports_what_it_saw() {
    let limits =
        ConnectorLimits { requests_per_second: Some(20.0), burst: Some(4), concurrency: Some(4), ..Default::default() };
    let quota = Arc::new(Quota::new(Some(&limits)));
    quota.start_sharing();
    assert!(quota.try_slot(Priority::High).is_none(), "nothing to send with before the first share");
    let waiter = tokio::spawn({
        let quota = quota.clone();
        async move { drop(quota.admit(quota.slot(Priority::High).await).await) }
    });
    tokio::task::yield_now().await;
    let report = quota.take_report();
    assert_eq!(report.wants, [false, false, true]);
    let part = Share { rate: Some(2.0), burst: 1.0, slots: 1 };
    quota.set_shares([part, nothing(&quota.declared()), part]);
    // The waiter waits out a token (none held at first); the low priority has a bucket
    // of its own, filled meanwhile.
    waiter.await.unwrap();
    let start = tokio::time::Instant::now();
    for _ in 0..2 {
        drop(quota.admit(quota.slot(Priority::Low).await).await);
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(500) && elapsed <= Duration::from_millis(510), "{elapsed:?}");
    assert_eq!(quota.take_report().admitted, [2, 0, 1]);
    // A 429: a pause, and no local cut: the shared rate is cut, for every runner.
    let throttled = crate::protocol::QuotaSignal {
        throttled: true,
        retry_after: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    quota.observe(&throttled);
    assert_eq!(quota.rate(), Some(4.0), "the shares together");
    let report = quota.take_report();
    assert_eq!((report.throttles, report.pause), (1, Some(Duration::from_secs(2))));
    // A share of nothing: requests wait.
    let nothing = nothing(&quota.declared());
    quota.set_shares([nothing; 3]);
    assert!(quota.try_slot(Priority::High).is_none());
    assert_eq!(quota.shares(), Some([nothing; 3]));
}
