//! Model check of the durable queue: random sequences of accept (with repeated delivery
//! ids; some already mapped at intake, placed past an empty inbox), prepare (with repeated idempotency keys and mapping failures), deliver-ok,
//! deliver-reject, replay and discard of dead letters, injection of records, and
//! crash-and-reopen, compared after every step with a plain in-memory model. Properties:
//! nothing acknowledged is lost, nothing acknowledged is delivered twice, within an
//! ordering key items come out in arrival order, and every replay, discard and injection
//! is in the audit trail with its count, its dead letters and its reason.
//!
//! Every queue backend runs through the same model: add a backend to [`BACKENDS`]. A
//! backend numbers its outbox items its own way, increasing in arrival order (the
//! embedded queue reuses the inbox's numbers, JetStream numbers every message of the
//! flow's stream): the model follows records by id, and items by the numbers the store
//! gives them.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
};

use entrepot::queue::{
    Accepted, AuditAction, AuditEntry, AuditFilter, Caller, DeadLetter, DeadLetterFilter, DeadLetterReason,
    DeliveryItem, Envelope, Intake, JetStreamFlow, JetStreamOptions, JetStreamQueue, LeaseTiming, NatsAuth, Offer,
    PrepareOutcome, Prepared, Queue, RedbQueue, Replay,
};
use entrepot_api::{jetstream::Layout, resource::SyncFlowSpec};
use entrepot_sim::nats::NatsServer;
use proptest::prelude::*;

const FLOW: &str = "f";
const TARGET: &str = "erp";
const FAR: i64 = i64::MAX / 2;

/// How a backend opens its queue in a directory; opened again after a crash, it must
/// find everything committed before.
type Open = Arc<dyn Fn(&Path) -> Queue>;

/// Every queue backend, by name: each starts what it needs (a server) and gives how to
/// open its queue.
const BACKENDS: &[(&str, Start)] = &[("redb", redb), ("jetstream", jetstream)];

/// Starts what a backend needs and says how to open its queue.
type Start = fn() -> Open;

fn redb() -> Open {
    Arc::new(|dir| RedbQueue::open(&dir.join("queue.redb")).unwrap())
}

/// A real nats-server of the case's own; the flow's streams are named after the case's
/// directory, and the runner keeps its name across a crash (so it takes its partition
/// lease back at once, as a restarted pod does).
fn jetstream() -> Open {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let server = Arc::new(runtime.block_on(NatsServer::start()));
    Arc::new(move |dir| {
        let namespace = dir.file_name().unwrap().to_string_lossy().to_ascii_lowercase().replace('.', "");
        let spec: SyncFlowSpec = serde_json::from_value(serde_json::json!({
            "source": {"connectorRef": "s", "entity": "e", "trigger": {"webhook": {}}},
            "targets": [{"connectorRef": TARGET, "entity": "x"}]
        }))
        .unwrap();
        let flow = JetStreamFlow {
            name: FLOW.into(),
            namespace: namespace.clone(),
            partitions: 1,
            create: Some(Layout::new(&namespace, FLOW).plan(&spec, 1)),
        };
        let options = JetStreamOptions {
            servers: server.url(),
            auth: NatsAuth::None,
            member: "model".into(),
            flows: vec![flow],
            leases: LeaseTiming::default(),
            connectors: Vec::new(),
        };
        Queue::new(JetStreamQueue::connect(options).unwrap())
    })
}

#[derive(Clone, Debug)]
enum Op {
    /// A source delivers record `id` (delivery id `d<id>`, ordering key `k<id % 3>`).
    Accept(u8),
    /// A source delivers record `id` already mapped (a webhook of a flow without
    /// refetch); `fail` = its mapping failed.
    AcceptMapped { id: u8, fail: bool },
    /// The prepare stage takes the inbox head; `fail` = its mapping fails.
    Prepare { fail: bool },
    /// The target takes the head of a lane (picked by index).
    Deliver(u8),
    /// The target refuses the head of a lane.
    Reject(u8),
    /// Someone replays a dead letter (picked by index).
    Replay(u8),
    /// Someone discards a dead letter (picked by index).
    Discard(u8),
    /// Someone injects record `100 + id` through the admin API (past the idempotency
    /// keys, like a replay).
    Inject(u8),
    /// kill -9 and restart.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..12).prop_map(Op::Accept),
        3 => (0u8..12, proptest::bool::weighted(0.2)).prop_map(|(id, fail)| Op::AcceptMapped { id, fail }),
        3 => Just(Op::Prepare { fail: false }),
        1 => Just(Op::Prepare { fail: true }),
        3 => any::<u8>().prop_map(Op::Deliver),
        1 => any::<u8>().prop_map(Op::Reject),
        1 => any::<u8>().prop_map(Op::Replay),
        1 => any::<u8>().prop_map(Op::Discard),
        1 => (0u8..12).prop_map(Op::Inject),
        1 => Just(Op::Crash),
    ]
}

