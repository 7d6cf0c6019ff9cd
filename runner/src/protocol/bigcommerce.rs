//! `bigcommerce`: the BigCommerce REST API (v2/v3) and its webhooks (external-API
//! reference §2).
//!
//! - Credentials: `auth.token` is sent as `X-Auth-Token`.
//! - Quota: a store-wide window; `X-Rate-Limit-Requests-Left` and `-Time-Reset-Ms` are read
//!   by the generic quota rules. A `429` carries no `Retry-After`: it is retried after
//!   `X-Rate-Limit-Time-Reset-Ms`. A bare `429` (no rate-limit headers: platform load) is
//!   left to the generic rule, exponential backoff with jitter.
//! - Webhooks: thin payloads `{scope, data{type,id}, hash, producer}` signed per Standard
//!   Webhooks. Duplicates arrive as new messages with the same `hash`, so the dedupe key is
//!   the payload's `hash` and the topic its `scope`; the full record is refetched
//!   (`trigger.webhook.refetch`).
//! - Inventory adjustments must run one after the other: give the Connector
//!   `limits.concurrency: 1` for the flows that write them.

use reqwest::StatusCode;
use serde_json::Value;

use super::{Answer, ErrorCategory, System, Unfit, Verdict, WebhookFields};
use entrepot_api::resource::ConnectorSpec;

/// BigCommerce's REST API: the token in `X-Auth-Token`, the request window's reset, the
/// webhook payload's `hash` and `scope`.
#[derive(Clone, Copy, Debug)]
pub struct BigCommerce;

impl System for BigCommerce {
    fn for_connector(&self, _spec: &ConnectorSpec) -> Result<Box<dyn System>, Unfit> {
        Ok(Box::new(*self))
    }

    fn webhook_fields(&self, body: &[u8]) -> WebhookFields {
        self::webhook_fields(body)
    }

    fn classify(&self, answer: &Answer) -> Option<Verdict> {
        self::classify(answer)
    }
}

/// A `429` with the window's reset time waits for it.
fn classify(answer: &Answer) -> Option<Verdict> {
    let Answer::Response { status, retry_after: None, quota, .. } = answer else { return None };
    if *status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let reset = quota.reset_after?;
    let reason = format!("throttled: 429, the store's request window resets in {} ms", reset.as_millis());
    Some(Verdict::Retry { after: Some(reset), reason, category: ErrorCategory::Throttled })
}

/// The dedupe key (`hash`) and topic (`scope`) of a thin webhook payload.
fn webhook_fields(body: &[u8]) -> WebhookFields {
    let Ok(payload) = serde_json::from_slice::<Value>(body) else { return WebhookFields::default() };
    let text = |key: &str| payload.get(key).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_owned);
    WebhookFields { delivery_id: text("hash").map(|h| format!("hash:{h}")), topic: text("scope") }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::QuotaSignal;

    fn too_many(reset: Option<Duration>) -> Answer {
        let quota = QuotaSignal { throttled: true, reset_after: reset, ..QuotaSignal::default() };
        Answer::Response {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: None,
            body: String::new(),
            quota,
            location: None,
        }
    }

    #[test]
    fn a_429_waits_for_the_window_reset_and_a_bare_one_is_left_to_backoff() {
        match classify(&too_many(Some(Duration::from_millis(1500)))) {
            Some(Verdict::Retry { after: Some(after), category: ErrorCategory::Throttled, .. }) => {
                assert_eq!(after, Duration::from_millis(1500))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(classify(&too_many(None)), None);
    }

    #[test]
    fn the_hash_is_the_dedupe_key_and_the_scope_the_topic() {
        let fields = webhook_fields(
            br#"{"scope":"store/order/created","data":{"type":"order","id":7},"hash":"ab12","producer":"stores/x"}"#,
        );
        assert_eq!(fields.delivery_id.as_deref(), Some("hash:ab12"));
        assert_eq!(fields.topic.as_deref(), Some("store/order/created"));
        assert_eq!(webhook_fields(b"not json"), WebhookFields::default());
    }
}
