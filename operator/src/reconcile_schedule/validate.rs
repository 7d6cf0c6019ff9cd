//! Validation: whether a ReconcileSchedule, its SyncFlow and what that references can be
//! run. Pure: the referenced objects are passed in, already read.

use crate::error::Category;
use entrepot_api::{config::FlowConfig, reconcile_check, resource::SyncFlowSpec};

use crate::sync_flow::validate::{self as flow_validate, References};

/// Appended to a schedule's name to name its CronJob.
pub const CRON_JOB_SUFFIX: &str = "-reconcile";
/// Longest schedule name whose CronJob name fits: Kubernetes appends 11 characters to a
/// CronJob's name for each Job, and a Job name must stay within 63.
pub const MAX_SCHEDULE_NAME: usize = 52 - CRON_JOB_SUFFIX.len();

/// Why a ReconcileSchedule cannot be run as written. Reported as `Stalled=True`; its
/// CronJob, if any, is left as it was.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// The ReconcileSchedule itself cannot be read as one.
    #[error("ReconcileSchedule {schedule}: the spec cannot be read: {error}; fix the field it names")]
    UnreadableSpec {
        /// The schedule.
        schedule: String,
        /// The parser's message.
        error: String,
    },
    /// `spec.syncFlowRef` names no SyncFlow.
    #[error(
        "ReconcileSchedule {schedule}: spec.syncFlowRef refers to SyncFlow `{flow}`, which does not exist in namespace {namespace}"
    )]
    SyncFlowNotFound {
        /// The schedule.
        schedule: String,
        /// The missing flow.
        flow: String,
        /// The namespace.
        namespace: String,
    },
    /// The SyncFlow cannot be run, so neither can the schedule.
    #[error("ReconcileSchedule {schedule}: spec.syncFlowRef: {source}")]
    SyncFlow {
        /// The schedule.
        schedule: String,
        /// What is wrong with the flow.
        source: Box<flow_validate::Invalid>,
    },
    /// A field of the schedule is wrong.
    #[error("ReconcileSchedule {schedule}: {field}: {message}")]
    Field {
        /// The schedule.
        schedule: String,
        /// The field at fault.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The schedule does not fit its flow (the runner's own checks, as a run would fail).
    #[error("{0}")]
    Run(String),
}

impl From<Invalid> for crate::error::Error {
    fn from(invalid: Invalid) -> Self {
        let category = if invalid.is_missing_reference() { Category::ReferenceMissing } else { Category::InvalidSpec };
        Self::refused(category, invalid)
    }
}

impl Invalid {
    /// The condition reason: `SyncFlowNotFound`, `SyncFlowInvalid` or `InvalidSpec`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SyncFlowNotFound { .. } => "SyncFlowNotFound",
            Self::SyncFlow { .. } => "SyncFlowInvalid",
            _ => "InvalidSpec",
        }
    }

    /// Whether the schedule waits for a referenced object to be created.
    pub fn is_missing_reference(&self) -> bool {
        match self {
            Self::SyncFlowNotFound { .. } => true,
            Self::SyncFlow { source, .. } => source.is_missing_reference(),
            _ => false,
        }
    }
}

/// What a valid schedule has been checked into.
#[derive(Clone, Debug)]
pub struct Validated {
    /// The flow, resolved.
    pub flow: FlowConfig,
    /// The parsed schedule.
    pub cron: croner::Cron,
    /// The time zone the schedule is read in.
    pub time_zone: jiff::tz::TimeZone,
}

/// The flow a schedule names, as read: absent, unreadable (the parser's message), or its spec.
pub type FlowRef = Option<Result<SyncFlowSpec, String>>;

