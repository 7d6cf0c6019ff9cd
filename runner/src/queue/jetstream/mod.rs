//! The queue in NATS JetStream, shared by every runner of a flow (`runner.queue.jetstream`).
//!
//! Per flow (names from [`entrepot_api::jetstream::Layout`]):
//! - the **work stream** holds records waiting to be mapped (`…in.<partition>`) and
//!   delivery items (`…out.<target>.<partition>`). A record's partition is the hash of its
//!   ordering key when it is known at intake (a webhook mapped there), else of its id; a
//!   delivery item's is the hash of its ordering key. Items are removed by sequence
//!   number once delivered. A sequence number is a message's place in the stream: inbox
//!   records and delivery items are numbered apart, each in arrival order.
//! - the **dead-letter stream**, whose sequence numbers are the dead letters' ids;
//! - the **audit stream**: who replayed, discarded or injected records, and why (`audit.rs`);
//! - the **keys bucket** (idempotency keys, expiring with the dedup window), the
//!   **versions bucket** (the stale guard's last version per target and key) and the
//!   **state bucket** (source progress, heartbeats and leases).
//!
//! Intake publishes with `Nats-Msg-Id` = the delivery id and returns once JetStream
//! acknowledged (after replication, on a replicated stream). There are no transactions
//! across subjects: each step that moves a record publishes its next place with a
//! message id derived from its current one, then deletes the current one, so a step
//! repeated after a crash stores nothing twice (within the duplicate window), and an
//! idempotency key claimed by a record stays that record's (its claim names it).
//!
//! Several runners: each works only the partitions whose lease it holds (`lease.rs`), so
//! one key's items are delivered by one runner at a time, in order, and keys never wait
//! for each other. Each runner's share of its target Connectors' quotas: `connector_quota.rs`.
//! See docs/scaling.md.

mod audit;
mod client;
mod connector_quota;
mod dead_letter;
mod keys;
mod lease;
mod place;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use entrepot_api::jetstream::{Layout, StreamPlan, kv_key};
use tracing::{info, warn};

pub use client::NatsAuth;
pub use connector_quota::SharedConnector;
pub use lease::LeaseTiming;

use self::{
    client::{Nats, decode, encode, failed},
    connector_quota::SharedQuotas,
    keys::{record_version, version_key},
    lease::Ownership,
    place::{FlowStore, claimant, inbox_partition},
};
use super::{
    Accepted, Affected, AuditEntry, AuditFilter, Backlog, BatchOutcome, Caller, DeadLetter, DeadLetterFilter,
    DeadLetterPage, DeliveryItem, Envelope, Intake, Offer, PrepareOutcome, Prepared, QueueBackend, QueueError, Take,
};

/// One flow of a JetStream queue.
#[derive(Clone, Debug)]
pub struct JetStreamFlow {
    /// The flow's name (what the runner calls it).
    pub name: String,
    /// Its namespace (part of its streams' names).
    pub namespace: String,
    /// Its partitions (`queue.jetstream.partitions`).
    pub partitions: u16,
    /// Its streams and buckets, created when missing (local mode); `None`: they must
    /// exist (the operator made them).
    pub create: Option<Vec<StreamPlan>>,
}

/// How to reach NATS and who this runner is.
#[derive(Clone, Debug)]
pub struct JetStreamOptions {
    /// Server URLs, comma-separated.
    pub servers: String,
    /// The login.
    pub auth: NatsAuth,
    /// This runner's name among the flow's runners: unique, and the same after a restart
    /// of the same runner (a pod's name), so it takes its own leases back at once.
    pub member: String,
    /// The flows.
    pub flows: Vec<JetStreamFlow>,
    /// Lease durations.
    pub leases: LeaseTiming,
    /// The target Connectors whose quota this runner shares with the other runners.
    pub connectors: Vec<SharedConnector>,
}

