//! Prometheus metrics, all named `entrepot_*`, labelled by flow and target connector
//! (bounded label values: names from the manifests and fixed categories, never record
//! data). `/v1/status` reads each target's counters from `sink::TargetCounters` and each
//! flow's from [`FlowCounts`], updated at the same points: never read back from Prometheus.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

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
    /// Records dropped as duplicates, by stage (`delivery_id`, `idempotency_key`).
    pub duplicates: IntCounterVec,
    /// Items a target accepted.
    pub delivered: IntCounterVec,
    /// Attempts that failed transiently and will be retried.
    pub retries: IntCounterVec,
    /// Answers 429 from a target.
    pub throttled: IntCounterVec,
    /// Records not delivered because the target already has a newer version.
    pub stale: IntCounterVec,
    /// Records dead-lettered, by reason.
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
    /// Dead letters kept, per flow.
    pub dead_letters: IntGaugeVec,
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
    /// Time from first receipt to delivery (the order-to-ERP posting time).
    pub latency: HistogramVec,
    /// Requests in flight allowed to a target Connector now (below its declared
    /// concurrency after it refused one too many), per connector.
    pub concurrency_limit: IntGaugeVec,
    /// This runner's share of a target Connector's rate, requests per second, while
    /// runners share it (a flow's queue in JetStream), per connector.
    pub quota_share_rate: GaugeVec,
    /// This runner's share of a target Connector's requests in flight, while runners share
    /// it, per connector.
    pub quota_share_slots: IntGaugeVec,
    /// Bytes of delivery items a target's worker holds in memory, per flow and target
    /// (bounded by `spec.runner.queue.maxHeldBytes`).
    pub held_bytes: IntGaugeVec,
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
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "entrepot_delivery_latency_seconds",
                "Time from a record's first receipt to its delivery to a target",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
            &["flow", "target"],
        )
        .expect("valid metric");
        registry.register(Box::new(latency.clone())).expect("unique metric");
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
        let held_bytes = IntGaugeVec::new(
            Opts::new(
                "entrepot_delivery_held_bytes",
                "Bytes of delivery items a target's worker holds in memory (at most spec.runner.queue.maxHeldBytes, or one item)",
            ),
            &["flow", "target"],
        )
        .expect("valid metric");
        register(Box::new(held_bytes.clone()));
        Self {
            counts: Arc::default(),
            received: counter("entrepot_records_received_total", "Records accepted from a source", &["flow"]),
            duplicates: counter(
                "entrepot_records_duplicate_total",
                "Records dropped as duplicates",
                &["flow", "stage"],
            ),
            delivered: counter("entrepot_records_delivered_total", "Records a target accepted", &["flow", "target"]),
            throttled: counter(
                "entrepot_target_throttled_total",
                "Answers 429 Too Many Requests from a target",
                &["flow", "target"],
            ),
            stale: counter(
                "entrepot_records_stale_total",
                "Records older than the version the target has",
                &["flow", "target"],
            ),
            retries: counter(
                "entrepot_delivery_retries_total",
                "Delivery attempts that failed transiently",
                &["flow", "target"],
            ),
            dead_lettered: counter(
                "entrepot_records_dead_lettered_total",
                "Records dead-lettered",
                &["flow", "reason"],
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
            dead_letters: gauge("entrepot_dead_letters", "Dead letters kept for inspection and replay"),
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
            latency,
            concurrency_limit,
            quota_share_rate,
            quota_share_slots,
            held_bytes,
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

    /// `n` records of `flow` dead-lettered for `reason`.
    pub fn count_dead_lettered(&self, flow: &str, reason: &str, n: u64) {
        self.dead_lettered.with_label_values(&[flow, reason]).inc_by(n);
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
        metrics.count_dead_lettered("orders", "rejected", 1);
        let counts = metrics.flow_counts("orders");
        assert_eq!(counts, FlowCounts { received: 3, deduplicated: 2, dead_lettered: 1 });
        assert_eq!(metrics.flow_counts("stock"), FlowCounts::default());
        let text = metrics.render();
        assert!(text.contains("entrepot_records_received_total{flow=\"orders\"} 3"), "{text}");
        assert!(text.contains("entrepot_records_dead_lettered_total{flow=\"orders\",reason=\"rejected\"} 1"), "{text}");
    }
}