/// Checks schedule `name` of `namespace`, with its flow and what the flow references.
pub fn validate(
    name: &str,
    namespace: &str,
    spec: &entrepot_api::resource::ReconcileScheduleSpec,
    flow: &FlowRef,
    refs: &References,
) -> Result<Validated, Invalid> {
    let field = |field: &str, message: String| Invalid::Field { schedule: name.into(), field: field.into(), message };
    if name.len() > MAX_SCHEDULE_NAME || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(field(
            "metadata.name",
            format!(
                "the CronJob `{name}{CRON_JOB_SUFFIX}` needs a name Kubernetes can suffix for its Jobs: rename the \
                 ReconcileSchedule (at most {MAX_SCHEDULE_NAME} characters, starting with a letter)"
            ),
        ));
    }
    let cron = parse_schedule(&spec.schedule).map_err(|m| field("spec.schedule", m))?;
    let time_zone = match &spec.time_zone {
        None => jiff::tz::TimeZone::UTC,
        Some(tz) => jiff::tz::TimeZone::get(tz).map_err(|_| {
            field("spec.timeZone", format!("`{tz}` is not an IANA time zone; write it like Europe/Paris or UTC"))
        })?,
    };
    let flow_spec = match flow {
        None => {
            return Err(Invalid::SyncFlowNotFound {
                schedule: name.into(),
                flow: spec.sync_flow_ref.clone(),
                namespace: namespace.into(),
            });
        }
        Some(Err(error)) => {
            let source =
                flow_validate::Invalid::UnreadableSpec { flow: spec.sync_flow_ref.clone(), error: error.clone() };
            return Err(Invalid::SyncFlow { schedule: name.into(), source: Box::new(source) });
        }
        Some(Ok(flow_spec)) => flow_spec,
    };
    let config = flow_validate::validate(&spec.sync_flow_ref, namespace, flow_spec, refs)
        .map_err(|source| Invalid::SyncFlow { schedule: name.into(), source: Box::new(source) })?;
    // The run's own set-up: jq paths, the compared target, the source's endpoint.
    reconcile_check::check(name, spec, &config).map_err(|e| Invalid::Run(e.to_string()))?;
    Ok(Validated { flow: config, cron, time_zone })
}

/// A schedule in the CronJob's syntax: five fields (minute, hour, day of month, month,
/// day of week) or a macro such as `@hourly`. `TZ=` inside it is refused, as Kubernetes
/// does: the time zone goes in `spec.timeZone`.
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    if schedule.contains("TZ=") {
        return Err("set the time zone in spec.timeZone, not in the schedule".into());
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| format!("`{schedule}` is not a cron schedule ({e}); write five fields like `0 * * * *` (hourly)"))
}

/// The first run due strictly after `now`.
pub fn next_run(cron: &croner::Cron, time_zone: &jiff::tz::TimeZone, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    cron.find_next_occurrence(&now.to_zoned(time_zone.clone()), false).ok().map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_read_like_a_cron_job_and_the_next_run_follows_the_time_zone() {
        let hourly = parse_schedule("0 * * * *").unwrap();
        let now: jiff::Timestamp = "2026-03-29T00:30:00Z".parse().unwrap();
        let next = next_run(&hourly, &jiff::tz::TimeZone::UTC, now).unwrap();
        assert_eq!(next.to_string(), "2026-03-29T01:00:00Z");
        // 02:00 in Paris on the night clocks go forward: 03:00 CEST is 01:00 UTC.
        let daily_two = parse_schedule("0 2 * * *").unwrap();
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let next = next_run(&daily_two, &paris, "2026-03-28T12:00:00Z".parse().unwrap()).unwrap();
        assert_eq!(next.to_string(), "2026-03-29T01:00:00Z");
        assert!(parse_schedule("@daily").is_ok());
        for bad in ["0 * * *", "61 * * * *", "0 0 * * * *", "TZ=UTC 0 * * * *", "soon"] {
            let err = parse_schedule(bad).unwrap_err();
            assert!(err.contains("spec.timeZone") || err.contains("five fields"), "{bad}: {err}");
        }
    }
}
