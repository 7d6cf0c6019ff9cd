//! Checks on parts of a SyncFlow against the Connectors they use: its mode and trigger,
//! a poll trigger and its jq paths, a file trigger, a target's table. Each returns the
//! field at fault and what to do; [`crate::config`] turns that into a `ResolveError`.

use std::{collections::BTreeMap, path::Path};

use crate::{
    mapping::Program,
    resource::{ConnectorType, FileTrigger, FlowMode, Pagination, PollTrigger, SyncFlowSpec, TargetSpec},
};

/// `mode`, `schedule` and the trigger agree: (field, what is wrong) for the first problem.
/// The cron syntax itself is checked by the operator, which schedules the runs.
pub(crate) fn check_mode(spec: &SyncFlowSpec) -> Result<(), (&'static str, &'static str)> {
    let has_schedule = spec.schedule.as_deref().is_some_and(|s| !s.trim().is_empty());
    match spec.mode {
        FlowMode::Batch if spec.source.trigger.webhook.is_some() => Err((
            "spec.mode",
            "a webhook source must always be up to answer its sender: use mode continuous, or a poll or file trigger",
        )),
        FlowMode::Batch if !has_schedule => {
            Err(("spec.schedule", "a batch flow needs a schedule (cron syntax, e.g. `0 2 * * *`)"))
        }
        FlowMode::Continuous if has_schedule || spec.time_zone.is_some() => Err((
            "spec.schedule",
            "a continuous flow runs all the time: remove schedule and timeZone, or set mode: batch",
        )),
        _ => Ok(()),
    }
}

/// The runner workload fits its queue: several runners only on a shared queue.
pub(crate) fn check_runner(spec: &SyncFlowSpec) -> Result<(), (&'static str, String)> {
    let runner = &spec.runner;
    if runner.replicas > 1 && runner.queue.jetstream.is_none() {
        return Err((
            "spec.runner.replicas",
            format!(
                "{} runners would each keep their own embedded queue (records sent twice, keys out of order, \
                 records stranded on a removed pod): set spec.runner.queue.jetstream to share the flow's queue, \
                 or use 1 runner",
                runner.replicas
            ),
        ));
    }
    Ok(())
}

/// A poll trigger fits its Connector: `path` for an HTTP API, `sql` for a database.
pub(crate) fn check_poll(
    poll: &PollTrigger,
    connector: &str,
    kind: ConnectorType,
) -> Result<(), (&'static str, String)> {
    let paging = match &poll.pagination {
        Some(Pagination::Cursor { field, .. }) => Some(("spec.source.trigger.poll.pagination.cursor.field", field)),
        Some(Pagination::NextUrl { field }) => Some(("spec.source.trigger.poll.pagination.nextUrl.field", field)),
        _ => None,
    };
    let programs = [
        ("spec.source.trigger.poll.records", poll.records.as_ref()),
        ("spec.source.trigger.poll.watermark.field", poll.watermark.as_ref().map(|w| &w.field)),
    ]
    .into_iter()
    .chain(paging.map(|(field, code)| (field, Some(code))));
    for (field, code) in programs {
        if let Some(code) = code {
            Program::compile(code, &BTreeMap::new()).map_err(|e| (field, e.to_string()))?;
        }
    }
    let sql = poll.sql.as_deref().is_some_and(|q| !q.trim().is_empty());
    if kind != ConnectorType::Postgres {
        if sql {
            return Err((
                "spec.source.trigger.poll.sql",
                format!("Connector `{connector}` is not a database: use path, or a Connector of type postgres"),
            ));
        }
        if poll.path.trim().is_empty() {
            return Err((
                "spec.source.trigger.poll.path",
                "set the path of the list endpoint, e.g. /admin/api/2026-10/orders.json".into(),
            ));
        }
        if poll.watermark.as_ref().is_some_and(|w| w.param.trim().is_empty()) {
            return Err((
                "spec.source.trigger.poll.watermark.param",
                "set the query parameter that sends the watermark, e.g. updated_at_min".into(),
            ));
        }
        return Ok(());
    }
    if !sql {
        return Err((
            "spec.source.trigger.poll.sql",
            format!("Connector `{connector}` is a database: set sql, the query that reads a page of records"),
        ));
    }
    if !poll.path.is_empty() || poll.pagination.is_some() || poll.records.is_some() || !poll.query.is_empty() {
        return Err((
            "spec.source.trigger.poll",
            "a sql poll reads rows: path, query, records and pagination are for HTTP APIs (pages follow the watermark)"
                .into(),
        ));
    }
    if let Some(w) = &poll.watermark {
        if w.initial.as_deref().is_none_or(|i| i.trim().is_empty()) {
            return Err((
                "spec.source.trigger.poll.watermark.initial",
                "a sql poll sends the watermark as $1: set initial, the value before any row was read, e.g. 1970-01-01T00:00:00Z".into(),
            ));
        }
        if !w.param.is_empty() {
            return Err((
                "spec.source.trigger.poll.watermark.param",
                "a sql poll receives the watermark as $1: remove param".into(),
            ));
        }
    }
    Ok(())
}

/// A target's `table` fits its Connector: required for a database, refused elsewhere.
pub(crate) fn check_table(target: &TargetSpec, kind: ConnectorType) -> Result<(), (String, String)> {
    match (&target.table, kind) {
        (None, ConnectorType::Postgres) => Err((
            "table".into(),
            format!("Connector `{}` is a database: set table (name and key columns)", target.connector_ref),
        )),
        (Some(table), ConnectorType::Postgres) => super::postgres::check_table(table)
            .map(drop)
            .map_err(|(field, message)| (format!("table.{field}"), message)),
        (Some(_), _) => {
            Err(("table".into(), format!("Connector `{}` is not a database: remove table", target.connector_ref)))
        }
        (None, _) => Ok(()),
    }
}

/// A file trigger's own fields: (field, what is wrong) for the first problem.
pub(crate) fn check_file_trigger(file: &FileTrigger) -> Result<(), (&'static str, &'static str)> {
    if file.directory.trim().is_empty() {
        return Err(("spec.source.trigger.file.directory", "a file trigger needs the directory to watch"));
    }
    // Compared by path components, so `/in/` and `/in` are the same directory.
    if Path::new(&file.directory).components().eq(file.processed_directory().components()) {
        return Err((
            "spec.source.trigger.file.processedDirectory",
            "must differ from directory, or imported files would be read again; leave it out for <directory>/processed",
        ));
    }
    if file.interval() == std::time::Duration::ZERO {
        return Err(("spec.source.trigger.file.interval", "must be longer than 0s, e.g. 10s"));
    }
    Ok(())
}
