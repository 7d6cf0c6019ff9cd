//! A target Connector's quota shared by every runner that sends to it: the rounds of
//! [`crate::quota::ledger`] on the Connector's bucket (`Layout::connector_bucket`, one key,
//! `ledger`), run on the queue's NATS connection.
//!
//! Each round (every lease tick; at once when a flow starts to want more or the target
//! throttles; a quarter tick later when this runner could not take all its share yet)
//! reads the ledger, decides, lowers this runner's share at once if it fell, writes with
//! compare-and-set on the revision read, and raises the share only once written; a write
//! that loses the race reads again. A runner that cannot write its entry for two ticks less
//! than the lease TTL stops sending (share of nothing) before the others drop its entry and
//! hand its share round: so the sum stays within the limits when NATS is unreachable too.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use entrepot_api::{
    jetstream::{Layout, StreamPlan},
    resource::Priority,
};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{
    client::{self, Nats, failed},
    lease::LeaseTiming,
};
use crate::{
    queue::{QueueError, now_ms},
    quota::{
        Quota,
        ledger::{self, Ledger, Round, Usage},
        shared::Report,
        shares::{self, Shares},
    },
};

/// The ledger's key in the Connector's bucket.
const KEY: &str = "ledger";
/// Reads and writes of one round before it gives way to the next (others kept writing).
const ATTEMPTS: usize = 4;
/// Rounds asked for at once (a storm of 429s) run this far apart at least.
const MIN_SPACING: Duration = Duration::from_millis(50);

/// A Connector whose quota this runner shares with every runner that sends to it.
#[derive(Clone, Debug)]
pub struct SharedConnector {
    /// The Connector's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its quota in this runner, which flows sending to it share.
    pub quota: Arc<Quota>,
    /// The priorities of this runner's flows that send to it.
    pub priorities: Vec<Priority>,
    /// Its bucket, created when missing; `None`: it must exist.
    pub create: Option<StreamPlan>,
}

/// The Connectors whose quota this runner shares.
#[derive(Clone)]
pub(super) struct SharedQuotas(Vec<Arc<ConnectorQuota>>);

impl SharedQuotas {
    /// Shares each of `connectors`' quota with every runner sending to it (whatever flow
    /// it runs): from now on this runner's quota enforces its share.
    pub(super) fn start(
        nats: &Nats,
        member: &str,
        timing: LeaseTiming,
        connectors: Vec<SharedConnector>,
    ) -> Result<Self, QueueError> {
        let started = connectors.into_iter().map(|connector| start(nats, member, timing, connector));
        Ok(Self(started.collect::<Result<_, _>>()?))
    }

    /// Takes this runner out of every ledger (a clean shutdown).
    pub(super) async fn resign(&self) {
        for quota in &self.0 {
            quota.resign().await;
        }
    }
}

/// One Connector's coordination in this runner.
pub(super) struct ConnectorQuota {
    connector: String,
    member: String,
    bucket: kv::Store,
    quota: Arc<Quota>,
    priorities: Vec<Priority>,
    timing: LeaseTiming,
    /// Set when the runner leaves: no round writes its entry back.
    stopped: AtomicBool,
}

/// What the rounds carry from one to the next.
struct Rounds {
    usage: Usage,
    /// The shares the quota enforces.
    applied: Shares,
    last: Instant,
    /// When this runner's entry was last written (Unix ms).
    written_at: Option<i64>,
    /// 429s, pauses and granted rates a round could not write, for the next.
    carried: Report,
    /// This runner could not take all its share yet.
    short: bool,
}

/// Starts sharing `connector`'s quota: its bucket opened (or created), a first round run
/// now, the next in the background on the NATS connection's runtime.
fn start(
    nats: &Nats,
    member: &str,
    timing: LeaseTiming,
    connector: SharedConnector,
) -> Result<Arc<ConnectorQuota>, QueueError> {
    let js = nats.js.clone();
    let name = Layout::connector_bucket(&connector.namespace, &connector.name);
    let create = connector.create.clone();
    let bucket = nats.wait(async move {
        if let Some(plan) = &create {
            client::ensure(&js, plan).await?;
        }
        client::bucket(&js, &name).await
    })?;
    connector.quota.start_sharing();
    let shared = Arc::new(ConnectorQuota {
        connector: connector.name,
        member: member.to_string(),
        bucket,
        quota: connector.quota,
        priorities: connector.priorities,
        timing,
        stopped: AtomicBool::new(false),
    });
    let mut rounds = Rounds {
        usage: Usage::default(),
        applied: shared.nothing(),
        last: Instant::now(),
        written_at: None,
        carried: Report::default(),
        short: false,
    };
    let first = shared.clone();
    let rounds = nats.wait(async move { first.round(&mut rounds).await.map(|()| rounds) })?;
    nats.spawn(shared.clone().run(rounds));
    info!(connector = %shared.connector, member = %shared.member, shares = ?shared.quota.shares().map(|s| shares::total(&s)),
          "quota shared with the other runners sending to the Connector");
    Ok(shared)
}

