//! `entrepot reconcile`: one run of a ReconcileSchedule. It lists the flow's source and
//! target over the window, maps the source's records through the flow's Mappings into the
//! target's shape, compares the two by `compare.key` and `compare.fields` (in `compare`,
//! pure), and with `action: repair` sends the source records the target lacks or holds
//! differently back through the flow (in `repair`).

mod compare;
mod listing;
mod repair;

use std::sync::Arc;

use jaq_json::Val;
use serde_json::Value;
use tracing::{Instrument, Span, info, warn};

pub use compare::{Comparison, Keyed, compare, same};
pub use entrepot_api::reconcile_summary::{
    DriftSamples, ReconcileFailure, ReconcileSummary, TERMINATION_MESSAGE_LIMIT,
};
pub use listing::Listing;
pub use repair::RunnerClient;

use crate::{
    connect::ConnectorClient,
    flow::{Flow, FlowError},
    secrets::Secrets,
    telemetry,
};

use entrepot_api::{
    config::FlowConfig,
    mapping::{Program, to_value},
    reconcile_check::{self, CheckedSchedule},
    resource::{ReconcileAction, ReconcileScheduleSpec},
};

/// A run cannot be set up or cannot finish.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The schedule does not fit its flow, or a jq path does not compile.
    #[error("ReconcileSchedule {schedule}: {field}: {message}")]
    Invalid {
        /// The schedule.
        schedule: String,
        /// The field at fault, e.g. `spec.compare.key`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The flow cannot be set up (its Mappings, its Connectors' credentials).
    #[error("ReconcileSchedule {schedule}: {source}")]
    Flow {
        /// The schedule.
        schedule: String,
        /// Why.
        source: Box<FlowError>,
    },
    /// A system could not be listed.
    #[error("ReconcileSchedule {schedule}: listing {field} (Connector {connector}): {message}")]
    List {
        /// The schedule.
        schedule: String,
        /// `spec.source` or `spec.target`.
        field: &'static str,
        /// The Connector.
        connector: String,
        /// What failed.
        message: String,
    },
    /// The repair could not be handed to the runner.
    #[error("ReconcileSchedule {schedule}: repair through the runner failed: {message}")]
    Repair {
        /// The schedule.
        schedule: String,
        /// What failed.
        message: String,
    },
}

/// A ReconcileSchedule ready to run against its flow.
#[derive(Debug)]
pub struct Reconciler {
    name: String,
    spec: ReconcileScheduleSpec,
    flow: Flow,
    target: usize,
    key: Program,
    fields: Vec<Program>,
    source_listing: Listing,
    target_listing: Listing,
    window_start: jiff::Timestamp,
    window_end: jiff::Timestamp,
}

impl Reconciler {
    /// Sets up schedule `name` against `flow` (the SyncFlow `spec.syncFlowRef` names,
    /// resolved) for a run at `now`.
    pub fn new(
        name: &str,
        spec: &ReconcileScheduleSpec,
        flow: FlowConfig,
        secrets: &Secrets,
        now: jiff::Timestamp,
    ) -> Result<Self, ReconcileError> {
        let invalid = |field: &str, message: String| ReconcileError::Invalid {
            schedule: name.into(),
            field: field.into(),
            message,
        };
        // The checks the operator also makes; what follows only builds.
        let CheckedSchedule { target, key, fields } =
            reconcile_check::check(name, spec, &flow).map_err(|e| invalid(&e.field, e.message))?;
        // Whole seconds: APIs take `updated_at_min` without fractions.
        let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
        let window = jiff::SignedDuration::try_from(spec.window.get()).unwrap_or(jiff::SignedDuration::MAX);
        let window_start = now.checked_sub(window).unwrap_or(jiff::Timestamp::MIN);
        let source_ref = flow.spec.source.connector_ref.clone();
        let flow_err = |e: FlowError| ReconcileError::Flow { schedule: name.into(), source: Box::new(e) };
        let flow = Flow::new(flow, secrets).map_err(flow_err)?;
        // A polled source already has a client in the flow; a webhook source is never
        // called by the runner, so it gets one here.
        let source_client = match flow.connectors.get(&source_ref) {
            Some(client) => client.clone(),
            None => {
                let spec = flow.config.connector(&source_ref);
                let client =
                    ConnectorClient::new(&source_ref, &flow.config.namespace, spec, secrets).map_err(|source| {
                        flow_err(FlowError::Connector { flow: flow.config.name.clone(), source: Box::new(source) })
                    })?;
                Arc::new(client)
            }
        };
        let target_client = flow.connectors[&flow.config.spec.targets[target].connector_ref].clone();
        let since = window_start.to_string();
        let listing = |field, spec, client| Listing::new(field, spec, &since, client).map_err(|(f, m)| invalid(&f, m));
        let source_listing = listing("spec.source", &spec.source, source_client)?;
        let target_listing = listing("spec.target", &spec.target, target_client)?;
        Ok(Self {
            name: name.into(),
            spec: spec.clone(),
            flow,
            target,
            key,
            fields,
            source_listing,
            target_listing,
            window_start,
            window_end: now,
        })
    }
}

impl Reconciler {
    /// The schedule's action.
    pub fn action(&self) -> ReconcileAction {
        self.spec.action
    }

    /// The flow compared.
    pub fn flow_name(&self) -> &str {
        self.flow.name()
    }

