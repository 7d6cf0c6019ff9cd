//! Prometheus metrics, all named `entrepot_*`, labelled by flow and, for delivery, by
//! target and Connector (bounded label values: names from the manifests and fixed
//! categories, never record data): `docs/monitoring.md` lists them. `/v1/status` reads
//! each target's counters from `sink::TargetCounters` and each flow's from
//! [`FlowCounts`], updated at the same points: never read back from Prometheus.

mod delivery;

pub use delivery::{DeliveryMetrics, Failure, TargetLabels};

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

use prometheus::{Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::queue::DeadLetterReason;

/// What `/v1/status` reports of one flow's intake: plain counts, kept beside the
/// Prometheus counters by the same calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts {
    /// Records accepted from the source.
    pub received: u64,
    /// Records dropped as duplicates, at any stage.
    pub deduplicated: u64,
    /// Records dead-lettered, for any reason.
    pub dead_lettered: u64,
}

/// Every metric the runner exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    counts: Arc<Mutex<BTreeMap<String, FlowCounts>>>,
    /// Records accepted from a source (after signature checks, before dedup).
    pub received: IntCounterVec,
    /// Records dropped as duplicates, by stage (`delivery_id`, `idempotency_key`): both
    /// happen before a record is split among targets, so per flow only.
    pub duplicates: IntCounterVec,
    /// Delivery to each target: attempts, acknowledgements, failures by category,
    /// retries, throttling, posting time, inventory freshness.
    pub delivery: DeliveryMetrics,
    /// Records dead-lettered, by target, Connector and reason (target and Connector empty
    /// for a record refused before it reached one).
    pub dead_lettered: IntCounterVec,
    /// Webhook requests refused, by reason (`signature`, `unknown_flow`, `store`).
    pub webhook_refused: IntCounterVec,
    /// Signed webhooks of a topic the flow does not take.
    pub ignored: IntCounterVec,
    /// Files a file source imported completely and moved aside.
    pub files_processed: IntCounterVec,
    /// Scans at which a file could not be imported, by reason (`directory`, `unreadable`,
    /// `store`, `move`); the file is tried again at the next scan.
    pub files_failed: IntCounterVec,
    /// Poll runs started (or resumed after a pause).
    pub polls: IntCounterVec,
    /// Poll pages read and queued.
    pub poll_pages: IntCounterVec,
    /// Failed poll requests and unreadable pages, by category.
    pub poll_errors: IntCounterVec,
    /// Records and items waiting, per flow.
    pub backlog: IntGaugeVec,
    /// Age of the oldest waiting record, per flow.
    pub oldest_pending_seconds: IntGaugeVec,
    /// Dead letters kept, per flow: the replay backlog (records that wait for a fix and
    /// `entrepot deadletters replay`, or a discard).
    pub dead_letters: IntGaugeVec,
    /// `spec.delivery.freshnessBudget` per flow, seconds: what the oldest pending record's
    /// age is compared with (Ready, and the `EntrepotBacklogOlderThanBudget` alert).
    pub freshness_budget_seconds: IntGaugeVec,
    /// Partitions of a flow's shared queue this runner works now (JetStream: its share;
    /// the runners of a flow add up to `queue.jetstream.partitions`). Absent for the
    /// embedded queue, which one runner works whole.
    pub partitions_held: IntGaugeVec,
    /// 1 while the runner is ready (started, every supervised task alive), else 0.
    pub ready: IntGauge,
    /// Dead letters replayed into the pipeline (admin API), per flow.
    pub dead_letters_replayed: IntCounterVec,
    /// Dead letters discarded (admin API), per flow.
    pub dead_letters_discarded: IntCounterVec,
    /// Dead letters purged past their flow's retention, per flow.
    pub dead_letters_expired: IntCounterVec,
    /// Idempotency keys and delivery ids forgotten once their dedup window passed.
    pub dedup_entries_expired: IntCounter,
    /// Last versions (the stale guard's) forgotten once their key was idle for a retention.
    pub versions_expired: IntCounter,
    /// 1 while the queue refuses writes after a failed one (a full disk), else 0.
    pub queue_latched: IntGauge,
    /// Corrupt queue files set aside at start (renamed, the runner started empty).
    pub queue_set_aside: IntCounter,
    /// Requests in flight allowed to a target Connector now (below its declared
    /// concurrency after it refused one too many), per connector.
    pub concurrency_limit: IntGaugeVec,
    /// Requests in flight to a target Connector now, per connector.
    pub connector_in_flight: IntGaugeVec,
    /// The rate in force for a target Connector, requests per second, after adapting to
    /// its answers (the learned rate; this runner's share while shared), per connector.
    /// Absent for a Connector without a declared rate.
    pub connector_rate: GaugeVec,
    /// This runner's share of a target Connector's rate, requests per second, while
    /// runners share it (a flow's queue in JetStream), per connector.
    pub quota_share_rate: GaugeVec,
    /// This runner's share of a target Connector's requests in flight, while runners share
    /// it, per connector.
    pub quota_share_slots: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["flow"]).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let register = |metric: Box<dyn prometheus::core::Collector>| {
            registry.register(metric).expect("unique metric");
        };
        let dedup_entries_expired = IntCounter::new(
            "entrepot_dedup_entries_expired_total",
            "Idempotency keys and delivery ids forgotten once their dedup window passed",
        )
        .expect("valid metric");
        let versions_expired = IntCounter::new(
            "entrepot_versions_expired_total",
            "Last versions of ordering keys forgotten once the key was idle for a retention",
        )
        .expect("valid metric");
        let queue_set_aside = IntCounter::new(
            "entrepot_queue_set_aside_total",
            "Corrupt queue files set aside at start; the runner started with an empty queue",
        )
        .expect("valid metric");
        for c in [&dedup_entries_expired, &versions_expired, &queue_set_aside] {
            register(Box::new(c.clone()));
        }
        let queue_latched = IntGauge::new(
            "entrepot_queue_latched",
            "1 while the queue refuses writes since one failed (a full disk): /healthz fails meanwhile",
        )
        .expect("valid metric");
        register(Box::new(queue_latched.clone()));
        let concurrency_limit = IntGaugeVec::new(
            Opts::new(
                "entrepot_connector_concurrency_limit",
                "Requests in flight allowed to a target Connector now, after adapting to what it grants",
            ),
            &["connector"],
        )
        .expect("valid metric");
        register(Box::new(concurrency_limit.clone()));
        let quota_share_rate = GaugeVec::new(
            Opts::new(
                "entrepot_quota_share_rate",
                "This runner's share of a target Connector's requests per second, while runners share its quota",
            ),
            &["connector"],
        )
        .expect("valid metric");
        register(Box::new(quota_share_rate.clone()));
        let quota_share_slots = IntGaugeVec::new(
            Opts::new(
                "entrepot_quota_share_slots",
                "This runner's share of a target Connector's requests in flight, while runners share its quota",
            ),
            &["connector"],
        )
        .expect("valid metric");
        register(Box::new(quota_share_slots.clone()));
        let connector_in_flight = IntGaugeVec::new(
            Opts::new("entrepot_connector_in_flight", "Requests in flight to a target Connector now"),
            &["connector"],
        )
        .expect("valid metric");
        register(Box::new(connector_in_flight.clone()));
        let connector_rate = GaugeVec::new(
            Opts::new(
                "entrepot_connector_rate_limit",
                "Requests per second allowed to a target Connector now, after adapting to its answers (the learned rate)",
            ),
            &["connector"],
        )
        .expect("valid metric");
        register(Box::new(connector_rate.clone()));
        let ready = IntGauge::new(
            "entrepot_runner_ready",
            "1 while the runner is ready (its flows started, every supervised task alive), else 0: what /readyz answers",
        )
        .expect("valid metric");
        register(Box::new(ready.clone()));
        Self {
            counts: Arc::default(),
            received: counter("entrepot_records_received_total", "Records accepted from a source", &["flow"]),
            duplicates: counter(
                "entrepot_records_duplicate_total",
                "Records dropped as duplicates",
                &["flow", "stage"],
            ),
            delivery: DeliveryMetrics::register(&registry),
            dead_lettered: counter(
                "entrepot_records_dead_lettered_total",
                "Records dead-lettered, by target, Connector and reason",
                &["flow", "target", "connector", "reason"],
            ),
            webhook_refused: counter("entrepot_webhook_refused_total", "Webhook requests refused", &["flow", "reason"]),
            ignored: counter(
                "entrepot_webhook_ignored_total",
                "Signed webhooks of a topic the flow does not take",
                &["flow"],
            ),
            files_processed: counter(
                "entrepot_files_processed_total",
                "Files imported completely and moved aside",
                &["flow"],
            ),
            files_failed: counter(
                "entrepot_files_failed_total",
                "Scans at which a file could not be imported (tried again at the next scan)",
                &["flow", "reason"],
            ),
            polls: counter("entrepot_polls_total", "Poll runs started or resumed", &["flow"]),
            poll_pages: counter("entrepot_poll_pages_total", "Poll pages read and queued", &["flow"]),
            poll_errors: counter(
                "entrepot_poll_errors_total",
                "Failed poll requests and unreadable pages",
                &["flow", "category"],
            ),
            backlog: gauge("entrepot_backlog_records", "Records waiting for delivery"),
            oldest_pending_seconds: gauge("entrepot_oldest_pending_seconds", "Age of the oldest waiting record"),
            dead_letters: gauge(
                "entrepot_dead_letters",
                "Dead letters kept for inspection and replay: the replay backlog",
            ),
            freshness_budget_seconds: gauge(
                "entrepot_freshness_budget_seconds",
                "spec.delivery.freshnessBudget: the oldest pending record may be this old before the flow is not Ready",
            ),
            partitions_held: gauge(
                "entrepot_queue_partitions_held",
                "Partitions of the flow's shared queue this runner works now",
            ),
            ready,
            dead_letters_replayed: counter(
                "entrepot_dead_letters_replayed_total",
                "Dead letters replayed into the pipeline",
                &["flow"],
            ),
            dead_letters_discarded: counter(
                "entrepot_dead_letters_discarded_total",
                "Dead letters discarded",
                &["flow"],
            ),
            dead_letters_expired: counter(
                "entrepot_dead_letters_expired_total",
                "Dead letters purged past their retention",
                &["flow"],
            ),
            dedup_entries_expired,
            versions_expired,
            queue_latched,
            queue_set_aside,
            concurrency_limit,
            connector_in_flight,
            connector_rate,
            quota_share_rate,
            quota_share_slots,
            registry,
        }
    }

    /// `n` records of `flow` accepted from its source.
    pub fn count_received(&self, flow: &str, n: u64) {
        self.received.with_label_values(&[flow]).inc_by(n);
        self.update(flow, |c| c.received += n);
    }

    /// `n` records of `flow` dropped as duplicates at `stage` (`delivery_id`,
    /// `idempotency_key`).
    pub fn count_duplicates(&self, flow: &str, stage: &str, n: u64) {
        self.duplicates.with_label_values(&[flow, stage]).inc_by(n);
        self.update(flow, |c| c.deduplicated += n);
    }

    /// `n` records of `flow` dead-lettered for `reason`, at the target `at` (its name
    /// and Connector) or, with `None`, before reaching one (at the source or at mapping:
    /// also counted as failed transactions of category `mapping`).
    pub fn count_dead_lettered(&self, flow: &str, at: Option<TargetLabels<'_>>, reason: DeadLetterReason, n: u64) {
        let (target, connector) = at.map_or(("", ""), |at| (at.target, at.connector));
        self.dead_lettered.with_label_values(&[flow, target, connector, reason.as_str()]).inc_by(n);
        if let Some(failure) = Failure::of_refusal(reason) {
            self.delivery.failed(at.unwrap_or(TargetLabels { flow, target: "", connector: "" }), failure, n);
        }
        self.update(flow, |c| c.dead_lettered += n);
    }

    /// What `flow` has counted so far.
    pub fn flow_counts(&self, flow: &str) -> FlowCounts {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).get(flow).copied().unwrap_or_default()
    }

    fn update(&self, flow: &str, change: impl FnOnce(&mut FlowCounts)) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        change(counts.entry(flow.to_string()).or_default());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_counts_what_its_metrics_count() {
        let metrics = Metrics::new();
        metrics.count_received("orders", 3);
        metrics.count_duplicates("orders", "delivery_id", 1);
        metrics.count_duplicates("orders", "idempotency_key", 1);
        metrics.count_dead_lettered("orders", None, DeadLetterReason::Mapping, 1);
        let counts = metrics.flow_counts("orders");
        assert_eq!(counts, FlowCounts { received: 3, deduplicated: 2, dead_lettered: 1 });
        assert_eq!(metrics.flow_counts("stock"), FlowCounts::default());
        let text = metrics.render();
        assert!(text.contains("entrepot_records_received_total{flow=\"orders\"} 3"), "{text}");
        let dead = r#"entrepot_records_dead_lettered_total{connector="",flow="orders",reason="mapping",target=""} 1"#;
        assert!(text.contains(dead), "{text}");
        let failed = r#"entrepot_records_failed_total{category="mapping",connector="",flow="orders",target=""} 1"#;
        assert!(text.contains(failed), "{text}");
    }
}
