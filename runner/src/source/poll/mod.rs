//! The poller source (`spec.source.trigger.poll`): every `interval`, GET the source
//! Connector's list endpoint page by page with the Connector's credentials (or, for a
//! database, run its `sql`: see `sql`), queue each page's records together with the
//! run's progress, and send the highest watermark seen with the next run. How a crash is survived is in `progress`; the run itself in `run`.

pub mod page;
mod progress;
mod run;
mod sql;
mod watermark;

#[cfg(test)]
mod marketplace_tests;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, sync::Arc};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use page::Page;
pub(crate) use run::get_page;
pub use run::{Poller, RunEnd, RunReport};

use crate::connect::ConnectorClient;

use entrepot_api::{
    mapping::{CompileError, Program, from_value, parse_json, to_value},
    resource::{Pagination, PollTrigger},
};

/// A poll trigger's jq path does not compile.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {source}")]
pub struct PollSetupError {
    /// The field, e.g. `spec.source.trigger.poll.records`.
    pub field: &'static str,
    /// The compiler's message.
    pub source: CompileError,
}

/// A poll trigger, compiled: its jq paths and the source Connector's client.
#[derive(Debug)]
pub struct PollSource {
    trigger: PollTrigger,
    client: Arc<ConnectorClient>,
    records: Option<Program>,
    cursor: Option<Program>,
    watermark: Option<Program>,
    /// For a `sql` poll, the source Connector's database.
    database: Option<crate::postgres::Database>,
}

/// What one page held.
pub(crate) struct PageContent {
    /// The records.
    pub records: Vec<Value>,
    /// For cursor pagination, the next cursor.
    pub cursor: Option<String>,
}

impl PollSource {
    /// Compiles `trigger`'s jq paths; `client` is the source Connector's. Where the
    /// trigger leaves `records` or `pagination` out, the Connector's type fills them in
    /// (`protocol::System::poll_defaults`).
    pub fn new(trigger: &PollTrigger, client: Arc<ConnectorClient>) -> Result<Self, PollSetupError> {
        let compile = |field: &'static str, code: &str| {
            Program::compile(code, &BTreeMap::new()).map_err(|source| PollSetupError { field, source })
        };
        let mut trigger = trigger.clone();
        let defaults = client.system().poll_defaults();
        trigger.records = trigger.records.or(defaults.records);
        trigger.pagination = trigger.pagination.or(defaults.pagination);
        let records = trigger.records.as_deref().map(|c| compile("spec.source.trigger.poll.records", c)).transpose()?;
        let cursor = match &trigger.pagination {
            Some(Pagination::Cursor { field, .. }) => {
                Some(compile("spec.source.trigger.poll.pagination.cursor.field", field)?)
            }
            Some(Pagination::NextUrl { field }) => {
                Some(compile("spec.source.trigger.poll.pagination.nextUrl.field", field)?)
            }
            _ => None,
        };
        let watermark = trigger
            .watermark
            .as_ref()
            .map(|w| compile("spec.source.trigger.poll.watermark.field", &w.field))
            .transpose()?;
        Ok(Self { trigger, client, records, cursor, watermark, database: None })
    }

    /// The source is a database: `sql` is run against it rather than `path` fetched.
    pub fn with_database(mut self, database: crate::postgres::Database) -> Self {
        self.database = Some(database);
        self
    }

    /// The database a `sql` poll reads.
    pub fn database(&self) -> Option<&crate::postgres::Database> {
        self.database.as_ref()
    }

    /// The source Connector's client.
    pub fn client(&self) -> &ConnectorClient {
        &self.client
    }

    /// The trigger as written, with the Connector type's defaults filled in.
    pub fn trigger(&self) -> &PollTrigger {
        &self.trigger
    }

    /// The records of a page (at `records`, an array; `null` counts as none) and, for
    /// cursor and next-URL pagination, the next cursor or URL (`null`, absent or empty:
    /// none).
    pub(crate) fn read(&self, body: &[u8]) -> Result<PageContent, String> {
        let page = parse_json(body).map_err(|e| format!("the page is not JSON: {e}"))?;
        let cursor = match &self.cursor {
            None => None,
            Some(program) => {
                let value = program.run(page.clone()).map_err(|e| format!("pagination.cursor.field: {e}"))?;
                match to_value(&value).map_err(|e| e.to_string())? {
                    Value::String(s) => Some(s),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            }
        };
        let found = match &self.records {
            Some(program) => to_value(&program.run(page).map_err(|e| format!("records: {e}"))?),
            None => to_value(&page),
        }
        .map_err(|e| e.to_string())?;
        let records = match found {
            Value::Array(records) => records,
            Value::Null => Vec::new(),
            other => {
                let path = self.trigger.records.as_deref().unwrap_or(".");
                return Err(format!(
                    "`records` (`{path}`) gave {}, not an array of records",
                    crate::protocol::json_kind(&other)
                ));
            }
        };
        Ok(PageContent { records, cursor })
    }

    /// The record's watermark value, when the trigger has a watermark and the record
    /// the field.
    fn watermark_of(&self, record: &Value) -> Option<Value> {
        let program = self.watermark.as_ref()?;
        program.run(from_value(record)).ok().and_then(|v| to_value(&v).ok()).filter(|v| !v.is_null())
    }
}

/// A polled record's delivery id: a hash of its content, keys sorted. Reading the same
/// record again (an overlapping page, a page fetched again after a crash) gives the
/// same id and the queue drops it; a changed record is a new delivery.
pub fn delivery_id(record: &Value) -> String {
    format!("poll:{}", content_digest(record))
}

/// A hash (128 bits, hex) of a record's content, whatever order its keys were written in.
pub fn content_digest(record: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(record, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted, whatever order the source wrote them in.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}
