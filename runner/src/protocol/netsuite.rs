//! `type: netsuite`: NetSuite SuiteTalk REST record API (external-API reference §7).
//!
//! - `create` is a `POST` (`204` + `Location`); `upsert` is `PUT <path>/eid:<key>`, by
//!   external id.
//! - Every write is asynchronous and idempotent: `Prefer: respond-async` with the
//!   record's idempotency key, as a UUID, in `X-NetSuite-Idempotency-Key`. The `202`
//!   names a job; the write follows it (job status, then its result) so a business
//!   error the job met is dead-lettered with NetSuite's detail, and a job still running
//!   is retried later. A retry repeats the key: NetSuite answers `IDEMPOTENCY_ERROR` with
//!   the `Location` of the first job, which is followed the same way, so nothing is
//!   written twice and nothing delivered is dead-lettered.
//! - Concurrency governance (the account's requests in flight): `429`, or a RESTlet's
//!   `400 SSS_REQUEST_LIMIT_EXCEEDED`, is a concurrency refusal: the record is retried,
//!   and the quota governor shrinks the Connector's slots to what the account grants.
//! - Polls: records at `.items`, the next page at `links` rel=next.

use std::time::Duration;

use reqwest::{
    Method, StatusCode,
    header::{HeaderName, HeaderValue},
};

use futures::future::BoxFuture;

use super::{
    Answer, Channel, ErrorCategory, PollDefaults, QuotaSignal, System, Unfit, Verdict, Write, WriteContext,
    generic_idempotency_header, odata, urlencode,
};
use entrepot_api::resource::{ConnectorSpec, Operation, Pagination};

/// The header NetSuite reads an idempotency key from.
const KEY_HEADER: HeaderName = HeaderName::from_static("x-netsuite-idempotency-key");

/// What a NetSuite Connector keeps: whether the manifest named its own idempotency
/// header (then the generic one stays as well).
#[derive(Debug)]
pub struct NetSuite {
    generic_header: Option<HeaderName>,
}

impl System for NetSuite {
    fn for_connector(&self, spec: &ConnectorSpec) -> Result<Box<dyn System>, Unfit> {
        // The generic header carries the key too only when the manifest asked for it.
        Ok(Box::new(Self { generic_header: generic_idempotency_header(spec) }))
    }

    fn write(&self, write: &mut Write, context: WriteContext<'_>) {
        NetSuite::write(self, write, context)
    }

    fn exchange<'a>(
        &'a self,
        channel: &'a dyn Channel,
        write: &'a Write,
        _context: WriteContext<'a>,
    ) -> BoxFuture<'a, Option<Answer>> {
        Box::pin(async move { Some(exchange(channel, write).await) })
    }

    fn poll_defaults(&self) -> PollDefaults {
        poll_defaults()
    }

    fn read_quota(
        &self,
        status: StatusCode,
        _headers: &reqwest::header::HeaderMap,
        body: &str,
        signal: &mut QuotaSignal,
    ) {
        read_quota(status, body, signal)
    }

    fn classify(&self, answer: &Answer) -> Option<Verdict> {
        classify(answer)
    }
}

impl NetSuite {
    /// The type's shared instance (no Connector's spec).
    pub(super) const fn shared() -> Self {
        Self { generic_header: None }
    }

    /// `eid:` upserts, the idempotency key and `Prefer: respond-async`.
    fn write(&self, write: &mut Write, context: WriteContext<'_>) {
        if let (Operation::Upsert, Some(key)) = (context.operation, context.ordering_key) {
            write.url = format!("{}/eid:{}", context.base_url, urlencode(key));
        }
        if let Some(generic) = &self.generic_header {
            write.headers.remove(generic);
        }
        if let Ok(key) = HeaderValue::from_str(&odata::delivery_key(&context).0) {
            write.headers.insert(KEY_HEADER, key);
        }
        write.headers.insert("prefer", HeaderValue::from_static("respond-async"));
    }
}

/// Sends the write; a `202` or an `IDEMPOTENCY_ERROR` naming a job is followed to the
/// job's outcome.
async fn exchange(channel: &dyn Channel, write: &Write) -> Answer {
    let sent = channel.request(write.method.clone(), &write.url, Some(write)).await;
    let job = match &sent.answer {
        Answer::Response { status, location: Some(location), body, .. }
            if *status == StatusCode::ACCEPTED || is_idempotency_error(body) =>
        {
            odata::on_endpoint(channel, &write.url, location)
        }
        _ => None,
    };
    let Some(job) = job else { return sent.answer };
    let status = channel.request(Method::GET, &job, None).await;
    let Some(progress) = status.json.as_ref().filter(|_| status.status().is_some_and(|s| s.is_success())) else {
        return status.answer;
    };
    if progress["completed"] != true {
        // Kept as a 202 with the job's status: `classify` makes it a retry.
        return match status.answer {
            Answer::Response { retry_after, body, quota, .. } => {
                Answer::Response { status: StatusCode::ACCEPTED, retry_after, body, quota, location: Some(job) }
            }
            other => other,
        };
    }
    let result = progress["links"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["rel"] == "result"))
        .and_then(|l| l["href"].as_str())
        .and_then(|href| odata::on_endpoint(channel, &job, href))
        .unwrap_or_else(|| format!("{job}/task/1/result"));
    channel.request(Method::GET, &result, None).await.answer
}

