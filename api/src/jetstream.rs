//! Where a flow's queue lives in NATS JetStream: the names of its streams, subjects and
//! key-value buckets, and the partition of an ordering key. The operator creates these
//! and reads its backlog from them; the runner works in them. Both take the names from
//! here, so they cannot drift apart.
//!
//! For flow `orders` in namespace `shop`:
//!
//! | what | name |
//! |---|---|
//! | records and delivery items (stream) | `entrepot_shop_orders_work` |
//! | a record waiting to be mapped, partition 3 | `entrepot.shop.orders.in.3` |
//! | a delivery item for target `erp`, partition 3 | `entrepot.shop.orders.out.erp.3` |
//! | dead letters (stream) | `entrepot_shop_orders_dead`, subject `entrepot.shop.orders.dead` |
//! | audit trail: replays, discards, injections (stream) | `entrepot_shop_orders_audit`, subject `entrepot.shop.orders.audit` |
//! | idempotency keys (bucket) | `entrepot_shop_orders_keys` |
//! | last delivered versions (bucket) | `entrepot_shop_orders_versions` |
//! | source progress and leases (bucket) | `entrepot_shop_orders_state` |
//!
//! And for Connector `erp` in namespace `shop`, whatever flows send to it:
//!
//! | what | name |
//! |---|---|
//! | the quota its runners share (bucket) | `entrepot_shop_connector_erp_quota` |
//!
//! Namespaces and flow names are DNS labels (no `_`, no `.`), so `_` and `.` separate
//! them without ambiguity (a flow's names have four parts, a Connector's five: a flow
//! named `connector` cannot take a Connector's bucket). A target name that is not a plain subject token is written as
//! a hash of itself.

use crate::resource::SyncFlowSpec;

/// The names of one flow's streams, subjects and buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    namespace: String,
    flow: String,
}

impl Layout {
    /// The layout of flow `flow` in namespace `namespace`.
    pub fn new(namespace: &str, flow: &str) -> Self {
        Self { namespace: token(namespace), flow: token(flow) }
    }

    fn stream(&self, what: &str) -> String {
        format!("entrepot_{}_{}_{what}", self.namespace, self.flow)
    }

    fn subject(&self, rest: &str) -> String {
        format!("entrepot.{}.{}.{rest}", self.namespace, self.flow)
    }

    /// The stream of records waiting to be mapped and of delivery items.
    pub fn work_stream(&self) -> String {
        self.stream("work")
    }

    /// The subjects of [`Layout::work_stream`].
    pub fn work_subjects(&self) -> Vec<String> {
        vec![self.subject("in.*"), self.subject("out.*.*")]
    }

    /// Every subject of the flow's work (`entrepot.<namespace>.<flow>.>`).
    pub fn work_subjects_root(&self) -> String {
        self.subject(">")
    }

    /// Where a record of partition `partition` waits to be mapped.
    pub fn inbox_subject(&self, partition: u16) -> String {
        self.subject(&format!("in.{partition}"))
    }

    /// Every partition's records waiting to be mapped.
    pub fn inbox_subjects(&self) -> String {
        self.subject("in.*")
    }

    /// Where a delivery item of partition `partition` waits for target `target`.
    pub fn outbox_subject(&self, target: &str, partition: u16) -> String {
        self.subject(&format!("out.{}.{partition}", token(target)))
    }

    /// Every partition's delivery items for `target`.
    pub fn outbox_subjects(&self, target: &str) -> String {
        self.subject(&format!("out.{}.*", token(target)))
    }

    /// The partition a work subject belongs to.
    pub fn partition_of(subject: &str) -> Option<u16> {
        subject.rsplit('.').next()?.parse().ok()
    }

    /// The stream of dead letters.
    pub fn dead_stream(&self) -> String {
        self.stream("dead")
    }

    /// The subject of [`Layout::dead_stream`].
    pub fn dead_subject(&self) -> String {
        self.subject("dead")
    }

    /// The stream of the audit trail: who replayed, discarded or injected records, and
    /// why; kept as long as the dead letters.
    pub fn audit_stream(&self) -> String {
        self.stream("audit")
    }

    /// The subject of [`Layout::audit_stream`].
    pub fn audit_subject(&self) -> String {
        self.subject("audit")
    }

