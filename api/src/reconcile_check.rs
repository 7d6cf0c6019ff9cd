//! What a ReconcileSchedule must satisfy against the flow it names before a run can be
//! set up: the operator refuses a schedule that fails here, and the runner checks the
//! same before it lists anything.

use crate::{
    config::FlowConfig,
    mapping::Program,
    resource::{ListingSpec, Pagination, ReconcileScheduleSpec},
};

/// A field of a ReconcileSchedule that does not fit its flow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ReconcileSchedule {schedule}: {field}: {message}")]
pub struct InvalidSchedule {
    /// The schedule.
    pub schedule: String,
    /// The field at fault, e.g. `spec.compare.key`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// A schedule that fits its flow: what the checks found, for the run to use.
#[derive(Debug)]
pub struct CheckedSchedule {
    /// The index of the compared target in the flow's `spec.targets`.
    pub target: usize,
    /// `spec.compare.key`, compiled.
    pub key: Program,
    /// `spec.compare.fields`, compiled, in order.
    pub fields: Vec<Program>,
}

/// Checks schedule `name` against `flow` (the SyncFlow `spec.syncFlowRef` names,
/// resolved).
pub fn check(name: &str, spec: &ReconcileScheduleSpec, flow: &FlowConfig) -> Result<CheckedSchedule, InvalidSchedule> {
    let invalid =
        |field: &str, message: String| InvalidSchedule { schedule: name.into(), field: field.into(), message };
    if spec.sync_flow_ref != flow.name {
        return Err(invalid(
            "spec.syncFlowRef",
            format!("names SyncFlow `{}`, but the configuration given is SyncFlow `{}`", spec.sync_flow_ref, flow.name),
        ));
    }
    if spec.window.get().is_zero() {
        return Err(invalid("spec.window", "must be longer than 0s, e.g. 24h".into()));
    }
    let target = match &spec.target_connector_ref {
        None => 0,
        Some(c) => flow.spec.targets.iter().position(|t| &t.connector_ref == c).ok_or_else(|| {
            invalid(
                "spec.targetConnectorRef",
                format!("SyncFlow `{}` has no target with connectorRef `{c}`", flow.name),
            )
        })?,
    };
    if spec.source.transform.is_some() {
        return Err(invalid(
            "spec.source.transform",
            "source records go through the flow's Mappings; `transform` applies to the target listing only".into(),
        ));
    }
    let source_ref = &flow.spec.source.connector_ref;
    if flow.connectors.get(source_ref).and_then(|c| c.endpoint.as_deref()).is_none_or(str::is_empty) {
        return Err(invalid(
            "spec.source",
            format!("the flow's source Connector `{source_ref}` has no spec.endpoint to list records from; add one"),
        ));
    }
    let compile = |field: &str, code: &str| {
        Program::compile(code, &Default::default()).map_err(|e| invalid(field, e.to_string()))
    };
    let key = compile("spec.compare.key", &spec.compare.key)?;
    let fields = spec
        .compare
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| compile(&format!("spec.compare.fields[{i}]"), f))
        .collect::<Result<Vec<_>, _>>()?;
    for (field, listing) in [("spec.source", &spec.source), ("spec.target", &spec.target)] {
        check_listing(field, listing).map_err(|(f, m)| invalid(&f, m))?;
    }
    Ok(CheckedSchedule { target, key, fields })
}

/// The jq paths of one listing compile: `(field, message)` for the first that does not.
fn check_listing(field: &str, listing: &ListingSpec) -> Result<(), (String, String)> {
    let paging = match &listing.pagination {
        Some(Pagination::Cursor { field, .. }) => Some(("pagination.cursor.field", field)),
        Some(Pagination::NextUrl { field }) => Some(("pagination.nextUrl.field", field)),
        _ => None,
    };
    let programs = [("records", listing.records.as_ref()), ("timestamp", listing.timestamp.as_ref())]
        .into_iter()
        .chain([("transform", listing.transform.as_ref())])
        .chain(paging.map(|(name, code)| (name, Some(code))));
    for (name, code) in programs {
        if let Some(code) = code {
            Program::compile(code, &Default::default()).map_err(|e| (format!("{field}.{name}"), e.to_string()))?;
        }
    }
    Ok(())
}
