//! A SyncFlow's source: the Connector records come from and what triggers reading them
//! (webhooks pushed to the runner, an API or database polled, files dropped).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// The source side of a flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// The Connector (same namespace) records come from.
    pub connector_ref: String,
    /// The source system's entity, e.g. `orders`.
    pub entity: String,
    /// What makes a record arrive.
    pub trigger: TriggerSpec,
}

/// What makes a record arrive. Exactly one trigger is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.webhook) ? 1 : 0) + (has(self.poll) ? 1 : 0) + (has(self.file) ? 1 : 0) == 1",
    "message": "set exactly one of webhook, poll or file"
}]))]
pub struct TriggerSpec {
    /// The source system pushes records to the runner's webhook endpoint
    /// `/webhooks/<flow name>`. Deliveries are verified with the source Connector's
    /// webhook signature and acknowledged only once durably queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTrigger>,
    /// The runner polls the source Connector's API on an interval, page by page, and
    /// remembers how far it got (a cursor or an `updated_at` watermark) across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollTrigger>,
    /// The runner imports files dropped in a directory (settlement reports, batch
    /// exports): each file once, even across restarts, each row a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileTrigger>,
}

impl TriggerSpec {
    /// Which triggers are set, by field name.
    pub fn set(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.webhook.is_some() {
            set.push("webhook");
        }
        if self.poll.is_some() {
            set.push("poll");
        }
        if self.file.is_some() {
            set.push("file");
        }
        set
    }
}

/// A webhook trigger.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookTrigger {
    /// Topics accepted, e.g. `orders/create`. A signed delivery of another topic is
    /// acknowledged and ignored. Empty: every topic is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// For thin webhooks that only name a record (BigCommerce's `{scope, data{type,id}}`):
    /// before mapping, the runner GETs the full record from the source Connector (its
    /// credentials, its quota) and maps that instead. Transient failures are retried; a
    /// `404` or another business refusal dead-letters the delivery with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refetch: Option<Refetch>,
}

/// Where the full record of a thin webhook is read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.path.contains('{id}')",
    "message": "path must contain {id}, where the record id goes, e.g. /v2/orders/{id}",
    "fieldPath": ".path",
    "reason": "FieldValueInvalid"
}]))]
pub struct Refetch {
    /// Path under the source Connector's endpoint, with `{id}` where the record id goes,
    /// e.g. `/v2/orders/{id}?include=consignments.line_items`.
    pub path: String,
    /// jq expression over the webhook payload giving the record id, e.g. `.data.id`.
    pub id: String,
}

/// A polling trigger: GET a list endpoint of the source Connector, page by page, with the
/// Connector's credentials (or, for a `postgres` Connector, run `sql` page by page). Each page's records are queued together with how far the poll
/// got, so a restarted runner goes on from the next page: nothing is queued twice, nothing
/// skipped. A record read again (an overlapping page) is dropped as a duplicate: its
/// delivery id is a hash of its content. Failed requests (transport errors, 408, 429,
/// 5xx) are retried with `delivery.retry` and the source's `Retry-After`; a 4xx ends the
/// poll, shows in the runner's status, and the next poll tries again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.path) && self.path != '') != (has(self.sql) && self.sql != '')",
    "message": "set path (an HTTP API source) or sql (a postgres source), one of them",
    "reason": "FieldValueInvalid"
}]))]
pub struct PollTrigger {
    /// Time between the end of one poll and the start of the next, e.g. `30s`.
    pub interval: Duration,
    /// Path under the source Connector's endpoint, e.g. `/admin/api/2026-10/orders.json`.
    /// Required for an HTTP API source.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// For a `postgres` source Connector: the query that reads one page of records,
    /// e.g. `SELECT * FROM items WHERE updated_at > $1::timestamptz ORDER BY updated_at
    /// LIMIT 500`. Each row becomes a record, a JSON object keyed by column (every type
    /// converts, through `to_jsonb`). With a `watermark`, `$1` is the highest
    /// `watermark.field` read so far, as text (cast it), starting from `watermark.initial`;
    /// the query must `ORDER BY` that column and may `LIMIT` the page: the next page asks
    /// from the new highest value (keyset pagination), and the run ends at a page that
    /// does not move it. Without a watermark the query runs once per poll, without
    /// parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Query parameters sent with the first page, e.g. `{status: any, limit: "250"}`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub query: std::collections::BTreeMap<String, String>,
    /// jq path to the array of records in a page, e.g. `.orders`. Default: where the
    /// source Connector's type puts them (`netsuite`: `.items`, `dynamics365`: `.value`,
    /// `sap-odata`: `.d.results`), else the page itself is the array. `null` counts as an
    /// empty page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// How the next page is found. Default: how the source Connector's type pages
    /// (`netsuite`, `dynamics365`, `sap-odata`: the next-page URL in the body); for other
    /// types, without it one page is read per poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    /// Incremental sync: the highest value of `field` seen so far is sent as query
    /// parameter `param` on the next poll, and kept across restarts. It moves once a poll
    /// has read its last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Watermark>,
}

