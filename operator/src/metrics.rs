//! The operator's Prometheus metrics, served on `/metrics`.

use std::time::Duration;

use entrepot_api::reconcile_summary::ReconcileSummary;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::error::{Category, Error};

/// Counters and timings of the controllers' reconciles. Labels come from fixed sets
/// (controller names, [`Category::ALL`]) so their number stays bounded.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    drift: IntGaugeVec,
}

impl Metrics {
    /// Registers the metrics in a registry of their own.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("entrepot_operator_reconciles_total", "Reconciles run, by controller."),
            &["controller"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "entrepot_operator_reconcile_failures_total",
                "Reconciles that failed, by controller and category.",
            ),
            &["controller", "category"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("entrepot_operator_reconcile_duration_seconds", "Time a reconcile took, by controller.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )
        .expect("valid metric");
        let drift = IntGaugeVec::new(
            Opts::new(
                "entrepot_reconcile_drift_records",
                "Records the last finished run of a ReconcileSchedule found differing between the two systems, by kind (missing_in_target, missing_in_source, mismatched).",
            ),
            &["namespace", "schedule", "flow", "kind"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(drift.clone()),
        ] {
            registry.register(collector).expect("metric registered once");
        }
        Self { registry, reconciles, failures, duration, drift }
    }

    /// Records one finished reconcile of `controller`.
    pub fn reconciled(&self, controller: &str, took: Duration, error: Option<&Error>) {
        self.reconciles.with_label_values(&[controller]).inc();
        self.duration.with_label_values(&[controller]).observe(took.as_secs_f64());
        if let Some(error) = error {
            self.failures.with_label_values(&[controller, error.category().as_str()]).inc();
        }
    }

    /// What the last finished run of the ReconcileSchedule `schedule` in `namespace`
    /// found (schedules, namespaces and flows are names from the manifests: bounded).
    pub fn reconcile_drift(&self, namespace: &str, schedule: &str, summary: &ReconcileSummary) {
        let kinds = [
            ("missing_in_target", summary.missing_in_target),
            ("missing_in_source", summary.missing_in_source),
            ("mismatched", summary.mismatched),
        ];
        for (kind, records) in kinds {
            let gauge = self.drift.with_label_values(&[namespace, schedule, &summary.flow, kind]);
            gauge.set(i64::try_from(records).unwrap_or(i64::MAX));
        }
    }

    /// Reconciles of `controller` finished so far.
    pub fn reconciles(&self, controller: &str) -> u64 {
        self.reconciles.with_label_values(&[controller]).get()
    }

    /// Failed reconciles of `controller` in `category` so far.
    pub fn failures(&self, controller: &str, category: Category) -> u64 {
        self.failures.with_label_values(&[controller, category.as_str()]).get()
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
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
    fn failures_are_counted_by_category() {
        let metrics = Metrics::new();
        metrics.reconciled("syncflow", Duration::from_millis(5), None);
        metrics.reconciled(
            "syncflow",
            Duration::from_millis(5),
            Some(&Error::refused(Category::InvalidObject, std::io::Error::other("no uid"))),
        );
        assert_eq!(metrics.reconciles("syncflow"), 2);
        assert_eq!(metrics.failures("syncflow", Category::InvalidObject), 1);
        let text = metrics.render();
        assert!(text.contains("entrepot_operator_reconciles_total{controller=\"syncflow\"} 2"), "{text}");
        assert!(!text.contains("entrepot_reconcile_drift_records{"), "no run, no drift series: {text}");
        assert!(
            text.contains(
                "entrepot_operator_reconcile_failures_total{category=\"invalid_object\",controller=\"syncflow\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_last_run_of_a_schedule_sets_its_drift_by_kind() {
        let metrics = Metrics::new();
        let summary = ReconcileSummary {
            schedule: "orders-daily".into(),
            flow: "orders".into(),
            missing_in_target: 3,
            mismatched: 1,
            ..Default::default()
        };
        metrics.reconcile_drift("retail", "orders-daily", &summary);
        metrics.reconcile_drift("retail", "orders-daily", &ReconcileSummary { mismatched: 2, ..summary });
        let text = metrics.render();
        let line = |kind: &str, n: u64| {
            format!(
                "entrepot_reconcile_drift_records{{flow=\"orders\",kind=\"{kind}\",namespace=\"retail\",schedule=\"orders-daily\"}} {n}"
            )
        };
        for (kind, n) in [("missing_in_target", 3), ("missing_in_source", 0), ("mismatched", 2)] {
            assert!(text.contains(&line(kind, n)), "{kind} {n}: {text}");
        }
    }
}
