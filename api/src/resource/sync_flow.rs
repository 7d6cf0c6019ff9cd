use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Duration, SecretKeySelector, SourceSpec, TargetSpec};

/// A flow of one entity from a source system, through mappings, to one or more targets,
/// with its delivery policy. Each SyncFlow gets its own runner workload and queue.
//
// The CEL rules let the API server refuse at `kubectl apply` what `FlowConfig::resolve`
// (runner/src/config.rs) refuses in local mode; keep the two in step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "size(self.targets) > 0",
        "message": "a flow needs at least one target",
        "fieldPath": ".targets",
        "reason": "FieldValueRequired"
    },
    {
        "rule": "!has(self.mode) || self.mode != 'batch' || !has(self.source.trigger.webhook)",
        "message": "a webhook source must always be up to answer its sender: use mode continuous, or a poll or file trigger",
        "fieldPath": ".mode",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "!has(self.mode) || self.mode != 'batch' || (has(self.schedule) && self.schedule != '')",
        "message": "a batch flow needs a schedule (cron syntax, e.g. `0 2 * * *`)",
        "fieldPath": ".schedule",
        "reason": "FieldValueRequired"
    },
    {
        "rule": "(has(self.mode) && self.mode == 'batch') || (!has(self.schedule) && !has(self.timeZone))",
        "message": "a continuous flow runs all the time: remove schedule and timeZone, or set mode: batch",
        "fieldPath": ".schedule",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "self.targets.all(t, !has(t.operation) || t.operation != 'upsert') || (has(self.delivery) && has(self.delivery.orderingKey))",
        "message": "an upsert is sent to <path>/<ordering key>: set spec.delivery.orderingKey",
        "fieldPath": ".delivery",
        "reason": "FieldValueRequired"
    },
    {
        "rule": "self.targets.all(t, self.targets.exists_one(u, (has(u.name) ? u.name : u.connectorRef) == (has(t.name) ? t.name : t.connectorRef)))",
        "message": "two targets have the same name (a target's name defaults to its connectorRef): give each a unique name",
        "fieldPath": ".targets", "reason": "FieldValueInvalid"
    }
]))]
pub struct SyncFlowSpec {
    /// Where records come from and what triggers them.
    pub source: SourceSpec,

    /// The Mapping (same namespace) that turns the source's payload into the canonical
    /// record. Without it the payload is passed on unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_ref: Option<String>,

    /// Where records go. Each target receives every record. At most 32.
    // The bound keeps the CEL rules over targets within the API server's cost budget.
    #[schemars(length(max = 32))]
    pub targets: Vec<TargetSpec>,

    /// How records are delivered: keys, retries, dead letters, deduplication.
    #[serde(default)]
    pub delivery: DeliverySpec,

    /// The runner workload that carries this flow.
    #[serde(default)]
    pub runner: RunnerSpec,

    /// `continuous` (the default): a runner that is always up, for webhooks and short
    /// poll intervals. `batch`: a CronJob that starts a runner on `schedule`, takes one
    /// pass of the source (a poll run, the files in the directory), delivers what it
    /// queued and exits, for nightly imports such as settlements. The queue is kept on a
    /// volume between runs. A webhook source cannot be batch.
    #[serde(default)]
    pub mode: FlowMode,

    /// When a batch flow runs, in cron syntax (`0 2 * * *`: at 02:00). Required when
    /// `mode` is `batch`, not allowed otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,

    /// IANA time zone `schedule` is read in (e.g. `America/Chicago`). Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,

    /// Stop the flow: the runner is scaled to zero (a batch flow's CronJob is
    /// suspended) and its queue is kept, to resume where it stopped when set back to
    /// `false`. A suspended webhook flow's sender gets no answer and retries.
    #[serde(default)]
    pub suspend: bool,
}

/// How a flow's runner runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FlowMode {
    /// Always running.
    #[default]
    Continuous,
    /// Started on a schedule; one pass of the source, then exits.
    Batch,
}

impl SyncFlowSpec {
    /// Names of every Connector this flow references, source first, without repeats.
    pub fn connector_refs(&self) -> Vec<&str> {
        let mut refs = vec![self.source.connector_ref.as_str()];
        for t in &self.targets {
            if !refs.contains(&t.connector_ref.as_str()) {
                refs.push(&t.connector_ref);
            }
        }
        refs
    }