    /// The bucket of idempotency keys, each kept for the flow's dedup window.
    pub fn keys_bucket(&self) -> String {
        self.stream("keys")
    }

    /// The bucket of the last version delivered per target and ordering key.
    pub fn versions_bucket(&self) -> String {
        self.stream("versions")
    }

    /// The bucket of source progress (poll watermarks, file imports) and of the leases
    /// that give each partition and each source to one runner at a time.
    pub fn state_bucket(&self) -> String {
        self.stream("state")
    }

    /// The bucket where every runner sending to Connector `connector` of `namespace`
    /// coordinates its share of the Connector's quota (rate and concurrency), whatever
    /// flow it runs.
    pub fn connector_bucket(namespace: &str, connector: &str) -> String {
        format!("entrepot_{}_connector_{}_quota", token(namespace), token(connector))
    }

    /// What [`Layout::connector_bucket`] must be: one value per key (the runners rewrite
    /// it every second), kept in `replicas` copies, never expiring.
    pub fn connector_plan(namespace: &str, connector: &str, replicas: u8) -> StreamPlan {
        StreamPlan {
            name: Self::connector_bucket(namespace, connector),
            kind: StreamKind::Bucket,
            subjects: Vec::new(),
            replicas: usize::from(replicas.max(1)),
            max_age: None,
            max_bytes: None,
            duplicate_window: None,
        }
    }

    /// Every stream of the flow (the buckets are streams too: `KV_<bucket>`).
    pub fn streams(&self) -> Vec<String> {
        let mut all = vec![self.work_stream(), self.dead_stream(), self.audit_stream()];
        all.extend([self.keys_bucket(), self.versions_bucket(), self.state_bucket()].map(|b| format!("KV_{b}")));
        all
    }
}

/// What one of a flow's streams or buckets must be: the operator creates it so (and the
/// runner too in local mode, when it is missing), from [`Layout::plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPlan {
    /// The stream's name, or the bucket's (its stream is `KV_<name>`).
    pub name: String,
    /// A stream, or a key-value bucket.
    pub kind: StreamKind,
    /// A stream's subjects (none for a bucket).
    pub subjects: Vec<String>,
    /// Copies kept (1, 3 or 5).
    pub replicas: usize,
    /// How long a message (a bucket's key) is kept, when it expires.
    pub max_age: Option<std::time::Duration>,
    /// Bytes the stream may hold; past them a publish is refused (the queue is full), and
    /// nothing already accepted is dropped.
    pub max_bytes: Option<i64>,
    /// How long a publish's `Nats-Msg-Id` is remembered, so that a repeated delivery is
    /// stored once.
    pub duplicate_window: Option<std::time::Duration>,
}

/// Whether a [`StreamPlan`] is a stream or a key-value bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// A stream of messages.
    Stream,
    /// A key-value bucket (one value per key).
    Bucket,
}

/// The longest window JetStream remembers message ids for: the ids are held in the
/// server's memory, so a flow's 72-hour dedup window is kept by its idempotency keys (in a
/// bucket, on disk) and the stream catches repeats that come within minutes (a sender's
/// quick retries, a publish repeated after a lost acknowledgement).
pub const MAX_DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10 * 60);

impl Layout {
    /// The streams and buckets of a flow with `spec`, each kept in `replicas` copies.
    pub fn plan(&self, spec: &SyncFlowSpec, replicas: u8) -> Vec<StreamPlan> {
        let replicas = usize::from(replicas.max(1));
        let dedup = spec.delivery.dedup_window.get();
        let retention = spec.delivery.dead_letter.retention.get();
        let max_bytes = i64::try_from(spec.runner.queue.max_bytes).unwrap_or(i64::MAX);
        let stream = |name: String, subjects: Vec<String>, max_age| StreamPlan {
            name,
            kind: StreamKind::Stream,
            subjects,
            replicas,
            max_age,
            max_bytes: Some(max_bytes),
            duplicate_window: Some(dedup.min(MAX_DUPLICATE_WINDOW)),
        };
        let bucket = |name: String, max_age| StreamPlan {
            name,
            kind: StreamKind::Bucket,
            subjects: Vec::new(),
            replicas,
            max_age,
            max_bytes: None,
            duplicate_window: None,
        };
        vec![
            stream(self.work_stream(), self.work_subjects(), None),
            stream(self.dead_stream(), vec![self.dead_subject()], Some(retention)),
            stream(self.audit_stream(), vec![self.audit_subject()], Some(retention)),
            bucket(self.keys_bucket(), Some(dedup)),
            // The stale guard forgets a key not delivered for the longer of the two, as the
            // embedded queue does.
            bucket(self.versions_bucket(), Some(dedup.max(retention))),
            bucket(self.state_bucket(), None),
        ]
    }
}