/// The JetStream queue backend.
pub struct JetStreamQueue {
    nats: Nats,
    flows: Arc<BTreeMap<String, Arc<FlowStore>>>,
    leases: LeaseTiming,
    servers: String,
    /// The target Connectors whose quota this runner shares with the other runners.
    quotas: SharedQuotas,
}

impl std::fmt::Debug for JetStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamQueue").field("servers", &self.servers).field("flows", &self.flows.len()).finish()
    }
}

impl JetStreamQueue {
    /// Connects, opens (or creates, as told) each flow's streams and buckets, takes a
    /// first share of the partitions, and starts renewing leases in the background.
    pub fn connect(options: JetStreamOptions) -> Result<Self, QueueError> {
        let nats = Nats::connect(&options.servers, &options.auth)?;
        let js = nats.js.clone();
        let member = options.member.clone();
        let flows = nats.wait(async move {
            let mut flows = BTreeMap::new();
            for flow in options.flows {
                for plan in flow.create.iter().flatten() {
                    client::ensure(&js, plan).await?;
                }
                let layout = Layout::new(&flow.namespace, &flow.name);
                let store = FlowStore {
                    partitions: flow.partitions.max(1),
                    work: layout.work_stream(),
                    dead: layout.dead_stream(),
                    keys: client::bucket(&js, &layout.keys_bucket()).await?,
                    versions: client::bucket(&js, &layout.versions_bucket()).await?,
                    state: client::bucket(&js, &layout.state_bucket()).await?,
                    ownership: Ownership::new(&member, flow.partitions.max(1)),
                    loaned: Mutex::default(),
                    size: Mutex::default(),
                    layout,
                };
                // Whatever is missing is said now, not at the first record.
                js.get_stream(&store.work).await.map_err(|e| failed(&format!("stream {}", store.work), e))?;
                js.get_stream(&store.dead).await.map_err(|e| failed(&format!("stream {}", store.dead), e))?;
                store.ownership.tick(&store.state, options.leases, &flow.name).await?;
                flows.insert(flow.name, Arc::new(store));
            }
            Ok(flows)
        })?;
        let quotas = SharedQuotas::start(&nats, &options.member, options.leases, options.connectors)?;
        let queue = Self { nats, flows: Arc::new(flows), leases: options.leases, servers: options.servers, quotas };
        queue.renew_in_background();
        info!(servers = %queue.servers, member = %options.member, flows = queue.flows.len(), "queue in NATS JetStream");
        Ok(queue)
    }

    fn renew_in_background(&self) {
        let (flows, timing) = (self.flows.clone(), self.leases);
        self.nats.spawn(async move {
            let mut every = tokio::time::interval(timing.tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                for (name, flow) in flows.iter() {
                    if let Err(e) = flow.ownership.tick(&flow.state, timing, name).await {
                        warn!(flow = %name, error = %e, "cannot renew the runner's leases; retrying");
                    }
                }
            }
        });
    }

    fn flow(&self, name: &str) -> Result<Arc<FlowStore>, QueueError> {
        self.flows.get(name).cloned().ok_or_else(|| failed("flow", format!("`{name}` has no queue in this runner")))
    }

    /// Lets go of every lease and quota share (a clean shutdown), so the other runners
    /// take over at once.
    pub fn resign(&self) {
        let flows = self.flows.clone();
        let quotas = self.quotas.clone();
        let _ = self.nats.wait(async move {
            for flow in flows.values() {
                flow.ownership.resign(&flow.state).await;
            }
            quotas.resign().await;
            Ok(())
        });
    }
}

