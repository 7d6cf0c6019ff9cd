//! The operator's Prometheus metrics, served on `/metrics`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

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
    /// The flow of each schedule's drift series, by (namespace, schedule): what to
    /// remove when the schedule goes or compares another flow.
    drift_flows: Arc<Mutex<BTreeMap<(String, String), String>>>,
}

/// The `kind` label values of `entrepot_reconcile_drift_records`.
const DRIFT_KINDS: [&str; 3] = ["missing_in_target", "missing_in_source", "mismatched"];

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
        Self { registry, reconciles, failures, duration, drift, drift_flows: Arc::default() }
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
    /// The schedule's series of a flow it compared before are removed.
    pub fn reconcile_drift(&self, namespace: &str, schedule: &str, summary: &ReconcileSummary) {
        // Held until the series are set, so a removal never sees half of it.
        let mut flows = self.flows();
        let key = (namespace.to_string(), schedule.to_string());
        if let Some(before) = flows.insert(key, summary.flow.clone())
            && before != summary.flow
        {
            self.remove_drift(namespace, schedule, &before);
        }
        let records = [summary.missing_in_target, summary.missing_in_source, summary.mismatched];
        for (kind, records) in DRIFT_KINDS.into_iter().zip(records) {
            let gauge = self.drift.with_label_values(&[namespace, schedule, &summary.flow, kind]);
            gauge.set(i64::try_from(records).unwrap_or(i64::MAX));
        }
    }

    /// The schedule `schedule` in `namespace` compares `flow` now: its drift series of
    /// another flow (its `syncFlowRef` changed) are removed, so their alert stops.
    pub fn schedule_compares(&self, namespace: &str, schedule: &str, flow: &str) {
        let key = (namespace.to_string(), schedule.to_string());
        let mut flows = self.flows();
        if let Some(before) = flows.get(&key)
            && before != flow
        {
            self.remove_drift(namespace, schedule, before);
            flows.remove(&key);
        }
    }

    /// Removes the drift series of the schedule `schedule` in `namespace` (deleted), so
    /// its alert stops.
    pub fn forget_reconcile_drift(&self, namespace: &str, schedule: &str) {
        if let Some(flow) = self.flows().remove(&(namespace.to_string(), schedule.to_string())) {
            self.remove_drift(namespace, schedule, &flow);
        }
    }

    /// Removes the drift series of every schedule for which `exists(namespace, schedule)`
    /// is false: those deleted while no watch saw it.
    pub fn retain_reconcile_drift(&self, exists: impl Fn(&str, &str) -> bool) {
        self.flows().retain(|(namespace, schedule), flow| {
            let keep = exists(namespace, schedule);
            if !keep {
                self.remove_drift(namespace, schedule, flow);
            }
            keep
        });
    }

    fn flows(&self) -> MutexGuard<'_, BTreeMap<(String, String), String>> {
        // A panic elsewhere while holding it leaves the map whole: each change is one call.
        self.drift_flows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remove_drift(&self, namespace: &str, schedule: &str, flow: &str) {
        for kind in DRIFT_KINDS {
            // Absent already is no matter: the series is gone either way.
            let _ = self.drift.remove_label_values(&[namespace, schedule, flow, kind]);
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

    fn drift_of(flow: &str, missing: u64) -> ReconcileSummary {
        ReconcileSummary { flow: flow.into(), missing_in_target: missing, ..Default::default() }
    }

    /// The drift series of `schedule`, as rendered.
    fn series(metrics: &Metrics, schedule: &str) -> Vec<String> {
        let label = format!("schedule=\"{schedule}\"");
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("entrepot_reconcile_drift_records{") && l.contains(&label))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_schedule_comparing_another_flow_keeps_only_that_flows_series() {
        let metrics = Metrics::new();
        metrics.reconcile_drift("retail", "daily", &drift_of("orders", 3));
        metrics.reconcile_drift("retail", "daily", &drift_of("orders-v2", 1));
        let series = series(&metrics, "daily");
        assert_eq!(series.len(), 3, "{series:?}");
        assert!(series.iter().all(|l| l.contains("flow=\"orders-v2\"")), "{series:?}");
    }

    #[test]
    fn a_schedule_pointed_at_another_flow_loses_the_old_flows_series_at_once() {
        let metrics = Metrics::new();
        metrics.reconcile_drift("retail", "daily", &drift_of("orders", 3));
        metrics.schedule_compares("retail", "daily", "orders");
        assert_eq!(series(&metrics, "daily").len(), 3, "the same flow keeps them");
        metrics.schedule_compares("retail", "daily", "orders-v2");
        assert!(series(&metrics, "daily").is_empty());
    }

    #[test]
    fn a_forgotten_schedule_has_no_series_and_others_keep_theirs() {
        let metrics = Metrics::new();
        metrics.reconcile_drift("retail", "daily", &drift_of("orders", 3));
        metrics.reconcile_drift("retail", "hourly", &drift_of("orders", 1));
        metrics.reconcile_drift("wholesale", "daily", &drift_of("orders", 2));
        metrics.forget_reconcile_drift("retail", "daily");
        assert!(series(&metrics, "daily").iter().all(|l| l.contains("namespace=\"wholesale\"")));
        assert_eq!(series(&metrics, "daily").len(), 3);
        assert_eq!(series(&metrics, "hourly").len(), 3);
        metrics.forget_reconcile_drift("retail", "daily"); // twice is no matter

        metrics.retain_reconcile_drift(|namespace, _| namespace == "wholesale");
        assert!(series(&metrics, "hourly").is_empty());
        assert_eq!(series(&metrics, "daily").len(), 3, "the wholesale one stays");
    }
}
