//! `type: dynamics365`: Dynamics 365 OData v4 APIs (Business Central, Finance &
//! Operations; external-API reference §8).
//!
//! - `create` is a `POST` to the entity set (`201`).
//! - `upsert` reads the record by its key as an OData alternate key,
//!   `<path>(externalId='<key>')`: absent, it is created; present, it is `PATCH`ed under
//!   `If-Match` with the ETag just read. A `412` (changed in between) reads it again and
//!   patches once more within the attempt; a second one is retried later.
//! - `429` + `Retry-After` is rate throttling (Finance & Operations' resource-based
//!   limits): the generic rule retries after it and the quota governor pauses every
//!   sender until then. A `429` without it is Business Central refusing one request too
//!   many in flight (5 running, 95 queued): the governor shrinks the Connector's slots.
//! - Polls: records at `.value`, the next page at `@odata.nextLink` (kept on the
//!   Connector's endpoint).
//! - Not done: `$batch` (up to 100 records per request); each record is one request.

use reqwest::{
    StatusCode,
    header::{HeaderMap, HeaderValue, RETRY_AFTER},
};

use futures::future::BoxFuture;

use super::{
    Answer, Channel, PollDefaults, QuotaSignal, System, Unfit, Verdict, Write, WriteContext, odata, urlencode,
};
use entrepot_api::resource::{ConnectorSpec, Operation, Pagination};

/// A Dynamics 365 Connector keeps nothing between requests: ETags are read per write.
#[derive(Clone, Copy, Debug)]
pub struct Dynamics365;

impl System for Dynamics365 {
    fn for_connector(&self, _spec: &ConnectorSpec) -> Result<Box<dyn System>, Unfit> {
        Ok(Box::new(*self))
    }

    fn write(&self, write: &mut Write, _context: WriteContext<'_>) {
        self::write(write)
    }

    fn exchange<'a>(
        &'a self,
        channel: &'a dyn Channel,
        write: &'a Write,
        context: WriteContext<'a>,
    ) -> BoxFuture<'a, Option<Answer>> {
        Box::pin(exchange(channel, write, context))
    }

    fn poll_defaults(&self) -> PollDefaults {
        poll_defaults()
    }

    fn read_quota(&self, status: StatusCode, headers: &HeaderMap, _body: &str, signal: &mut QuotaSignal) {
        read_quota(status, headers, signal)
    }

    fn classify(&self, answer: &Answer) -> Option<Verdict> {
        odata::classify(answer)
    }
}

/// A `429` that names no time to come back refuses a request in flight, not the rate.
fn read_quota(status: StatusCode, headers: &HeaderMap, signal: &mut QuotaSignal) {
    signal.concurrency = status == StatusCode::TOO_MANY_REQUESTS && !headers.contains_key(RETRY_AFTER);
}

/// OData's JSON media type on every write.
fn write(write: &mut Write) {
    write.headers.insert("accept", HeaderValue::from_static("application/json"));
    write.headers.insert("odata-version", HeaderValue::from_static("4.0"));
}

/// `<path>(externalId='<key>')`, the quote doubled as OData string literals need.
fn entity_url(base: &str, key: &str) -> String {
    format!("{base}(externalId='{}')", urlencode(&key.replace('\'', "''")))
}

/// An upsert reads, then creates or patches under `If-Match`; a create is left to the
/// target.
async fn exchange(channel: &dyn Channel, write: &Write, context: WriteContext<'_>) -> Option<Answer> {
    let (Operation::Upsert, Some(key)) = (context.operation, context.ordering_key) else { return None };
    let mut post = write.clone();
    post.url = context.base_url.to_string();
    let entity = entity_url(context.base_url, key);
    Some(odata::upsert(channel, &post, context.base_url, &entity, &[&["@odata.etag"]]).await)
}

/// Records at `.value`; the next page at `@odata.nextLink`.
fn poll_defaults() -> PollDefaults {
    PollDefaults {
        records: Some(".value".into()),
        pagination: Some(Pagination::NextUrl { field: r#"."@odata.nextLink""#.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_alternate_key_literals() {
        assert_eq!(entity_url("http://erp/d365/salesOrders", "A-1"), "http://erp/d365/salesOrders(externalId='A-1')");
        assert_eq!(entity_url("http://e/s", "O'Neil 1"), "http://e/s(externalId='O%27%27Neil%201')");
    }

    #[test]
    fn a_429_without_retry_after_refuses_concurrency_and_with_it_the_rate() {
        let mut signal = QuotaSignal::default();
        read_quota(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), &mut signal);
        assert!(signal.concurrency);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        read_quota(StatusCode::TOO_MANY_REQUESTS, &headers, &mut signal);
        assert!(!signal.concurrency);
        read_quota(StatusCode::OK, &HeaderMap::new(), &mut signal);
        assert!(!signal.concurrency);
    }
}
