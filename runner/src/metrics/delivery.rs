//! The metrics of delivery to one target of one flow: each labelled `flow` (the
//! SyncFlow), `target` (its `spec.targets[].name`) and `connector` (the target's
//! Connector), names from the manifests only, so their number stays bounded.

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::{
    protocol::{ErrorCategory, Verdict},
    queue::DeadLetterReason,
};

/// The labels every delivery metric carries.
const TARGET: [&str; 3] = ["flow", "target", "connector"];

/// Where an item goes: its flow, the target's name and the target's Connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetLabels<'a> {
    /// The SyncFlow.
    pub flow: &'a str,
    /// `spec.targets[].name`.
    pub target: &'a str,
    /// The target's Connector.
    pub connector: &'a str,
}

impl<'a> TargetLabels<'a> {
    fn values(&self) -> [&'a str; 3] {
        [self.flow, self.target, self.connector]
    }
}

/// The kind of a failed transaction, as retail operations count them: the `category`
/// label of `entrepot_records_failed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The target failed or did not answer (5xx, 408, a transport error): retried.
    Transient,
    /// The target asked to slow down (429, a quota signal): retried, counting time only.
    Throttled,
    /// The target rejected the record for a business reason (a 4xx: an unknown SKU, a
    /// closed period): dead-lettered at once with the target's answer.
    Business,
    /// The record could not be mapped, broke its canonical schema, or could not be read.
    Mapping,
    /// The target refused the Connector's credentials, or none could be obtained.
    Auth,
}

impl Failure {
    /// Every category.
    pub const ALL: [Self; 5] = [Self::Transient, Self::Throttled, Self::Business, Self::Mapping, Self::Auth];

    /// The fixed label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Throttled => "throttled",
            Self::Business => "business",
            Self::Mapping => "mapping",
            Self::Auth => "auth",
        }
    }

    /// The failure an attempt's `verdict` is, if it failed.
    pub fn of_verdict(verdict: &Verdict) -> Option<Self> {
        match verdict {
            Verdict::Delivered => None,
            Verdict::Retry { category: ErrorCategory::Throttled, .. } => Some(Self::Throttled),
            Verdict::Retry { category: ErrorCategory::Auth, .. }
            | Verdict::Reject { category: ErrorCategory::Auth, .. } => Some(Self::Auth),
            Verdict::Retry { .. } => Some(Self::Transient),
            Verdict::Reject { .. } => Some(Self::Business),
        }
    }

    /// The failure a record dead-lettered before delivery (at the source or at mapping)
    /// for `reason` is; `None` for the reasons only a delivery gives.
    pub fn of_refusal(reason: DeadLetterReason) -> Option<Self> {
        match reason {
            DeadLetterReason::Mapping | DeadLetterReason::SchemaViolation | DeadLetterReason::InvalidRecord => {
                Some(Self::Mapping)
            }
            DeadLetterReason::Rejected
            | DeadLetterReason::Auth
            | DeadLetterReason::RetriesExhausted
            | DeadLetterReason::ThrottledTooLong => None,
        }
    }
}

/// The delivery metrics.
#[derive(Clone)]
pub struct DeliveryMetrics {
    /// Attempts to deliver an item (each call to the target, retries included).
    pub attempts: IntCounterVec,
    /// Items a target accepted.
    pub delivered: IntCounterVec,
    /// Failed transactions by [`Failure`]: failed attempts, and records refused at
    /// mapping (those with empty `target` and `connector` when no target was reached).
    pub failed: IntCounterVec,
    /// Attempts that failed transiently and will be retried.
    pub retries: IntCounterVec,
    /// Answers 429 (or a quota signal saying so) from a target.
    pub throttled: IntCounterVec,
    /// Records not delivered because the target already has a newer version.
    pub stale: IntCounterVec,
    /// Posting time: from the record's source event (when the runner first received it,
    /// the envelope's `receivedAt`) to the target's acknowledgement.
    pub posting: HistogramVec,
    /// For inventory flows (a Mapping producing `InventorySnapshot`): when the source
    /// event of the newest record a channel acknowledged was received, Unix seconds.
    /// Its age (`time() - ...`) is the channel's inventory freshness.
    pub inventory_event: GaugeVec,
    /// Bytes of delivery items a target's worker holds in memory.
    pub held_bytes: IntGaugeVec,
}