impl QueueBackend for JetStreamQueue {
    fn accept_group(&self, offers: &[Offer<'_>]) -> Result<Vec<Accepted>, QueueError> {
        let mut flows = Vec::with_capacity(offers.len());
        for offer in offers {
            flows.push(self.flow(offer.flow)?);
        }
        let js = self.nats.js.clone();
        let offers: Vec<(Envelope, Option<Prepared>, u64, u64)> =
            offers.iter().map(|o| (o.envelope.clone(), o.prepared.cloned(), o.max_pending, o.max_bytes)).collect();
        self.nats.wait(async move {
            // One lane per flow and partition: in order within it (arrival order per
            // key), lanes at once (a group costs the round trips of its longest lane).
            let offered = offers.into_iter().zip(flows).map(|((envelope, prepared, max_pending, max_bytes), flow)| {
                let partition = inbox_partition(&flow, &envelope, prepared.as_ref());
                let lane = (flow.layout.work_stream(), partition);
                (lane, Offered { flow, envelope, prepared, limits: (max_pending, max_bytes), partition })
            });
            in_lanes(offered, |offered| offered.accept(&js)).await
        })
    }

    fn accept_batch(
        &self,
        flow: &str,
        items: &[Intake],
        _delivery_expires_ms: i64,
        state: &[(&str, &[u8])],
    ) -> Result<BatchOutcome, QueueError> {
        self.accept_audited(flow, items, state, None)
    }

    fn inject(
        &self,
        flow: &str,
        items: &[Intake],
        _delivery_expires_ms: i64,
        audit: AuditEntry,
    ) -> Result<BatchOutcome, QueueError> {
        self.accept_audited(flow, items, &[], Some(audit))
    }

    fn audit_trail(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, QueueError> {
        JetStreamQueue::audit_trail(self, filter)
    }

    /// JetStream expires them itself: the audit stream's `max_age` is the flow's
    /// dead-letter retention.
    fn purge_audit(&self, _cutoff_ms: &dyn Fn(&str) -> i64) -> Result<u64, QueueError> {
        Ok(0)
    }

    fn source_state(&self, flow: &str, key: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let store = self.flow(flow)?;
        let key = format!("src.{}", kv_key(key));
        self.nats.wait(async move {
            let value = client::latest(&store.state, &key).await?.and_then(|l| l.value);
            Ok(value.map(|v| v.to_vec()))
        })
    }

    fn inbox(&self, flow: &str, max: usize) -> Result<Vec<(u64, Envelope)>, QueueError> {
        let store = self.flow(flow)?;
        let js = self.nats.js.clone();
        self.nats.wait(async move {
            let subjects = owned_subjects(&store, |p| store.layout.inbox_subject(p), store.layout.inbox_subjects());
            let read = client::read(&js, &store.work, subjects, 1, max, usize::MAX).await?;
            read.iter().map(|s| Ok((s.seq, decode(s)?))).collect()
        })
    }

    fn prepare_batch(&self, flow: &str, batch: Vec<(u64, Prepared)>) -> Result<Vec<PrepareOutcome>, QueueError> {
        let store = self.flow(flow)?;
        let js = self.nats.js.clone();
        self.nats.wait(async move {
            // One lane per outbox partition, as at intake: a key's records in order.
            let records =
                batch.into_iter().map(|(seq, prepared)| (place::partition_of(&store, &prepared), (seq, prepared)));
            in_lanes(records, |(seq, prepared)| {
                let (js, store) = (&js, &store);
                async move { prepare_one(js, store, seq, &prepared).await }
            })
            .await
        })
    }

    fn outbox_after(
        &self,
        flow: &str,
        target: &str,
        after: u64,
        take: Take,
    ) -> Result<Vec<(u64, DeliveryItem)>, QueueError> {
        let store = self.flow(flow)?;
        let js = self.nats.js.clone();
        let target = target.to_string();
        self.nats.wait(async move {
            let subjects = owned_subjects(
                &store,
                |p| store.layout.outbox_subject(&target, p),
                store.layout.outbox_subjects(&target),
            );
            let read = client::read(&js, &store.work, subjects, after + 1, take.items, take.bytes).await?;
            let mut loaned = store.loaned.lock().unwrap_or_else(|p| p.into_inner());
            read.iter()
                .map(|s| {
                    if let Some(p) = Layout::partition_of(&s.subject) {
                        loaned.insert(s.seq, p);
                    }
                    Ok((s.seq, decode(s)?))
                })
                .collect()
        })
    }

    fn delivered_batch(
        &self,
        flow: &str,
        target: &str,
        items: &[(u64, Option<(&str, &str)>)],
    ) -> Result<(), QueueError> {
        let store = self.flow(flow)?;
        let js = self.nats.js.clone();
        let seqs: Vec<u64> = items.iter().map(|(s, _)| *s).collect();
        let versions: Vec<(String, String)> = items
            .iter()
            .filter_map(|(_, v)| v.map(|(key, version)| (version_key(target, key), version.to_string())))
            .collect();
        self.nats.wait(async move {
            for (key, version) in versions {
                record_version(&store.versions, &key, &version).await?;
            }
            client::delete(&js, &store.work, &seqs).await?;
            let mut loaned = store.loaned.lock().unwrap_or_else(|p| p.into_inner());
            for seq in seqs {
                loaned.remove(&seq);
            }
            Ok(())
        })
    }

    fn last_version(&self, flow: &str, target: &str, key: &str) -> Result<Option<String>, QueueError> {
        let store = self.flow(flow)?;
        let key = version_key(target, key);
        self.nats.wait(async move { keys::last_version(&store.versions, &key).await })
    }

    fn drop_stale(&self, flow: &str, _target: &str, seq: u64) -> Result<(), QueueError> {
        let store = self.flow(flow)?;
        let js = self.nats.js.clone();
        self.nats.wait(async move {
            client::delete(&js, &store.work, &[seq]).await?;
            store.loaned.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq);
            Ok(())
        })
    }

    fn dead_letter(&self, flow: &str, _target: &str, seq: u64, dead: &DeadLetter) -> Result<u64, QueueError> {
        let store = self.flow(flow)?;
        let js = self.nats.js.clone();
        let body = encode(dead);
        self.nats.wait(async move {
            let Some((id, _)) =
                client::publish(&js, store.layout.dead_subject(), &format!("out{seq}.dead"), body).await?
            else {
                return Err(failed("dead-letter an item", "the dead-letter stream is full"));
            };
            client::delete(&js, &store.work, &[seq]).await?;
            store.loaned.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq);
            Ok(id)
        })
    }

