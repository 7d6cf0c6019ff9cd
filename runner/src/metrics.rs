//! Prometheus metrics, all named `entrepot_*`, labelled by flow and target connector
//! (bounded label values: names from the manifests and fixed categories, never record
//! data). `/v1/status` reads each target's counters from `sink::TargetCounters`, updated
//! at the same points, not from here.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the runner exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
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
    /// Time from first receipt to delivery (the order-to-ERP posting time).
    pub latency: HistogramVec,
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
        let dedup_entries_expired = IntCounter::new(
            "entrepot_dedup_entries_expired_total",
            "Idempotency keys and delivery ids forgotten once their dedup window passed",
        )
        .expect("valid metric");
        registry.register(Box::new(dedup_entries_expired.clone())).expect("unique metric");
        Self {
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
            latency,
            registry,
        }
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