fn envelope(id: u8) -> Envelope {
    Envelope {
        id: format!("e{id}"),
        delivery_id: Some(format!("d{id}")),
        source_delivery_id: None,
        event_id: None,
        topic: None,
        correlation_id: format!("c{id}"),
        trace_parent: None,
        received_at_ms: 1,
        payload: format!("{{\"id\":{id}}}").into_bytes(),
        replay: None,
    }
}

fn key(id: u8) -> String {
    format!("k{}", id % 3)
}

#[derive(Default, Debug)]
struct Model {
    seen_deliveries: BTreeSet<u8>,
    seen_keys: BTreeSet<u8>,
    inbox: Vec<(u64, u8)>,
    outbox: Vec<u8>,
    delivered: Vec<u8>,
    dead: usize,
    dropped: usize,
    /// Inbox records that pass the idempotency keys (replays, injections), by seq.
    replays: BTreeSet<u64>,
    /// The audit trail: action, count, dead letters.
    audit: Vec<(AuditAction, u64, Vec<u64>)>,
}

impl Model {
    /// Record `id` (under `seq`) left prepare with `outcome`: checks it against the
    /// model's idempotency keys and moves it on.
    fn place(&mut self, id: u8, fail: bool, replay: bool, outcome: PrepareOutcome) -> Result<(), TestCaseError> {
        if fail {
            prop_assert_eq!(outcome, PrepareOutcome::DeadLettered);
            self.dead += 1;
        } else if self.seen_keys.insert(id) || replay {
            prop_assert_eq!(outcome, PrepareOutcome::Queued);
            self.outbox.push(id);
        } else {
            prop_assert_eq!(outcome, PrepareOutcome::Duplicate);
            self.dropped += 1;
        }
        Ok(())
    }
}

/// Record `id` as the prepare stage leaves it: one delivery item, or (`fail`) a dead letter.
fn prepared(env: Envelope, id: u8, fail: bool) -> Prepared {
    if fail {
        return Prepared::DeadLetter(dead(env));
    }
    Prepared::Deliver {
        idempotency_key: format!("i{id}"),
        key_expires_ms: FAR,
        items: vec![DeliveryItem {
            envelope: env,
            target: TARGET.into(),
            idempotency_key: format!("i{id}"),
            ordering_key: Some(key(id)),
            version: None,
            body: b"{}".to_vec(),
        }],
    }
}

fn record_id(payload: &[u8]) -> u8 {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
    v["id"].as_u64().unwrap() as u8
}

/// Heads of the lanes, in arrival order: for each ordering key, its oldest outbox item.
fn lane_heads(outbox: &[u8]) -> Vec<u8> {
    let mut heads: BTreeMap<String, (usize, u8)> = BTreeMap::new();
    for (place, id) in outbox.iter().enumerate() {
        heads.entry(key(*id)).or_insert((place, *id));
    }
    let mut v: Vec<_> = heads.into_values().collect();
    v.sort();
    v.into_iter().map(|(_, id)| id).collect()
}