    fn held_bytes(&self) -> u64 {
        let (flows, js) = (self.flows.clone(), self.nats.js.clone());
        self.nats
            .wait(async move {
                let mut bytes = 0;
                for flow in flows.values() {
                    bytes += client::state(&js, &flow.work).await?.1 + client::state(&js, &flow.dead).await?.1;
                }
                Ok(bytes)
            })
            .unwrap_or(0)
    }

    fn pending_total(&self) -> Result<u64, QueueError> {
        let (flows, js) = (self.flows.clone(), self.nats.js.clone());
        self.nats.wait(async move {
            let mut total = 0;
            for flow in flows.values() {
                total += client::state(&js, &flow.work).await?.0;
            }
            Ok(total)
        })
    }

    fn pending(&self, flow: &str) -> Result<u64, QueueError> {
        let store = self.flow(flow)?;
        let js = self.nats.js.clone();
        self.nats.wait(async move { Ok(client::state(&js, &store.work).await?.0) })
    }

    fn backlogs(&self) -> Result<HashMap<String, Backlog>, QueueError> {
        let (flows, js) = (self.flows.clone(), self.nats.js.clone());
        self.nats.wait(async move {
            let mut out = HashMap::new();
            for (name, flow) in flows.iter() {
                let (pending, _, oldest_received_ms) = client::state(&js, &flow.work).await?;
                let dead_lettered = client::state(&js, &flow.dead).await?.0;
                if pending + dead_lettered > 0 {
                    out.insert(name.clone(), Backlog { pending, oldest_received_ms, dead_lettered });
                }
            }
            Ok(out)
        })
    }

    fn dead_letters(&self, flow: &str) -> Result<Vec<(u64, DeadLetter)>, QueueError> {
        let filter = DeadLetterFilter { flow: Some(flow.to_string()), ..DeadLetterFilter::default() };
        Ok(self.find_dead_letters(&filter)?.entries.into_iter().map(|e| (e.id, e.dead_letter)).collect())
    }