    /// Names of every Mapping this flow references, without repeats.
    pub fn mapping_refs(&self) -> Vec<&str> {
        let mut refs: Vec<&str> = Vec::new();
        for m in self.mapping_ref.iter().chain(self.targets.iter().filter_map(|t| t.mapping_ref.as_ref())) {
            if !refs.contains(&m.as_str()) {
                refs.push(m);
            }
        }
        refs
    }
}

/// Delivery policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliverySpec {
    /// jq expression over the canonical record giving the key whose records are
    /// delivered in order, e.g. `.orderId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// jq expression over the canonical record giving its idempotency key, e.g.
    /// `.orderId + ":" + .revision`. A record whose key was already accepted within the
    /// dedup window is dropped as a duplicate; the key is also sent to each target.
    /// Defaults to the source's delivery id (e.g. `X-Shopify-Webhook-Id`; for a polled
    /// record, a hash of its content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// jq expression over the canonical record giving its source version or timestamp,
    /// e.g. `.sourceVersion`. A record older than the last one delivered for its ordering
    /// key is not delivered (counted as stale): an out-of-order inventory snapshot or
    /// order update must not overwrite a newer one. RFC 3339 timestamps compare as times,
    /// numbers as numbers, anything else as text. Defaults to `.sourceVersion` when the
    /// flow's Mapping produces a canonical entity (every one carries its source version);
    /// otherwise no stale guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_key: Option<String>,
    /// Latest wins: a record is not sent when a newer one (by version) for its ordering
    /// key is already queued behind it; it is counted as stale. For state that replaces
    /// itself, like stock levels or prices, this keeps a channel current when it accepts
    /// fewer writes than the source makes (Amazon's listings: 5 a second). Needs
    /// `orderingKey` and a version. Leave it off for records that are events, not states.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub conflate: bool,
    /// Retries of transient failures (transport errors, 408, 429, 5xx).
    #[serde(default)]
    pub retry: RetrySpec,
    /// Dead-letter queue policy.
    #[serde(default)]
    pub dead_letter: DeadLetterSpec,
    /// How long an idempotency key is remembered. Default `72h`.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: Duration,
    /// Share of a target's quota when several flows send to it: `high` goes first.
    #[serde(default)]
    pub priority: Priority,
    /// How old the oldest undelivered record may get before the flow is reported not
    /// Ready (`BacklogOverBudget`) and an Event is raised. Default `5m`.
    #[serde(default = "default_freshness_budget")]
    pub freshness_budget: Duration,
}

impl Default for DeliverySpec {
    fn default() -> Self {
        Self {
            ordering_key: None,
            idempotency_key: None,
            version_key: None,
            conflate: false,
            retry: RetrySpec::default(),
            dead_letter: DeadLetterSpec::default(),
            dedup_window: default_dedup_window(),
            priority: Priority::default(),
            freshness_budget: default_freshness_budget(),
        }
    }
}

fn default_freshness_budget() -> Duration {
    Duration::from_secs(300)
}

fn default_dedup_window() -> Duration {
    Duration::from_secs(72 * 3600)
}

/// Retry policy for transient failures, with exponential backoff and jitter. A
/// `Retry-After` from the target overrides the computed wait. Throttling (a `429`, or
/// the target type's own throttling answer) is the target asking to slow down, not the
/// record failing: it spends no attempt, only time, up to `maxThrottledFor`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrySpec {
    /// Failed attempts in all, the first included, before the record is dead-lettered as
    /// `retriesExhausted`. Throttled attempts do not count. Default 12.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// Wait before the first retry. Default `1s`.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest wait between two attempts. Default `10m`.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// How long a record may go on being throttled, from its first throttled attempt,
    /// before it is dead-lettered as `throttledTooLong`. Default `24h`.
    #[serde(default = "default_max_throttled_for")]
    pub max_throttled_for: Duration,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_throttled_for: default_max_throttled_for(),
        }
    }
}

fn default_max_attempts() -> u32 {
    12
}
fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_throttled_for() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(600)
}

/// Dead-letter queue policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterSpec {
    /// How long dead letters are kept for inspection and replay. Default `336h` (14 days).
    #[serde(default = "default_retention")]
    pub retention: Duration,
}

impl Default for DeadLetterSpec {
    fn default() -> Self {
        Self { retention: default_retention() }
    }
}

fn default_retention() -> Duration {
    Duration::from_secs(336 * 3600)
}

/// Priority of a flow's records at a shared target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Priority {
    /// Back-office records that can wait (catalog alignment, backfills).
    Low,
    /// The default.
    #[default]
    Normal,
    /// Customer-facing records (orders, inventory).
    High,
}

