//! Which runner works which partition, and which runner reads each source: leases in the
//! flow's state bucket, taken and renewed with compare-and-set.
//!
//! Every runner writes a heartbeat (`member.<id>`) each tick and reads the others'. Each
//! partition goes to the live runner that scores highest for it (rendezvous hashing:
//! when a runner comes or goes, only the partitions it wins or held move). A runner works
//! a partition only while it holds the partition's lease (`lease.p.<n>`): one that stops
//! winning a partition stops taking its items at once, keeps the lease for a grace period
//! (so an attempt in flight ends before another runner starts on the same keys), then
//! deletes it. A runner that dies stops renewing: its leases expire after `ttl` and the
//! winners take them over. Sources (`lease.s.<role>`) go to whichever runner asks first
//! and is alive, the same way.
//!
//! A lease is `{member, until}` with `until` in Unix milliseconds, so runners compare
//! their clocks with each other's: keep them synchronised (NTP), as Kubernetes nodes are.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Mutex, RwLock,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::client::{Latest, failed, latest};
use crate::queue::{QueueError, now_ms};

/// How long leases last and how often they are renewed.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTiming {
    /// A lease not renewed for this long is free: how long a dead runner's partitions
    /// and sources wait.
    pub ttl: Duration,
    /// How often a runner renews its leases and looks at who is alive.
    pub tick: Duration,
    /// How long a runner keeps a partition it no longer wins, having stopped taking its
    /// items, before letting go.
    pub grace: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(10), tick: Duration::from_secs(1), grace: Duration::from_secs(5) }
    }
}

#[derive(Serialize, Deserialize)]
struct Lease {
    member: String,
    until: i64,
}

/// One flow's share of the work for this runner.
#[derive(Debug)]
pub(super) struct Ownership {
    member: String,
    partitions: u16,
    owned: RwLock<BTreeSet<u16>>,
    /// Changes whenever `owned` does: a reader that cached what it read starts over.
    generation: AtomicU64,
    /// Partitions let go of, kept (renewed) until this time.
    releasing: Mutex<BTreeMap<u16, i64>>,
    /// The sources this runner wants to read, and whether it holds each.
    sources: Mutex<BTreeMap<String, bool>>,
    /// Until when the leases renewed by the last successful round hold (Unix ms): past
    /// it, without a renewal (NATS unreachable), this runner holds nothing, since other
    /// runners may have taken its leases over.
    valid_until: AtomicI64,
}

impl Ownership {
    pub(super) fn new(member: &str, partitions: u16) -> Self {
        Self {
            member: member.to_string(),
            partitions,
            owned: RwLock::default(),
            generation: AtomicU64::new(0),
            releasing: Mutex::default(),
            sources: Mutex::default(),
            valid_until: AtomicI64::new(0),
        }
    }

    /// Whether the last renewal still holds.
    fn valid(&self) -> bool {
        now_ms() < self.valid_until.load(Ordering::Acquire)
    }