    fn find_dead_letters(&self, filter: &DeadLetterFilter) -> Result<DeadLetterPage, QueueError> {
        self.find(filter)
    }

    fn replay_dead_letters(&self, filter: &DeadLetterFilter, caller: &Caller) -> Result<Vec<Affected>, QueueError> {
        self.replay(filter, caller)
    }

    fn discard_dead_letters(&self, filter: &DeadLetterFilter, caller: &Caller) -> Result<Vec<Affected>, QueueError> {
        self.discard(filter, caller)
    }

    /// JetStream expires them itself: the dead-letter stream's `max_age` is the flow's
    /// retention.
    fn purge_dead_letters(&self, _cutoff_ms: &dyn Fn(&str) -> i64) -> Result<BTreeMap<String, u64>, QueueError> {
        Ok(BTreeMap::new())
    }

    /// JetStream expires them itself (the versions bucket's `max_age`).
    fn purge_versions(&self, _cutoff_ms: &dyn Fn(&str) -> i64, _now_ms: i64) -> Result<u64, QueueError> {
        Ok(0)
    }

    /// JetStream expires them itself: the keys bucket's `max_age` is the dedup window, the
    /// stream's duplicate window keeps delivery ids.
    fn purge_expired(&self, _now_ms: i64) -> Result<u64, QueueError> {
        Ok(0)
    }

    fn watch_arrivals(&self, flow: &str, arrived: super::Arrivals) {
        let Some(store) = self.flows.get(flow).cloned() else { return };
        let client = self.nats.js.client();
        let name = flow.to_string();
        self.nats.spawn(async move {
            // Every publish to the stream is also a plain NATS message on its subject.
            let subject = store.layout.work_subjects_root();
            let mut arrivals = match client.subscribe(subject.clone()).await {
                Ok(subscription) => subscription,
                Err(e) => {
                    warn!(flow = %name, error = %e, "cannot watch for new work; workers look every second");
                    return;
                }
            };
            while let Some(message) = futures::StreamExt::next(&mut arrivals).await {
                let rest = message.subject.strip_prefix(subject.trim_end_matches('>')).unwrap_or_default();
                match rest.split('.').collect::<Vec<_>>()[..] {
                    ["in", _] => arrived(None),
                    ["out", target, _] => arrived(Some(target)),
                    _ => {}
                }
            }
        });
    }

    fn leave(&self) {
        self.resign();
    }

    fn holds(&self, flow: &str, seq: u64) -> bool {
        let Some(store) = self.flows.get(flow) else { return true };
        let partition = store.loaned.lock().unwrap_or_else(|p| p.into_inner()).get(&seq).copied();
        partition.is_none_or(|p| store.ownership.owns(p))
    }

    fn partitions_held(&self, flow: &str) -> Option<u16> {
        let held = self.flows.get(flow)?.ownership.owned().len();
        Some(u16::try_from(held).unwrap_or(u16::MAX))
    }

    fn claims(&self, flow: &str) -> u64 {
        self.flows.get(flow).map_or(0, |f| f.ownership.generation())
    }

    fn leads(&self, flow: &str, role: &str) -> Result<bool, QueueError> {
        let store = self.flow(flow)?;
        if let Some(held) = store.ownership.leads(role) {
            return Ok(held);
        }
        let (role, timing) = (role.to_string(), self.leases);
        self.nats.wait(async move { store.ownership.lead(&store.state, &role, timing).await })
    }
}

