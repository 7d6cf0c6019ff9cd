//! Listing one system's records for a reconciliation: every page of a list endpoint,
//! with the Connector's credentials, through the poll source's page and retry logic.

use std::sync::Arc;

use serde_json::Value;
use tracing::{info, warn};

use crate::{
    connect::ConnectorClient,
    source::poll::{
        PollSource, get_page,
        page::{self, Page, PageEnd},
    },
};

use entrepot_api::{
    mapping::{Program, from_value, to_value},
    resource::{Duration, ListingSpec, PollTrigger, RetrySpec},
};

/// A list request keeps following pages at most this often: a source whose pages never
/// end is a misconfigured pagination, not a big shop.
const MAX_PAGES: u64 = 100_000;

/// One side of a reconciliation, compiled: how to list it, and its jq paths.
#[derive(Debug)]
pub struct Listing {
    /// `spec.source` or `spec.target`, for messages.
    pub field: &'static str,
    source: PollSource,
    timestamp: Option<Program>,
    transform: Option<Program>,
}

impl Listing {
    /// Compiles `spec` (at `field`) for `client`. The window's start, when `sinceParam`
    /// names a parameter, is sent with the first page.
    pub fn new(
        field: &'static str,
        spec: &ListingSpec,
        window_start: &str,
        client: Arc<ConnectorClient>,
    ) -> Result<Self, (String, String)> {
        let mut query = spec.query.clone();
        if let Some(param) = &spec.since_param {
            query.insert(param.clone(), window_start.to_string());
        }
        let trigger = PollTrigger {
            interval: Duration::from_secs(0),
            path: spec.path.clone(),
            query,
            records: spec.records.clone(),
            pagination: spec.pagination.clone(),
            watermark: None,
            sql: None,
        };
        let source = PollSource::new(&trigger, client).map_err(|e| {
            let rest = e.field.trim_start_matches("spec.source.trigger.poll");
            (format!("{field}{rest}"), e.source.to_string())
        })?;
        let compile = |name: &str, code: &Option<String>| {
            code.as_deref()
                .map(|c| Program::compile(c, &Default::default()))
                .transpose()
                .map_err(|e| (format!("{field}.{name}"), e.to_string()))
        };
        Ok(Self {
            field,
            source,
            timestamp: compile("timestamp", &spec.timestamp)?,
            transform: compile("transform", &spec.transform)?,
        })
    }

    /// The Connector listed.
    pub fn connector(&self) -> &str {
        self.source.client().name()
    }

    /// Every record of every page, in the order listed.
    pub async fn list_all(&self, retry: &RetrySpec) -> Result<Vec<Value>, String> {
        let client = self.source.client();
        let trigger = self.source.trigger();
        let mut page = Page::First;
        let mut records = Vec::new();
        for pages in 1.. {
            let url = page::url(client.endpoint(), trigger, None, &page)?;
            let fetched = get_page(client, &url, retry, |failure, attempt, delay| {
                warn!(listing = self.field, connector = client.name(), path = url.path(), attempt,
                      retry_in_ms = delay.map(|d| d.as_millis() as u64), category = failure.category.as_str(),
                      error = %failure.message, "list request failed");
            })
            .await
            .map_err(|f| format!("GET {}: {}", url.path(), f.message))?;
            let content = self.source.read(&fetched.body).map_err(|e| format!("GET {}: {e}", url.path()))?;
            let count = content.records.len();
            records.extend(content.records);
            let end = PageEnd { url: &url, headers: &fetched.headers, cursor: content.cursor, records: count };
            match page::next(trigger.pagination.as_ref(), &page, end, client.endpoint())? {
                Some(next) if next != page && pages < MAX_PAGES => page = next,
                Some(_) if pages >= MAX_PAGES => {
                    return Err(format!("more than {MAX_PAGES} pages: check {}.pagination", self.field));
                }
                _ => break,
            }
        }
        info!(listing = self.field, connector = client.name(), records = records.len(), "listed");
        Ok(records)
    }

    /// Whether `record`'s time (at `timestamp`) is at or after `start`. A record without
    /// a readable time counts as in the window: drift is never hidden by a bad clock.
    pub fn in_window(&self, record: &Value, start: jiff::Timestamp) -> bool {
        let Some(program) = &self.timestamp else { return true };
        let time = program.run(from_value(record)).ok().and_then(|v| to_value(&v).ok());
        match time.as_ref().and_then(Value::as_str).and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
            Some(at) => at >= start,
            None => true,
        }
    }

    /// `record` through `transform`, when there is one.
    pub fn transformed(&self, record: &Value) -> Result<jaq_json::Val, String> {
        match &self.transform {
            Some(program) => program.run(from_value(record)).map_err(|e| format!("{}.transform: {e}", self.field)),
            None => Ok(from_value(record)),
        }
    }
}