/// How a poller finds the next page. Exactly one is set.
// No deny_unknown_fields here: on the empty `link` variant it would render
// `additionalProperties: false`, which the API server refuses in a structural schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Pagination {
    /// The `Link` response header's `rel="next"` URL (Shopify REST, GitHub-style APIs),
    /// absolute or relative, fetched as given. It must stay on the Connector's endpoint
    /// (scheme, host, port): the Connector's credentials go with it.
    Link {},
    /// An opaque cursor in the response body, sent back as a query parameter
    /// (`NextToken`, `nextCursor`, `page_info`).
    Cursor {
        /// jq path to the cursor in the page, e.g. `.pagination.nextToken`; on the last
        /// page it is absent, `null` or empty.
        field: String,
        /// Query parameter that carries it, e.g. `NextToken`.
        param: String,
    },
    /// The next page's URL in the response body (OData `@odata.nextLink` and `__next`,
    /// NetSuite's `links` rel=next), fetched as given. Like `link`, it must stay on the
    /// Connector's endpoint (scheme, host, port): the Connector's credentials go with it.
    NextUrl {
        /// jq path to the URL in the page, e.g. `."@odata.nextLink"`; on the last page it
        /// is absent, `null` or empty.
        field: String,
    },
    /// Offset and limit query parameters (NetSuite, BigCommerce `page`-less APIs).
    Offset {
        /// Query parameter of the offset, e.g. `offset`.
        param: String,
        /// Query parameter of the page size, e.g. `limit`.
        #[serde(rename = "limitParam")]
        limit_param: String,
        /// Records per page; a shorter page is the last one.
        #[serde(rename = "pageSize")]
        #[schemars(range(min = 1))]
        page_size: u32,
    },
}

/// An incremental-sync watermark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Watermark {
    /// jq path into each record of the value that grows with each change, e.g.
    /// `.updated_at`. RFC 3339 timestamps compare by the instant they name (whatever
    /// their offset), numbers numerically, other text as text.
    pub field: String,
    /// Query parameter that sends the highest value seen, e.g. `updated_at_min`, as the
    /// source wrote it. APIs read it as "at or after": the newest records are read again
    /// and dropped as duplicates. Required for an HTTP API source; a `sql` poll receives
    /// the value as `$1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub param: String,
    /// Value used before anything was seen, e.g. `2026-01-01T00:00:00Z`. Required for a
    /// `sql` poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
}

/// A file trigger: batch imports dropped in a directory (settlement reports, bulk
/// exports).
///
/// Every file is imported once, even across restarts: its rows are queued in chunks,
/// each chunk committed together with how far the file has been read, and the file is
/// moved to `processedDirectory` once every row is queued or dead-lettered. A row that
/// cannot be read (wrong number of fields, invalid UTF-8, invalid JSON) is dead-lettered
/// with its line number and the other rows go on.
///
/// Files still being written are left alone: a file is read only once its size and
/// modification time are the same at two scans in a row and it is at least 2 seconds
/// old. Writers should still write `report.csv.part` and rename it to `report.csv` when
/// complete, with `suffix: .csv`, so a half-written file is never taken for a whole one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.processedDirectory) || self.processedDirectory != self.directory",
    "message": "processedDirectory must differ from directory, or imported files would be read again"
}]))]
pub struct FileTrigger {
    /// Directory watched for files (a volume mounted in the runner pod). Files are read
    /// in name order; hidden files (`.name`) and subdirectories are ignored.
    #[schemars(length(min = 1))]
    pub directory: String,
    /// How each file is read: `csv` (first line is the header; each row becomes an object
    /// keyed by column, every value a string) or `jsonl` (one JSON value per line; blank
    /// lines are skipped).
    pub format: FileFormat,
    /// Only files whose name ends with this are read, e.g. `.csv`. Default: every file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Where a file is moved once every row is queued or dead-lettered. Default
    /// `<directory>/processed`; created when missing. It must be on the same volume as
    /// `directory` (the move is a rename). A file whose name is already taken there is
    /// kept beside it with its fingerprint appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_directory: Option<String>,
    /// Time between two scans of the directory. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// In a cluster: the PersistentVolumeClaim (same namespace) the files are dropped on.
    /// The operator mounts it at `directory` in the runner pods, so `processedDirectory`
    /// must be inside `directory`. Required by the operator; local mode reads the
    /// directory as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_name: Option<String>,
}

impl FileTrigger {
    /// Where imported files are moved: `processedDirectory`, or `<directory>/processed`.
    pub fn processed_directory(&self) -> std::path::PathBuf {
        match &self.processed_directory {
            Some(dir) => dir.into(),
            None => std::path::Path::new(&self.directory).join("processed"),
        }
    }

    /// Time between two scans: `interval`, or 10 seconds.
    pub fn interval(&self) -> std::time::Duration {
        self.interval.map_or(std::time::Duration::from_secs(10), Duration::get)
    }
}

/// File formats of a file trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// JSON Lines.
    Jsonl,
}