fn error_codes(body: &str) -> Vec<String> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else { return Vec::new() };
    let mut codes: Vec<String> = json["o:errorDetails"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["o:errorCode"].as_str().map(String::from))
        .collect();
    // A RESTlet's error shape.
    codes.extend(json["error"]["code"].as_str().map(String::from));
    codes
}

fn is_idempotency_error(body: &str) -> bool {
    error_codes(body).iter().any(|c| c == "IDEMPOTENCY_ERROR")
}

fn is_request_limit(body: &str) -> bool {
    error_codes(body).iter().any(|c| c == "SSS_REQUEST_LIMIT_EXCEEDED" || c == "CONCURRENCY_LIMIT_EXCEEDED")
}

/// NetSuite meters requests in flight, not a rate: every throttling answer is a
/// concurrency refusal, and a RESTlet's is a `400` the governor must hear of as one.
fn read_quota(status: StatusCode, body: &str, signal: &mut QuotaSignal) {
    if status == StatusCode::BAD_REQUEST && is_request_limit(body) {
        signal.throttled = true;
    }
    signal.concurrency = signal.throttled;
}

/// NetSuite's answers the generic status rule misreads.
fn classify(answer: &Answer) -> Option<Verdict> {
    let Answer::Response { status, body, location, retry_after, .. } = answer else { return None };
    if *status == StatusCode::ACCEPTED
        && serde_json::from_str::<serde_json::Value>(body).is_ok_and(|j| j["completed"] == false)
    {
        return Some(Verdict::Retry {
            after: Some(Duration::from_secs(1)),
            reason: format!("NetSuite job {} still running", location.as_deref().unwrap_or("?")),
            category: ErrorCategory::Server,
        });
    }
    if status.is_client_error() && is_request_limit(body) {
        return Some(Verdict::Retry {
            after: retry_after.as_deref().and_then(super::parse_retry_after),
            reason: format!("throttled: NetSuite concurrency limit ({status})"),
            category: ErrorCategory::Throttled,
        });
    }
    // The job it names could not be followed (`exchange` follows it when it can): the
    // key was used, so the record was submitted; NetSuite does not run it twice.
    if is_idempotency_error(body) && location.is_some() {
        return Some(Verdict::Delivered);
    }
    None
}

/// Records at `.items`; the next page at `links` rel=next.
fn poll_defaults() -> PollDefaults {
    PollDefaults {
        records: Some(".items".into()),
        pagination: Some(Pagination::NextUrl { field: r#"[.links[]? | select(.rel == "next") | .href][0]"#.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, location: Option<&str>) -> Answer {
        Answer::Response {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            body: body.into(),
            quota: Default::default(),
            location: location.map(Into::into),
        }
    }

    #[test]
    fn concurrency_refusals_are_throttling_in_both_shapes() {
        let restlet = r#"{"error":{"code":"SSS_REQUEST_LIMIT_EXCEEDED","message":"Request limit exceeded"}}"#;
        assert!(matches!(
            classify(&answer(400, restlet, None)),
            Some(Verdict::Retry { category: ErrorCategory::Throttled, .. })
        ));
        let mut signal = QuotaSignal::default();
        read_quota(StatusCode::BAD_REQUEST, restlet, &mut signal);
        assert!(signal.throttled && signal.concurrency, "a concurrency refusal, not a rate one");
        let mut signal = QuotaSignal { throttled: true, ..Default::default() };
        read_quota(StatusCode::TOO_MANY_REQUESTS, "", &mut signal);
        assert!(signal.concurrency, "NetSuite meters requests in flight, not a rate");
        let business = r#"{"o:errorDetails":[{"detail":"Invalid item","o:errorCode":"INVALID_KEY_OR_REF"}]}"#;
        assert_eq!(classify(&answer(400, business, None)), None, "left to the generic rule: a rejection");
        let mut signal = QuotaSignal::default();
        read_quota(StatusCode::BAD_REQUEST, business, &mut signal);
        assert!(!signal.throttled && !signal.concurrency);
    }

    #[test]
    fn a_used_key_naming_a_job_is_delivered_and_a_running_job_retried() {
        let used = r#"{"o:errorDetails":[{"detail":"used","o:errorCode":"IDEMPOTENCY_ERROR"}]}"#;
        assert_eq!(classify(&answer(400, used, Some("/async/v1/job/1"))), Some(Verdict::Delivered));
        assert_eq!(classify(&answer(400, used, None)), None);
        let running = r#"{"completed":false,"progress":"pending"}"#;
        assert!(matches!(classify(&answer(202, running, Some("/j/1"))), Some(Verdict::Retry { .. })));
        assert_eq!(classify(&answer(202, "", Some("/j/1"))), None);
    }
}