    /// Lists both systems, compares them, and with `repair` (the runner of the flow)
    /// sends what the target lacks or holds differently through the flow again.
    /// In a `reconcile` span (a trace of its own when traces are exported), whose
    /// correlation id names this run in every log line; the records a repair sends
    /// carry its trace context, so their spans in the runner hang under it.
    pub async fn run(&self, repair: Option<&RunnerClient>) -> Result<ReconcileSummary, ReconcileError> {
        let run_id = uuid::Uuid::now_v7().to_string();
        let span = tracing::info_span!("reconcile", schedule = %self.name, flow = %self.flow.name(),
                                       action = ?self.spec.action, correlation_id = %run_id);
        self.compare_and_repair(repair).instrument(span).await
    }

    async fn compare_and_repair(&self, repair: Option<&RunnerClient>) -> Result<ReconcileSummary, ReconcileError> {
        let (sources, targets) = tokio::try_join!(self.list(&self.source_listing), self.list(&self.target_listing))?;
        let mut summary = ReconcileSummary {
            schedule: self.name.clone(),
            flow: self.flow.name().to_string(),
            action: self.spec.action,
            window_start: self.window_start.to_string(),
            window_end: self.window_end.to_string(),
            ..ReconcileSummary::default()
        };
        let samples = self.spec.compare.samples as usize;
        let mut unreadable = Vec::new();
        let mut keyed_sources = Vec::new();
        let mut positions = Vec::new();
        for (i, record) in sources.iter().enumerate() {
            match self.shape_source(record).and_then(|shaped| self.keyed(&shaped)) {
                Ok((key, fields)) => {
                    keyed_sources.push(Keyed {
                        key,
                        fields,
                        in_window: self.source_listing.in_window(record, self.window_start),
                    });
                    positions.push(i);
                }
                Err(e) => unreadable.push(format!("source record {}: {e}", i + 1)),
            }
        }
        let mut keyed_targets = Vec::new();
        for (i, record) in targets.iter().enumerate() {
            match self.target_listing.transformed(record).and_then(|shaped| self.keyed(&shaped)) {
                Ok((key, fields)) => keyed_targets.push(Keyed {
                    key,
                    fields,
                    in_window: self.target_listing.in_window(record, self.window_start),
                }),
                Err(e) => unreadable.push(format!("target record {}: {e}", i + 1)),
            }
        }
        let found = compare(&keyed_sources, &keyed_targets, samples);
        summary.compared = found.compared;
        summary.matched = found.matched;
        summary.missing_in_target = found.missing_in_target;
        summary.missing_in_source = found.missing_in_source;
        summary.mismatched = found.mismatched;
        summary.unreadable = unreadable.len() as u64;
        summary.samples = found.samples;
        for reason in &unreadable {
            warn!(schedule = %self.name, reason = %reason, "record not compared");
        }
        summary.samples.unreadable = unreadable.into_iter().take(samples).collect();
        if let (ReconcileAction::Repair, Some(runner)) = (self.spec.action, repair)
            && !found.to_repair.is_empty()
        {
            let records: Vec<&Value> = found.to_repair.iter().map(|&k| &sources[positions[k]]).collect();
            // The repaired records' spans in the runner continue this run's trace.
            let trace = telemetry::traceparent(&Span::current(), None);
            let report = runner
                .enqueue(self.flow.name(), self.target as u32, &records, trace.as_deref())
                .await
                .map_err(|message| ReconcileError::Repair { schedule: self.name.clone(), message })?;
            summary.repaired = report.queued;
            info!(schedule = %self.name, queued = report.queued, already_queued = report.duplicates, "repair handed to the runner");
        }
        info!(schedule = %self.name, compared = summary.compared, matched = summary.matched,
              missing_in_target = summary.missing_in_target, missing_in_source = summary.missing_in_source,
              mismatched = summary.mismatched, repaired = summary.repaired, "reconciled");
        Ok(summary)
    }

    async fn list(&self, listing: &Listing) -> Result<Vec<Value>, ReconcileError> {
        listing.list_all(&self.flow.config.spec.delivery.retry).await.map_err(|message| ReconcileError::List {
            schedule: self.name.clone(),
            field: listing.field,
            connector: listing.connector().to_string(),
            message,
        })
    }

    /// A source record in the target's shape: through the flow's Mapping, then the
    /// compared target's.
    fn shape_source(&self, record: &Value) -> Result<Val, String> {
        let spec = &self.flow.config.spec;
        let input = entrepot_api::mapping::from_value(record);
        let canonical = match (&self.flow.mapping, &spec.mapping_ref) {
            (Some(p), Some(name)) => p.run(input).map_err(|e| format!("Mapping {name}: {e}"))?,
            _ => input,
        };
        let target = &self.flow.targets[self.target];
        match (&target.mapping, &spec.targets[self.target].mapping_ref) {
            (Some(p), Some(name)) => p.run(canonical).map_err(|e| format!("Mapping {name}: {e}")),
            _ => Ok(canonical),
        }
    }

    /// The compare key and fields of a record in the target's shape.
    fn keyed(&self, shaped: &Val) -> Result<(String, Vec<Value>), String> {
        let key = self.key.run_key(shaped).map_err(|e| format!("spec.compare.key: {e}"))?;
        let fields = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.run(shaped.clone())
                    .and_then(|v| to_value(&v))
                    .map_err(|e| format!("key {key}: spec.compare.fields[{i}]: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok((key, fields))
    }
}