/// The partition of ordering key `key` among `partitions`: FNV-1a, so it is the same in
/// every process and every version.
pub fn partition(key: &str, partitions: u16) -> u16 {
    let hash = fnv1a(key.as_bytes());
    (hash % u64::from(partitions.max(1))) as u16
}

/// A key-value key for any text: the text itself when it is made only of the characters
/// a key allows and is short, else `h.` and a hash of it.
pub fn kv_key(text: &str) -> String {
    let plain = text.len() <= 200
        && !text.is_empty()
        && !text.starts_with('.')
        && !text.ends_with('.')
        && !text.contains("..")
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'.'));
    if plain {
        text.to_string()
    } else {
        format!("h.{:016x}{:016x}", fnv1a(text.as_bytes()), fnv1a_seeded(text.as_bytes()))
    }
}

/// A subject token for a name: itself when it is one, else a hash of it.
fn token(name: &str) -> String {
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if plain { name.to_string() } else { format!("h{:016x}", fnv1a(name.as_bytes())) }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(0xcbf2_9ce4_8422_2325, bytes)
}

fn fnv1a_seeded(bytes: &[u8]) -> u64 {
    fnv1a_from(0x6c62_272e_07bb_0142, bytes)
}

fn fnv1a_from(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_namespace_and_flow_apart() {
        let l = Layout::new("shop", "orders");
        assert_eq!(l.work_stream(), "entrepot_shop_orders_work");
        assert_eq!(l.inbox_subject(3), "entrepot.shop.orders.in.3");
        assert_eq!(l.outbox_subject("erp", 3), "entrepot.shop.orders.out.erp.3");
        assert_eq!(Layout::partition_of("entrepot.shop.orders.out.erp.3"), Some(3));
        assert_eq!(l.streams().len(), 6);
        assert_eq!(l.audit_stream(), "entrepot_shop_orders_audit");
        assert_ne!(Layout::new("a-b", "c").work_stream(), Layout::new("a", "b-c").work_stream());
        // A target name that is no subject token is hashed, never split into two tokens.
        assert!(!l.outbox_subject("erp.eu", 0).contains("erp.eu"));
        assert_eq!(Layout::connector_bucket("shop", "erp"), "entrepot_shop_connector_erp_quota");
        // A flow named `connector` never has a Connector's bucket among its own.
        let flow = Layout::new("shop", "connector");
        for name in ["work", "dead", "audit", "keys", "versions", "state"] {
            assert!(!flow.streams().iter().any(|s| s.ends_with(&Layout::connector_bucket("shop", name))));
        }
        assert_eq!(Layout::connector_plan("shop", "erp", 3).replicas, 3);
    }

    #[test]
    fn a_key_always_falls_in_the_same_partition() {
        assert_eq!(partition("order-1001", 16), partition("order-1001", 16));
        // Fixed values: changing the hash would move every key of every running flow.
        assert_eq!(partition("order-1001", 16), (fnv1a(b"order-1001") % 16) as u16);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let spread: std::collections::BTreeSet<u16> = (0..200).map(|i| partition(&format!("k{i}"), 16)).collect();
        assert_eq!(spread.len(), 16);
    }

    #[test]
    fn any_text_makes_a_valid_key() {
        assert_eq!(kv_key("order-1001"), "order-1001");
        for text in ["a b", "", ".x", "x..y", "ü", &"x".repeat(300)] {
            let key = kv_key(text);
            assert!(key.starts_with("h.") && key.len() == 34, "{text:?} -> {key}");
        }
        assert_ne!(kv_key("a b"), kv_key("a c"));
    }
}
