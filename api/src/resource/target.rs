//! A SyncFlow's targets: where records go, and how each is written (HTTP, GraphQL, a
//! database table), with a channel's share of stock.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One destination of a flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    /// The target's name within the flow, what queued records and dead letters name it
    /// by (so reordering `targets` never sends a queued record to another system).
    /// Defaults to `connectorRef`; set it when two targets share a Connector. Unique
    /// within the flow. Renaming a target while records are queued for it strands them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub name: Option<String>,
    /// The Connector (same namespace) records are sent to.
    // The bound (a Kubernetes object name's) keeps the CEL rule over target names within
    // the API server's cost budget.
    #[schemars(length(max = 253))]
    pub connector_ref: String,
    /// The target system's entity, e.g. `salesOrder`.
    pub entity: String,
    /// The Mapping (same namespace) from the canonical record to this target's payload.
    /// Without it the canonical record is sent as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_ref: Option<String>,
    /// `create` POSTs each record to the path; `upsert` PUTs it to `<path>/<ordering key>`.
    /// For a `postgres` Connector: `create` inserts, `upsert` inserts or updates by
    /// `table.key`.
    #[serde(default)]
    pub operation: Operation,
    /// Path under the Connector's endpoint. Defaults to `/<entity>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For a sales channel fed canonical `InventorySnapshot`s: how much of each
    /// location's stock this channel is shown. The snapshot's `available` is replaced by
    /// the channel's available-to-sell before this target's Mapping runs, so the Mapping
    /// reads `.available.value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<ChannelAvailability>,
    /// Send each record as a GraphQL mutation (Shopify Admin GraphQL): the body is
    /// `{"query": <mutation>, "variables": <the mapped record>}`, POSTed to `path` (e.g.
    /// `/admin/api/2026-10/graphql.json`). For `shopify` Connectors the record's
    /// idempotency key goes into `@idempotent(key:)` on the mutations that take it
    /// (`inventoryAdjustQuantities`, `inventorySetQuantities`, `refundCreate`), the query
    /// cost feeds the quota, `THROTTLED` is retried and `userErrors` dead-letter the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphql: Option<GraphqlWrite>,
    /// For a `postgres` Connector (required there, refused elsewhere): the table each
    /// record (a JSON object) is written to as a row. `upsert` writes
    /// `INSERT ... ON CONFLICT (key) DO UPDATE`, `create` a plain `INSERT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableSpec>,
}

impl TargetSpec {
    /// The target's name: `name`, or else `connectorRef`.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.connector_ref)
    }
}

/// A GraphQL mutation a target sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.mutation.matches('^[[:space:]]*mutation')",
    "message": "mutation must be a GraphQL mutation document, starting with `mutation`",
    "fieldPath": ".mutation",
    "reason": "FieldValueInvalid"
}]))]
pub struct GraphqlWrite {
    /// The mutation document, with its variables declared, e.g.
    /// `mutation Set($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { userErrors { field message code } } }`.
    /// At most 32 KiB.
    // The bound keeps the CEL rule within the API server's cost budget.
    #[schemars(length(max = 32768))]
    pub mutation: String,
}

/// Available-to-sell for one channel: on hand − reserved − safety stock, of which the
/// channel gets `percent`, capped at `max`, rounded down to a whole unit and never
/// negative. When the snapshot's own `available` is lower than on hand − reserved (stock
/// on hold, damaged), that lower figure is used instead.
///
/// Give each channel its `percent` so that together they do not exceed 100: then no two
/// channels can sell the same unit, and nothing is oversold while a snapshot is on its way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelAvailability {
    /// Units held back from this channel at every location, for mis-picks and counts
    /// that lag (e.g. `2`). Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0.0))]
    pub safety_stock: f64,
    /// Safety stock for particular SKUs, replacing `safetyStock` for them, e.g.
    /// `{SKU-TEE-M: 10}` for a best-seller.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub safety_stock_by_sku: std::collections::BTreeMap<String, f64>,
    /// The share of what remains after safety stock that this channel may sell, in
    /// percent (e.g. `60` for a marketplace that gets 60% of the stock). Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: Option<f64>,
    /// The most this channel is ever shown per SKU and location, e.g. `50` for a
    /// flash-sale channel. Default: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max: Option<f64>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The table a `postgres` target writes. Records are written in one transaction per
/// batch; a row the database refuses (a constraint, a wrong type, an unknown column) is
/// dead-lettered with the database's message, and the rest of its batch is written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.columns) && size(self.columns) > 0) || has(self.recordColumn)",
    "message": "declare the columns this target may write (columns), or a recordColumn for the whole record",
    "fieldPath": ".columns",
    "reason": "FieldValueRequired"
}]))]
pub struct TableSpec {
    /// The table, optionally schema-qualified: `sales_orders` or `warehouse.sales_orders`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The columns of the table's primary key or of a unique constraint, e.g.
    /// `[order_id]`: the conflict target of the upsert. Each is read from the record's
    /// field of the same name, which every record must have.
    #[schemars(length(min = 1))]
    pub key: Vec<String>,
    /// The columns written, each from the record's field of the same name (a missing
    /// field writes NULL; a field that is not listed is not written). Required unless
    /// `recordColumn` is set, and then defaults to the key columns: which columns a
    /// record may write is the manifest's choice, never the record's. Values are converted
    /// to the column's type by the database (`jsonb_populate_record`): JSON numbers to
    /// numeric columns, RFC 3339 strings to `timestamptz`, objects and arrays to `jsonb`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// A `jsonb` column that receives the whole record, e.g. `document`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_column: Option<String>,
}

impl TargetSpec {
    /// The path under the endpoint that records are sent to.
    pub fn path(&self) -> String {
        self.path.clone().unwrap_or_else(|| format!("/{}", self.entity))
    }
}

/// How a record is written to a target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    /// POST a new record.
    #[default]
    Create,
    /// PUT the record under its key, creating or replacing it.
    Upsert,
}