impl DeliveryMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, extra: &[&'static str]| {
            let labels: Vec<&str> = TARGET.iter().chain(extra).copied().collect();
            let c = IntCounterVec::new(Opts::new(name, help), &labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let posting = HistogramVec::new(
            HistogramOpts::new(
                "entrepot_delivery_latency_seconds",
                "Posting time: from a record's source event (its first receipt) to the target's acknowledgement",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
            &TARGET,
        )
        .expect("valid metric");
        registry.register(Box::new(posting.clone())).expect("unique metric");
        let inventory_event = GaugeVec::new(
            Opts::new(
                "entrepot_inventory_last_event_timestamp_seconds",
                "Inventory flows: when the source event of the newest record a channel acknowledged was received (Unix seconds); time() minus it is the channel's freshness",
            ),
            &["flow", "target", "connector", "channel"],
        )
        .expect("valid metric");
        registry.register(Box::new(inventory_event.clone())).expect("unique metric");
        let held_bytes = IntGaugeVec::new(
            Opts::new(
                "entrepot_delivery_held_bytes",
                "Bytes of delivery items a target's worker holds in memory (at most spec.runner.queue.maxHeldBytes, or one item)",
            ),
            &TARGET,
        )
        .expect("valid metric");
        registry.register(Box::new(held_bytes.clone())).expect("unique metric");
        Self {
            attempts: counter(
                "entrepot_delivery_attempts_total",
                "Calls to a target to deliver an item, retries included",
                &[],
            ),
            delivered: counter("entrepot_records_delivered_total", "Records a target accepted", &[]),
            failed: counter(
                "entrepot_records_failed_total",
                "Failed transactions: failed delivery attempts and records refused at mapping, by category (transient, throttled, business, mapping, auth)",
                &["category"],
            ),
            retries: counter("entrepot_delivery_retries_total", "Delivery attempts that failed transiently", &[]),
            throttled: counter("entrepot_target_throttled_total", "Answers 429 Too Many Requests from a target", &[]),
            stale: counter("entrepot_records_stale_total", "Records older than the version the target has", &[]),
            posting,
            inventory_event,
            held_bytes,
        }
    }

    /// An attempt whose answer meant `verdict`.
    pub fn attempted(&self, at: TargetLabels<'_>, verdict: &Verdict) {
        self.attempts.with_label_values(&at.values()).inc();
        if let Some(failure) = Failure::of_verdict(verdict) {
            self.failed(at, failure, 1);
        }
    }

    /// `n` failed transactions of kind `failure`.
    pub fn failed(&self, at: TargetLabels<'_>, failure: Failure, n: u64) {
        let [flow, target, connector] = at.values();
        self.failed.with_label_values(&[flow, target, connector, failure.as_str()]).inc_by(n);
    }

    /// An item the target acknowledged at `now_ms`, whose source event was received at
    /// `event_ms`; `inventory` for a flow of inventory snapshots (the target is then a
    /// channel whose freshness this is).
    pub fn delivered(&self, at: TargetLabels<'_>, event_ms: i64, now_ms: i64, inventory: bool) {
        self.delivered.with_label_values(&at.values()).inc();
        self.posting.with_label_values(&at.values()).observe((now_ms - event_ms).max(0) as f64 / 1000.0);
        if inventory {
            let gauge = self.inventory_event.with_label_values(&[at.flow, at.target, at.connector, at.target]);
            // The newest event wins: a replayed or late record does not make a channel look older.
            let event = event_ms as f64 / 1000.0;
            if event > gauge.get() {
                gauge.set(event);
            }
        }
    }

    /// An item not delivered: the target already has a newer version.
    pub fn stale(&self, at: TargetLabels<'_>) {
        self.stale.with_label_values(&at.values()).inc();
    }

    /// A retry planned.
    pub fn retried(&self, at: TargetLabels<'_>) {
        self.retries.with_label_values(&at.values()).inc();
    }

    /// A throttling answer.
    pub fn throttled(&self, at: TargetLabels<'_>) {
        self.throttled.with_label_values(&at.values()).inc();
    }

    /// What the target's worker holds in memory now.
    pub fn held(&self, at: TargetLabels<'_>, bytes: usize) {
        self.held_bytes.with_label_values(&at.values()).set(bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: TargetLabels<'static> = TargetLabels { flow: "stock", target: "shopify", connector: "shopify-us" };

    fn value(text: &str, prefix: &str) -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn verdicts_fall_into_the_five_failure_categories() {
        let retry = |category| Verdict::Retry { reason: "r".into(), category, after: None };
        let reject = |category| Verdict::Reject { reason: "r".into(), category };
        assert_eq!(Failure::of_verdict(&Verdict::Delivered), None);
        assert_eq!(Failure::of_verdict(&retry(ErrorCategory::Throttled)), Some(Failure::Throttled));
        assert_eq!(Failure::of_verdict(&retry(ErrorCategory::Server)), Some(Failure::Transient));
        assert_eq!(Failure::of_verdict(&retry(ErrorCategory::Unreachable)), Some(Failure::Transient));
        assert_eq!(Failure::of_verdict(&retry(ErrorCategory::Auth)), Some(Failure::Auth));
        assert_eq!(Failure::of_verdict(&reject(ErrorCategory::Auth)), Some(Failure::Auth));
        assert_eq!(Failure::of_verdict(&reject(ErrorCategory::Rejected)), Some(Failure::Business));
        for reason in DeadLetterReason::ALL {
            let before_delivery = matches!(
                reason,
                DeadLetterReason::Mapping | DeadLetterReason::SchemaViolation | DeadLetterReason::InvalidRecord
            );
            assert_eq!(Failure::of_refusal(reason).is_some(), before_delivery, "{reason:?}");
        }
    }

    #[test]
    fn an_inventory_channel_keeps_its_newest_event_and_every_target_its_posting_time() {
        let registry = Registry::new();
        let m = DeliveryMetrics::register(&registry);
        m.delivered(AT, 10_000, 12_500, true);
        m.delivered(AT, 4_000, 13_000, true);
        m.attempted(AT, &Verdict::Reject { reason: "unknown SKU".into(), category: ErrorCategory::Rejected });
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        let labels = r#"connector="shopify-us",flow="stock",target="shopify""#;
        assert_eq!(value(&text, &format!("entrepot_records_delivered_total{{{labels}}}")), 2.0);
        assert_eq!(value(&text, &format!("entrepot_delivery_latency_seconds_count{{{labels}}}")), 2.0);
        assert_eq!(value(&text, &format!("entrepot_delivery_latency_seconds_sum{{{labels}}}")), 2.5 + 9.0);
        let channel = r#"channel="shopify",connector="shopify-us",flow="stock",target="shopify""#;
        assert_eq!(value(&text, &format!("entrepot_inventory_last_event_timestamp_seconds{{{channel}}}")), 10.0);
        assert_eq!(value(&text, &format!("entrepot_delivery_attempts_total{{{labels}}}")), 1.0);
        let failed = r#"category="business",connector="shopify-us",flow="stock",target="shopify""#;
        assert_eq!(value(&text, &format!("entrepot_records_failed_total{{{failed}}}")), 1.0);
    }
}
