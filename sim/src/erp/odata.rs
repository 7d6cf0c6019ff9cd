//! What the OData flavours (Dynamics 365, SAP) share: a reply that can be sent over HTTP
//! or nested in a `$batch` answer, ETags, entity keys in the URL, opaque skip tokens and
//! the request's own origin for absolute links.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::Outcome;
use super::admission::ExternalId;
use super::error_body::ErrorDetail;
use super::sales_order::StoredOrder;

/// One answer of an OData flavour: kept as data so `$batch` can nest it and SAP's
/// repeatability can replay it.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) body: Option<Value>,
    pub(crate) outcome: Outcome,
    pub(crate) external_id: Option<String>,
}

impl Reply {
    pub(crate) fn new(status: StatusCode, outcome: Outcome, body: Option<Value>) -> Self {
        Self { status, headers: Vec::new(), body, outcome, external_id: None }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn about(mut self, external_id: &str) -> Self {
        self.external_id = Some(external_id.to_owned());
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = match &self.body {
            Some(body) => {
                let mut response = (self.status, axum::Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; odata.metadata=minimal"));
                response
            }
            None => self.status.into_response(),
        };
        for (name, value) in self.headers {
            // Every value is built here from ids, numbers and ASCII text.
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(name, value);
            }
        }
        response.extensions_mut().insert(self.outcome);
        if let Some(external_id) = self.external_id {
            response.extensions_mut().insert(ExternalId(external_id));
        }
        response
    }
}

/// The order's ETag: weak, opaque to clients, changing with every revision.
pub(crate) fn etag(order: &StoredOrder) -> String {
    format!("W/\"{}\"", URL_SAFE_NO_PAD.encode(format!("{}:{}", order.id, order.revision)))
}

/// What an `If-Match` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfMatch {
    /// No header.
    Absent,
    /// `*`: any current version.
    Any,
    /// This revision of the order with this internal id.
    Revision { id: u64, revision: u32 },
    /// Not an ETag this ERP ever gave.
    Unknown,
}

pub(crate) fn if_match(headers: &HeaderMap) -> IfMatch {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return IfMatch::Absent;
    };
    let value = value.to_str().unwrap_or_default().trim();
    if value == "*" {
        return IfMatch::Any;
    }
    let opaque = value.trim_start_matches("W/").trim_matches('"').to_owned();
    let decoded = URL_SAFE_NO_PAD.decode(opaque).ok().and_then(|bytes| String::from_utf8(bytes).ok());
    let parsed = decoded.as_deref().and_then(|text| {
        let (id, revision) = text.split_once(':')?;
        Some(IfMatch::Revision { id: id.parse().ok()?, revision: revision.parse().ok()? })
    });
    parsed.unwrap_or(IfMatch::Unknown)
}

/// The key in an entity URL segment: `salesOrders(42)`, `salesOrders(externalId='A-1')`
/// (an OData v4 alternate key) or `salesOrders('A-1')` (a string key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Internal(u64),
    External(String),
}

/// Parses `segment` as `<entity_set>(<key>)`; `None` if it is not one.
pub(crate) fn parse_key(segment: &str, entity_set: &str) -> Option<Key> {
    let inner = segment.strip_prefix(entity_set)?.strip_prefix('(')?.strip_suffix(')')?;
    let inner = inner.strip_prefix("externalId=").unwrap_or(inner);
    if let Some(quoted) = inner.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
        // OData doubles a quote inside a string literal.
        return Some(Key::External(quoted.replace("''", "'")));
    }
    inner.parse().ok().map(Key::Internal)
}

/// The order a key names.
pub(crate) fn find(ledger: &super::ledger::Ledger, key: &Key) -> Option<StoredOrder> {
    match key {
        Key::Internal(id) => ledger.get(*id).cloned(),
        Key::External(external_id) => ledger.by_external_id(external_id).cloned(),
    }
}

/// An opaque skip token: clients must send back what they were given, never build one.
pub(crate) fn skip_token(after_id: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("after:{after_id}"))
}

/// The internal id a skip token continues after; `None` for a token this ERP never gave.
pub(crate) fn read_skip_token(token: &str) -> Option<u64> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    String::from_utf8(bytes).ok()?.strip_prefix("after:")?.parse().ok()
}

/// `http://host:port` as the client addressed us, for absolute links.
pub(crate) fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|host| host.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

/// A PATCH merges the given top-level fields into the stored record.
pub(crate) fn merge(stored: &Value, patch: &Value) -> Option<Value> {
    let mut merged: Map<String, Value> = stored.as_object().cloned().unwrap_or_default();
    for (field, value) in patch.as_object()? {
        merged.insert(field.clone(), value.clone());
    }
    Some(Value::Object(merged))
}

/// The details of a business rejection as one line: `path: detail (code)`, `; `-separated.
pub(crate) fn describe(details: &[ErrorDetail]) -> String {
    details
        .iter()
        .map(|detail| match &detail.path {
            Some(path) => format!("{path}: {} ({})", detail.detail, detail.code),
            None => format!("{} ({})", detail.detail, detail.code),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_every_spelling() {
        assert_eq!(parse_key("salesOrders(42)", "salesOrders"), Some(Key::Internal(42)));
        assert_eq!(parse_key("salesOrders(externalId='A''s-1')", "salesOrders"), Some(Key::External("A's-1".into())));
        assert_eq!(parse_key("salesOrders('A-1')", "salesOrders"), Some(Key::External("A-1".into())));
        assert_eq!(parse_key("items(1)", "salesOrders"), None);
        assert_eq!(parse_key("salesOrders(x)", "salesOrders"), None);
    }

    #[test]
    fn skip_tokens_round_trip_and_strangers_are_refused() {
        assert_eq!(read_skip_token(&skip_token(17)), Some(17));
        assert_eq!(read_skip_token("17"), None);
    }
}