/// The runner workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.replicas <= 1 || has(self.queue.jetstream)",
    "message": "replicas above 1 need a shared queue: set queue.jetstream (each runner would keep its own embedded queue)"
}]))]
pub struct RunnerSpec {
    /// Number of runner pods. Default 1. Above 1 needs `queue.jetstream`: the runners
    /// then share the flow's work by partition, and its sources by lease.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Container image of the runner. Defaults to the operator's configured runner image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Where the flow's queue lives.
    #[serde(default)]
    pub queue: QueueSpec,
}

impl Default for RunnerSpec {
    fn default() -> Self {
        Self { replicas: default_replicas(), image: None, queue: QueueSpec::default() }
    }
}

fn default_replicas() -> i32 {
    1
}

/// Where a flow's queue lives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueSpec {
    /// An on-disk queue inside the runner pod: the default, for one runner.
    #[serde(default)]
    pub embedded: EmbeddedQueueSpec,
    /// The flow's queue in NATS JetStream instead: it survives the loss of a node, and
    /// several runners (`replicas`) share it. See docs/scaling.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<JetStreamQueueSpec>,
    /// Records the runner's queue may hold before sources push back: a webhook answers
    /// 503 with `Retry-After` (the sender retries later) and a poller pauses. Nothing
    /// already acknowledged is ever dropped. Default 1,000,000.
    #[serde(default = "default_max_pending")]
    #[schemars(range(min = 1))]
    pub max_pending: u64,
    /// Bytes the runner's queue may hold (records waiting, delivery items and dead
    /// letters, as stored) before sources push back as they do at `maxPending`. Keep it
    /// well below the volume's size (`embedded.storage`): a full volume stops the queue.
    /// Default 805306368 (768 MiB, three quarters of the default 1Gi volume).
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1))]
    pub max_bytes: u64,
    /// Bytes of queued delivery items (each record as received and as mapped) that each
    /// target keeps in memory, ready to send; the rest wait on disk and are read as these
    /// go. One item is always held, however large. Raise it only when a target's
    /// concurrency times its average item size comes near it. Default 16777216 (16 MiB).
    #[serde(default = "default_max_held_bytes")]
    #[schemars(range(min = 1))]
    pub max_held_bytes: u64,
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            embedded: EmbeddedQueueSpec::default(),
            jetstream: None,
            max_pending: default_max_pending(),
            max_bytes: default_max_bytes(),
            max_held_bytes: default_max_held_bytes(),
        }
    }
}

fn default_max_pending() -> u64 {
    1_000_000
}

fn default_max_bytes() -> u64 {
    768 * 1024 * 1024
}

fn default_max_held_bytes() -> u64 {
    16 * 1024 * 1024
}

/// A flow's queue in NATS JetStream: its records in a stream partitioned by ordering key,
/// its dead letters in a second stream, its idempotency keys, last versions and source
/// progress in key-value buckets. The operator creates them (and removes them with the
/// flow); the runners share them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JetStreamQueueSpec {
    /// NATS server URLs, comma-separated (`nats://nats.nats:4222`). Defaults to the
    /// operator's configured servers (Helm value `nats.url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A NATS credentials file (`.creds`: a user JWT and its seed) in a Secret. Defaults to
    /// the operator's configured one (Helm value `nats.credentialsSecret`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeySelector>,
    /// A NATS auth token in a Secret, for servers that use token authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeySelector>,
    /// Partitions of the flow's records: each ordering key always falls in the same one
    /// (a hash of the key), and each partition is worked by one runner at a time, so
    /// keys keep their order and never block each other. Fixed when the flow is
    /// created. Default 16: room for up to 16 runners.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1024))]
    pub partitions: u16,
    /// Copies JetStream keeps of each stream and bucket: 3 in a NATS cluster (an order
    /// acknowledged to its sender survives the loss of a server), 1 on a single server.
    /// Defaults to the operator's configured count (Helm value `nats.replicas`), else 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<u8>,
}

fn default_partitions() -> u16 {
    16
}

/// An on-disk queue inside the runner pod, on a volume claim that outlives the pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmbeddedQueueSpec {
    /// Size of the queue's volume claim, as a Kubernetes quantity (`5Gi`). Defaults to
    /// the operator's configured size (Helm value `runner.queue.size`), else `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// StorageClass of the queue's volume claim. Defaults to the operator's configured
    /// class (Helm value `runner.queue.storageClassName`), else the cluster's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}