impl ConnectorQuota {
    fn nothing(&self) -> Shares {
        [shares::nothing(&self.quota.declared()); 3]
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.timing.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    async fn run(self: Arc<Self>, mut rounds: Rounds) {
        loop {
            let wait = if rounds.short { self.timing.tick / 4 } else { self.timing.tick };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.quota.round_wanted() => {}
            }
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            self.lapse(&mut rounds);
            match tokio::time::timeout(self.timing.tick, self.round(&mut rounds)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(connector = %self.connector, error = %e, "cannot share the quota; retrying"),
                Err(_) => warn!(connector = %self.connector, "a round of the shared quota timed out; retrying"),
            }
            tokio::time::sleep(MIN_SPACING).await;
        }
    }

    /// Stops sending when this runner's entry is about to expire unrenewed: the others
    /// hand its share round then.
    fn lapse(&self, rounds: &mut Rounds) {
        let margin = 2 * i64::try_from(self.timing.tick.as_millis()).unwrap_or(0);
        let lapsed = rounds.written_at.is_some_and(|at| now_ms() >= at + self.ttl_ms() - margin);
        if lapsed && rounds.applied != self.nothing() {
            warn!(connector = %self.connector, "cannot renew this runner's share of the quota; sending nothing until it is");
            rounds.applied = self.nothing();
            self.quota.set_shares(rounds.applied);
        }
    }

    async fn round(&self, rounds: &mut Rounds) -> Result<(), QueueError> {
        let mut report = self.quota.take_report();
        let carried = std::mem::take(&mut rounds.carried);
        report.throttles += carried.throttles;
        report.pause = report.pause.max(carried.pause);
        report.granted = report.granted.or(carried.granted);
        let seconds = rounds.last.elapsed().as_secs_f64();
        rounds.last = Instant::now();
        let senders = rounds.usage.senders(&report, seconds, &self.priorities);
        for _ in 0..ATTEMPTS {
            let (ledger, revision) = self.read().await?;
            let now = now_ms();
            let round = Round {
                member: &self.member,
                now,
                ttl_ms: self.ttl_ms(),
                declared: self.quota.declared(),
                senders: senders.clone(),
                accepted: rounds.usage.accepted(),
                report: &report,
                applied: rounds.applied,
                in_use: self.quota.in_use(),
            };
            let decision = ledger::decide(&ledger, &round);
            rounds.applied = decision.at_once;
            self.quota.set_shares(decision.at_once);
            if self.stopped.load(Ordering::Acquire) {
                return Ok(());
            }
            match self.write(&decision.ledger, revision).await {
                Ok(true) => {
                    debug!(connector = %self.connector, wants = ?report.wants, senders = ?round.senders,
                           shares = ?decision.after_write.map(|s| (s.rate, s.slots)),
                           target = ?decision.target.map(|s| (s.rate, s.slots)), "quota round");
                    rounds.applied = decision.after_write;
                    self.quota.set_shares(decision.after_write);
                    rounds.written_at = Some(now);
                    rounds.short = decision.after_write != decision.target;
                    self.adopt(&ledger, &decision.ledger, now);
                    return Ok(());
                }
                // Another runner wrote first: read again.
                Ok(false) => continue,
                Err(e) => {
                    rounds.carried = report;
                    return Err(e);
                }
            }
        }
        debug!(connector = %self.connector, "the quota ledger is busy; next round");
        rounds.carried = report;
        Ok(())
    }

    /// The pause every runner keeps, and a word when the shared rate moved.
    fn adopt(&self, before: &Ledger, after: &Ledger, now: i64) {
        if after.paused_until > now {
            let pause = Duration::from_millis(u64::try_from(after.paused_until - now).unwrap_or(0));
            self.quota.pause_until(Instant::now() + pause);
        }
        let (was, is) = (before.rate.as_ref().map(|r| r.rate), after.rate.as_ref().map(|r| r.rate));
        if let (Some(was), Some(is)) = (was, is)
            && (is - was).abs() > 1e-9
        {
            info!(connector = %self.connector, from = was, to = is, "shared rate of the Connector adapted");
        }
    }

    async fn read(&self) -> Result<(Ledger, Option<u64>), QueueError> {
        Ok(match client::latest(&self.bucket, KEY).await? {
            Some(client::Latest { revision, value: Some(value) }) => {
                let ledger = serde_json::from_slice(&value).unwrap_or_else(|error| {
                    warn!(connector = %self.connector, %error, "unreadable quota ledger; starting it again");
                    Ledger::default()
                });
                (ledger, Some(revision))
            }
            Some(client::Latest { revision, value: None }) => (Ledger::default(), Some(revision)),
            None => (Ledger::default(), None),
        })
    }

    /// Writes `ledger` over `revision`; `false`: another runner wrote first.
    async fn write(&self, ledger: &Ledger, revision: Option<u64>) -> Result<bool, QueueError> {
        let bytes = client::encode(ledger);
        match revision {
            Some(revision) => match self.bucket.update(KEY, bytes, revision).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(failed("write the quota ledger", e)),
            },
            None => match self.bucket.create(KEY, bytes).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(failed("write the quota ledger", e)),
            },
        }
    }

    /// Takes this runner out of the ledger (a clean shutdown): the others share what it
    /// held at once rather than when its entry expires.
    async fn resign(&self) {
        self.stopped.store(true, Ordering::Release);
        self.quota.set_shares(self.nothing());
        for _ in 0..ATTEMPTS {
            let Ok((mut ledger, revision)) = self.read().await else { return };
            if ledger.members.remove(&self.member).is_none() {
                return;
            }
            if !matches!(self.write(&ledger, revision).await, Ok(false)) {
                return;
            }
        }
    }
}