fn run(open: &Open, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(dir.path());
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Accept(id) => {
                let outcome = q.accept(FLOW, &envelope(id), FAR).unwrap();
                if m.seen_deliveries.insert(id) {
                    let Accepted::Queued(seq) = outcome else {
                        return Err(TestCaseError::fail(format!("{id} not queued")));
                    };
                    m.inbox.push((seq, id));
                } else {
                    prop_assert_eq!(outcome, Accepted::DuplicateDelivery);
                }
            }
            Op::Prepare { fail } => {
                let Some((seq, env)) = q.inbox(FLOW, 1).unwrap().into_iter().next() else {
                    prop_assert!(m.inbox.is_empty());
                    continue;
                };
                let (mseq, id) = m.inbox.remove(0);
                prop_assert_eq!((seq, record_id(&env.payload)), (mseq, id), "inbox is FIFO");
                let prepared = prepared(env, id, fail);
                let outcome = q.prepare(FLOW, seq, prepared).unwrap();
                let replay = m.replays.remove(&seq);
                m.place(id, fail, replay, outcome)?;
            }
            Op::AcceptMapped { id, fail } => {
                let envelope = envelope(id);
                let mapped = prepared(envelope.clone(), id, fail);
                let offer = Offer {
                    flow: FLOW,
                    envelope: &envelope,
                    delivery_expires_ms: FAR,
                    max_pending: u64::MAX,
                    max_bytes: u64::MAX,
                    prepared: Some(&mapped),
                };
                let outcome = q.accept_group(&[offer]).unwrap()[0];
                if !m.seen_deliveries.insert(id) {
                    prop_assert_eq!(outcome, Accepted::DuplicateDelivery);
                } else if m.inbox.is_empty() {
                    let Accepted::Prepared { outcome, .. } = outcome else {
                        return Err(TestCaseError::fail(format!("{id} not placed past an empty inbox: {outcome:?}")));
                    };
                    m.place(id, fail, false, outcome)?;
                } else {
                    // Behind inbox records it waits its turn there, mapped again by prepare.
                    let Accepted::Queued(seq) = outcome else {
                        return Err(TestCaseError::fail(format!("{id} not queued behind the inbox: {outcome:?}")));
                    };
                    m.inbox.push((seq, id));
                }
            }
            Op::Deliver(pick) | Op::Reject(pick) => {
                let heads = lane_heads(&m.outbox);
                if heads.is_empty() {
                    continue;
                }
                let id = heads[pick as usize % heads.len()];
                m.outbox.retain(|i| *i != id);
                let stored = q.outbox(FLOW, TARGET, usize::MAX).unwrap();
                let seq = stored.iter().find(|(_, i)| record_id(&i.envelope.payload) == id).unwrap().0;
                if matches!(op, Op::Deliver(_)) {
                    prop_assert!(!m.delivered.contains(&id), "record {} delivered twice", id);
                    q.delivered(FLOW, TARGET, seq).unwrap();
                    m.delivered.push(id);
                } else {
                    let item = stored.into_iter().find(|(s, _)| *s == seq).unwrap().1;
                    q.dead_letter(FLOW, TARGET, seq, &dead(item.envelope)).unwrap();
                    m.dead += 1;
                }
            }
            Op::Replay(pick) | Op::Discard(pick) => {
                let letters = q.dead_letters(FLOW).unwrap();
                if letters.is_empty() {
                    continue;
                }
                let id = letters[pick as usize % letters.len()].0;
                let filter = DeadLetterFilter { ids: [id].into(), ..DeadLetterFilter::default() };
                let why = format!("op {}", m.audit.len());
                let caller = Caller::new("model", None, Some(&why)).unwrap();
                let (action, affected) = match op {
                    Op::Replay(_) => (AuditAction::Replay, q.replay_dead_letters(&filter, &caller).unwrap()),
                    _ => (AuditAction::Discard, q.discard_dead_letters(&filter, &caller).unwrap()),
                };
                prop_assert_eq!(affected.len(), 1);
                m.dead -= 1;
                m.audit.push((action, 1, vec![id]));
                if action == AuditAction::Replay {
                    let seq = new_inbox_seq(&q, &m)?;
                    let record = record_id(&letters.iter().find(|(i, _)| *i == id).unwrap().1.envelope.payload);
                    m.inbox.push((seq, record));
                    m.replays.insert(seq);
                } else {
                    m.dropped += 1;
                }
            }
            Op::Inject(n) => {
                let id = 100 + n;
                let caller = Caller::new("model", None, Some(&format!("op {}", m.audit.len()))).unwrap();
                let entry = AuditEntry::new(FLOW, AuditAction::Inject, &caller, entrepot::queue::now_ms());
                let mut record = envelope(id);
                record.replay = Some(Box::new(Replay {
                    dead_letter_id: None,
                    count: 1,
                    target: None,
                    requested_by: caller.requested_by(),
                    replayed_at_ms: 1,
                    history: Vec::new(),
                }));
                let outcome = q.inject(FLOW, &[Intake::Record(record)], FAR, entry).unwrap();
                let fresh = m.seen_deliveries.insert(id);
                prop_assert_eq!((outcome.queued, outcome.duplicates), (u64::from(fresh), u64::from(!fresh)));
                m.audit.push((AuditAction::Inject, u64::from(fresh), Vec::new()));
                if fresh {
                    let seq = new_inbox_seq(&q, &m)?;
                    m.inbox.push((seq, id));
                    m.replays.insert(seq);
                }
            }
            Op::Crash => {
                // The bytes held, kept write by write, are what a recount on opening finds.
                let held = q.held_bytes();
                drop(q);
                q = open(dir.path());
                prop_assert_eq!(q.held_bytes(), held, "bytes held, kept as written and counted again");
            }
        }
        // The store agrees with the model after every step.
        let inbox: Vec<(u64, u8)> =
            q.inbox(FLOW, usize::MAX).unwrap().into_iter().map(|(s, e)| (s, record_id(&e.payload))).collect();
        prop_assert_eq!(&inbox, &m.inbox);
        let stored = q.outbox(FLOW, TARGET, usize::MAX).unwrap();
        prop_assert!(stored.windows(2).all(|w| w[0].0 < w[1].0), "outbox numbers increase");
        let outbox: Vec<u8> = stored.iter().map(|(_, i)| record_id(&i.envelope.payload)).collect();
        prop_assert_eq!(&outbox, &m.outbox, "outbox in arrival order");
        prop_assert_eq!(q.dead_letters(FLOW).unwrap().len(), m.dead);
        prop_assert_eq!(q.pending_total().unwrap() as usize, m.inbox.len() + m.outbox.len());
        let trail = q.audit_trail(&AuditFilter { flow: Some(FLOW.into()), ..AuditFilter::default() }).unwrap();
        let audited: Vec<(AuditAction, u64, Vec<u64>)> =
            trail.iter().map(|e| (e.action, e.count, e.dead_letters.clone())).collect();
        prop_assert_eq!(&audited, &m.audit, "the audit trail");
        let whys: Vec<String> = (0..m.audit.len()).map(|i| format!("op {i}")).collect();
        prop_assert_eq!(trail.iter().map(|e| e.caller.why.clone()).collect::<Vec<_>>(), whys, "each with its reason");
        let (records, letters) = (m.inbox.len() + m.outbox.len(), m.dead);
        prop_assert_eq!(q.held_bytes() == 0, records + letters == 0, "bytes held by {} records", records + letters);
    }
    // Nothing acknowledged is lost: every accepted record is pending, delivered, dead,
    // or was dropped as a repeat of an idempotency key.
    let accounted = m.inbox.len() + m.outbox.len() + m.delivered.len() + m.dead + m.dropped;
    prop_assert_eq!(accounted, m.seen_deliveries.len());
    Ok(())
}

/// The sequence number of the one inbox record the store holds and the model does not
/// yet: where a replay or an injection just went.
fn new_inbox_seq(q: &Queue, m: &Model) -> Result<u64, TestCaseError> {
    let known: BTreeSet<u64> = m.inbox.iter().map(|(s, _)| *s).collect();
    let new: Vec<u64> =
        q.inbox(FLOW, usize::MAX).unwrap().into_iter().map(|(s, _)| s).filter(|s| !known.contains(s)).collect();
    prop_assert_eq!(new.len(), 1, "one new inbox record");
    Ok(new[0])
}

fn dead(envelope: Envelope) -> DeadLetter {
    DeadLetter {
        envelope,
        target: None,
        reason: DeadLetterReason::Rejected,
        message: "refused".into(),
        status: Some(400),
        response_body: None,
        attempts: Vec::new(),
        dead_lettered_at_ms: 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn every_backend_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        for (name, start) in BACKENDS {
            run(&start(), ops.clone()).map_err(|e| TestCaseError::fail(format!("backend {name}: {e}")))?;
        }
    }
}