    pub(super) fn owned(&self) -> BTreeSet<u16> {
        if !self.valid() {
            return BTreeSet::new();
        }
        self.owned.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn owns(&self, partition: u16) -> bool {
        self.valid() && self.owned.read().unwrap_or_else(|p| p.into_inner()).contains(&partition)
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether this runner holds source `role`'s lease (as of the last renewal).
    pub(super) fn leads(&self, role: &str) -> Option<bool> {
        let held = self.sources.lock().unwrap_or_else(|p| p.into_inner()).get(role).copied();
        held.map(|held| held && self.valid())
    }

    fn set_owned(&self, partition: u16, owned: bool) {
        let mut set = self.owned.write().unwrap_or_else(|p| p.into_inner());
        let changed = if owned { set.insert(partition) } else { set.remove(&partition) };
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// One round: heartbeat, who is alive, then each partition's and source's lease
    /// taken, renewed or let go.
    pub(super) async fn tick(&self, state: &kv::Store, timing: LeaseTiming, flow: &str) -> Result<(), QueueError> {
        let now = now_ms();
        let until = now + millis(timing.ttl);
        // What this round renews holds until `until`, less a tick of margin for clocks
        // and the time the round takes; set once the round is through.
        let valid = until - millis(timing.tick);
        let lapsed = !self.valid();
        let beat = Lease { member: self.member.clone(), until };
        state.put(format!("member.{}", self.member), encode(&beat)).await.map_err(|e| failed("heartbeat", e))?;
        let alive = self.alive(state, now).await?;
        for partition in 0..self.partitions {
            let key = format!("lease.p.{partition}");
            let winner = winner(&alive, partition).is_some_and(|w| *w == self.member);
            let release_at = self.releasing.lock().unwrap_or_else(|p| p.into_inner()).get(&partition).copied();
            if winner {
                self.releasing.lock().unwrap_or_else(|p| p.into_inner()).remove(&partition);
                let held = self.hold(state, &key, until, now).await?;
                if held != self.owns(partition) {
                    info!(flow, partition, member = %self.member, held, "partition lease");
                }
                self.set_owned(partition, held);
            } else if self.owns(partition) {
                // Stop taking its items now; let go after the grace period.
                self.set_owned(partition, false);
                self.releasing.lock().unwrap_or_else(|p| p.into_inner()).insert(partition, now + millis(timing.grace));
                self.hold(state, &key, until, now).await?;
                info!(flow, partition, member = %self.member, "partition goes to another runner");
            } else if let Some(at) = release_at {
                if now >= at {
                    self.releasing.lock().unwrap_or_else(|p| p.into_inner()).remove(&partition);
                    self.let_go(state, &key).await?;
                } else {
                    self.hold(state, &key, until, now).await?;
                }
            }
        }
        let roles: Vec<String> = self.sources.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        for role in roles {
            let held = self.hold(state, &format!("lease.s.{role}"), until, now).await?;
            let was = self.sources.lock().unwrap_or_else(|p| p.into_inner()).insert(role.clone(), held);
            if was != Some(held) {
                info!(flow, source = %role, member = %self.member, held, "source lease");
            }
        }
        self.valid_until.store(valid, Ordering::Release);
        // Holding again after a lapse (or a round too slow to count): what readers hold
        // changed, so they read again.
        if lapsed || !self.valid() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Asks for source `role`'s lease now: whether this runner holds it.
    pub(super) async fn lead(&self, state: &kv::Store, role: &str, timing: LeaseTiming) -> Result<bool, QueueError> {
        let now = now_ms();
        let held = self.hold(state, &format!("lease.s.{role}"), now + millis(timing.ttl), now).await?;
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).insert(role.to_string(), held);
        Ok(held)
    }

    /// Lets go of every lease this runner holds (a clean shutdown), so others take over
    /// at once rather than after `ttl`.
    pub(super) async fn resign(&self, state: &kv::Store) {
        let owned = std::mem::take(&mut *self.owned.write().unwrap_or_else(|p| p.into_inner()));
        self.generation.fetch_add(1, Ordering::AcqRel);
        let releasing: Vec<u16> =
            std::mem::take(&mut *self.releasing.lock().unwrap_or_else(|p| p.into_inner())).into_keys().collect();
        for partition in owned.into_iter().chain(releasing) {
            let _ = self.let_go(state, &format!("lease.p.{partition}")).await;
        }
        let roles: Vec<String> = self.sources.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        for role in roles {
            let _ = self.let_go(state, &format!("lease.s.{role}")).await;
        }
        let _ = state.delete(format!("member.{}", self.member)).await;
    }

    /// The live runners: heartbeats newer than their `until`.
    async fn alive(&self, state: &kv::Store, now: i64) -> Result<Vec<String>, QueueError> {
        let mut keys = state.keys().await.map_err(|e| failed("list runners", e))?;
        let mut alive = vec![self.member.clone()];
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| failed("list runners", e))?;
            let Some(member) = key.strip_prefix("member.") else { continue };
            if member == self.member {
                continue;
            }
            let Some(value) = latest(state, &key).await?.and_then(|l| l.value) else { continue };
            match serde_json::from_slice::<Lease>(&value) {
                Ok(beat) if beat.until > now => alive.push(member.to_string()),
                // Long dead: tidy up.
                Ok(beat) if beat.until + 60_000 < now => {
                    let _ = state.delete(&key).await;
                }
                _ => {}
            }
        }
        Ok(alive)
    }

    /// Takes or renews lease `key` until `until`; whether this runner holds it.
    async fn hold(&self, state: &kv::Store, key: &str, until: i64, now: i64) -> Result<bool, QueueError> {
        let lease = encode(&Lease { member: self.member.clone(), until });
        let result = match latest(state, key).await? {
            Some(Latest { revision, value }) => {
                // A delete marker: let go of.
                let current: Option<Lease> = value.and_then(|v| serde_json::from_slice(&v).ok());
                let free = current.as_ref().is_none_or(|l| l.member == self.member || l.until < now);
                if !free {
                    return Ok(false);
                }
                state.update(key, lease, revision).await.map(|_| ()).map_err(|e| e.to_string())
            }
            // Never taken.
            None => state.create(key, lease).await.map(|_| ()).map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => Ok(true),
            // Another runner wrote it first.
            Err(e) => {
                debug!(lease = key, error = %e, "lease taken by another runner");
                Ok(false)
            }
        }
    }

    /// Deletes lease `key` if this runner still holds it.
    async fn let_go(&self, state: &kv::Store, key: &str) -> Result<(), QueueError> {
        let Some(Latest { revision, value: Some(value) }) = latest(state, key).await? else {
            return Ok(());
        };
        if serde_json::from_slice::<Lease>(&value).is_ok_and(|l| l.member == self.member) {
            let _ = state.delete_expect_revision(key, Some(revision)).await;
        }
        Ok(())
    }
}

/// The live runner that scores highest for `partition` (rendezvous hashing).
fn winner(alive: &[String], partition: u16) -> Option<&String> {
    alive.iter().max_by_key(|member| {
        let key = format!("{member}/{partition}");
        // The same hash as the partitions', mixed: members with similar names spread.
        let h = u64::from(entrepot_api::jetstream::partition(&key, u16::MAX));
        (h.wrapping_mul(0x9e37_79b9_7f4a_7c15), member.as_str().to_string())
    })
}

fn encode(lease: &Lease) -> Bytes {
    Bytes::from(serde_json::to_vec(lease).expect("a lease is JSON"))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_over_runners_and_move_little_when_one_joins() {
        let two: Vec<String> = vec!["a".into(), "b".into()];
        let three: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let owners = |alive: &[String]| (0..48u16).map(|p| winner(alive, p).unwrap().clone()).collect::<Vec<_>>();
        let (before, after) = (owners(&two), owners(&three));
        for member in &three {
            let share = after.iter().filter(|m| *m == member).count();
            assert!((8..=24).contains(&share), "{member} has {share} of 48");
        }
        // Only partitions that go to the newcomer move.
        for (b, a) in before.iter().zip(&after) {
            assert!(a == b || a == "c", "{b} -> {a}");
        }
    }
}