/// Runs `work` on each item, in order within its lane (one key's records in arrival
/// order), lanes at once (a batch costs the round trips of its longest lane); the results
/// in the items' order.
async fn in_lanes<L: Ord, T, R, Fut>(
    items: impl IntoIterator<Item = (L, T)>,
    work: impl Fn(T) -> Fut,
) -> Result<Vec<R>, QueueError>
where
    Fut: Future<Output = Result<R, QueueError>>,
{
    let mut lanes: BTreeMap<L, Vec<(usize, T)>> = BTreeMap::new();
    for (index, (lane, item)) in items.into_iter().enumerate() {
        lanes.entry(lane).or_default().push((index, item));
    }
    let work = &work;
    let lanes = lanes.into_values().map(|lane| async move {
        let mut out = Vec::with_capacity(lane.len());
        for (index, item) in lane {
            out.push((index, work(item).await?));
        }
        Ok::<_, QueueError>(out)
    });
    let mut out: Vec<(usize, R)> = futures::future::try_join_all(lanes).await?.into_iter().flatten().collect();
    out.sort_by_key(|(index, _)| *index);
    Ok(out.into_iter().map(|(_, result)| result).collect())
}

/// An inbox record placed past the inbox, then removed from it.
async fn prepare_one(
    js: &async_nats::jetstream::Context,
    store: &FlowStore,
    seq: u64,
    prepared: &Prepared,
) -> Result<PrepareOutcome, QueueError> {
    let envelope = match prepared {
        Prepared::Deliver { items, .. } => items.first().map(|i| &i.envelope),
        Prepared::DeadLetter(dead) => Some(&dead.envelope),
    };
    let (who, replay) = envelope.map_or((format!("#{seq}"), false), |e| (claimant(e).to_string(), e.replay.is_some()));
    let Some((outcome, _)) = place::place(js, store, &format!("in{seq}"), &who, replay, prepared).await? else {
        return Err(failed("move a record to the outbox", "the flow's stream is full"));
    };
    client::delete(js, &store.work, &[seq]).await?;
    Ok(outcome)
}

/// One record offered at intake, with its flow and partition.
struct Offered {
    flow: Arc<FlowStore>,
    envelope: Envelope,
    prepared: Option<Prepared>,
    /// `max_pending`, `max_bytes`.
    limits: (u64, u64),
    partition: u16,
}

impl Offered {
    /// Publishes the record to its partition's inbox (with its delivery id as message
    /// id) and, mapped at intake and first there, places it at once.
    async fn accept(self, js: &async_nats::jetstream::Context) -> Result<Accepted, QueueError> {
        let Self { flow, envelope, prepared, limits: (max_pending, max_bytes), partition } = self;
        if max_pending != u64::MAX || max_bytes != u64::MAX {
            let (messages, bytes) = flow.size(js).await?;
            if messages >= max_pending || bytes >= max_bytes {
                return Ok(Accepted::Full);
            }
        }
        let id = claimant(&envelope).to_string();
        let inbox = flow.layout.inbox_subject(partition);
        let seq = match client::publish(js, inbox.clone(), &id, encode(&envelope)).await? {
            None => return Ok(Accepted::Full),
            Some((_, true)) => return Ok(Accepted::DuplicateDelivery),
            Some((seq, false)) => seq,
        };
        // Mapped at intake and first in its partition's inbox: placed now, as the prepare
        // stage would (the same message ids, so if a prepare worker takes it too, or a
        // crash comes in between, nothing is stored twice).
        let Some(prepared) = prepared else { return Ok(Accepted::Queued(seq)) };
        if client::first_on(js, &flow.work, &inbox).await? != Some(seq) {
            return Ok(Accepted::Queued(seq));
        }
        let replay = envelope.replay.is_some();
        match place::place(js, &flow, &format!("in{seq}"), &id, replay, &prepared).await? {
            Some((outcome, placed)) => {
                client::delete(js, &flow.work, &[seq]).await?;
                Ok(Accepted::Prepared { seq: placed, outcome })
            }
            None => Ok(Accepted::Queued(seq)),
        }
    }
}

/// The subjects of the partitions this runner holds: the wildcard when it holds them all.
fn owned_subjects(store: &FlowStore, subject: impl Fn(u16) -> String, all: String) -> Vec<String> {
    let owned = store.ownership.owned();
    if owned.len() == usize::from(store.partitions) {
        return vec![all];
    }
    owned.into_iter().map(subject).collect()
}
