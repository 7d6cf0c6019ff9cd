//! `shopify`: the Shopify Admin API (external-API reference §1).
//!
//! - Credentials: `auth.token` is sent as `X-Shopify-Access-Token`.
//! - REST: the leaky bucket's `X-Shopify-Shop-Api-Call-Limit` and `429` + `Retry-After`
//!   are read by the generic quota rules; `Link` pagination by the poller.
//! - GraphQL targets (`graphql.mutation`): the record's idempotency key goes into
//!   `@idempotent(key:)` on the mutations that take it; `extensions.cost.throttleStatus`
//!   feeds the quota governor; `THROTTLED` (in a `200`) is retried once enough points are
//!   restored; `userErrors` are business rejections that dead-letter the record with the
//!   field and the message.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::{Answer, ErrorCategory, QuotaSignal, System, Unfit, Verdict, Write, WriteContext};
use entrepot_api::resource::ConnectorSpec;

/// Mutations that take `@idempotent(key:)`: mandatory for inventory adjustments and refunds
/// from API version 2026-04, and accepted by `inventorySetQuantities`. (U) Other mutations
/// may take it too; it is added only where it is documented, since an unknown directive
/// fails the whole request.
const IDEMPOTENT_MUTATIONS: [&str; 3] = ["inventoryAdjustQuantities", "inventorySetQuantities", "refundCreate"];

/// Shortest wait after `THROTTLED`, when the cost figures are missing.
const MIN_THROTTLE_WAIT: Duration = Duration::from_secs(1);

/// Shopify's Admin API (GraphQL): the access token in its own header, `@idempotent`
/// mutations, the query cost's throttling.
#[derive(Clone, Copy, Debug)]
pub struct Shopify;

impl System for Shopify {
    fn for_connector(&self, _spec: &ConnectorSpec) -> Result<Box<dyn System>, Unfit> {
        Ok(Box::new(*self))
    }

    fn write(&self, write: &mut Write, context: WriteContext<'_>) {
        self::write(write, context)
    }

    fn read_quota(
        &self,
        status: StatusCode,
        _headers: &reqwest::header::HeaderMap,
        body: &str,
        signal: &mut QuotaSignal,
    ) {
        self::read_quota(status, body, signal)
    }

    fn classify(&self, answer: &Answer) -> Option<Verdict> {
        self::classify(answer)
    }
}

/// Adds `@idempotent(key: "<key>")` to the first idempotent mutation of a GraphQL write
/// that has none yet.
fn write(write: &mut Write, context: WriteContext<'_>) {
    let Ok(mut body) = serde_json::from_slice::<Value>(&write.body) else { return };
    let Some(query) = body.get("query").and_then(Value::as_str) else { return };
    if query.contains("@idempotent") {
        return;
    }
    let Some(with_key) = with_idempotent(query, context.idempotency_key) else { return };
    body["query"] = Value::String(with_key);
    if let Ok(bytes) = serde_json::to_vec(&body) {
        write.body = bytes;
    }
}

/// `query` with `@idempotent(key: "<key>")` after the arguments of its idempotent mutation.
fn with_idempotent(query: &str, key: &str) -> Option<String> {
    let (at, name) =
        IDEMPOTENT_MUTATIONS.iter().filter_map(|m| query.find(&format!("{m}(")).map(|at| (at, *m))).min()?;
    let open = at + name.len();
    let mut depth = 0usize;
    for (i, c) in query[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let end = open + i + 1;
                    let literal = serde_json::to_string(key).ok()?;
                    return Some(format!("{} @idempotent(key: {literal}){}", &query[..end], &query[end..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// The GraphQL cost figures of an answer: (requested cost, currently available, restore rate).
fn cost(body: &Value) -> Option<(f64, f64, f64)> {
    let cost = body.get("extensions")?.get("cost")?;
    let status = cost.get("throttleStatus")?;
    let number = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    Some((
        number(cost, "requestedQueryCost").unwrap_or(1.0).max(1.0),
        number(status, "currentlyAvailable")?,
        number(status, "restoreRate")?,
    ))
}

fn throttled(body: &Value) -> bool {
    errors(body).iter().any(|e| e.pointer("/extensions/code").and_then(Value::as_str) == Some("THROTTLED"))
}

fn errors(body: &Value) -> Vec<Value> {
    body.get("errors").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// Reads `extensions.cost.throttleStatus`: the calls left at the last call's cost, and on
/// `THROTTLED` a pause until the points it needs are restored.
fn read_quota(status: StatusCode, body: &str, signal: &mut QuotaSignal) {
    if !status.is_success() {
        return;
    }
    let Ok(body) = serde_json::from_str::<Value>(body) else { return };
    let Some((requested, available, restore)) = cost(&body) else { return };
    signal.remaining = Some((available / requested).floor().max(0.0));
    if throttled(&body) {
        signal.throttled = true;
        let wait = if restore > 0.0 {
            super::upstream_wait((requested - available) / restore).unwrap_or(MIN_THROTTLE_WAIT)
        } else {
            MIN_THROTTLE_WAIT
        };
        signal.retry_after = Some(wait.max(Duration::from_millis(100)));
    }
}

/// GraphQL answers come as `200` whatever happened: `THROTTLED` is retried, other errors
/// and `userErrors` are business rejections.
fn classify(answer: &Answer) -> Option<Verdict> {
    let Answer::Response { status, body, quota, .. } = answer else { return None };
    if !status.is_success() {
        return None;
    }
    let body: Value = serde_json::from_str(body).ok()?;
    if throttled(&body) {
        let reason = match cost(&body) {
            Some((requested, available, _)) => {
                format!("throttled: GraphQL THROTTLED (cost {requested}, {available} points available)")
            }
            None => "throttled: GraphQL THROTTLED".to_owned(),
        };
        let after = quota.retry_after.or(Some(MIN_THROTTLE_WAIT));
        return Some(Verdict::Retry { after, reason, category: ErrorCategory::Throttled });
    }
    if let Some(first) = errors(&body).first() {
        let message = first.get("message").and_then(Value::as_str).unwrap_or("GraphQL error");
        let code = first.pointer("/extensions/code").and_then(Value::as_str).unwrap_or("");
        let reason =
            format!("GraphQL error: {message}{}", if code.is_empty() { String::new() } else { format!(" ({code})") });
        // Shopify's own failures are worth another attempt; a malformed document is not.
        if matches!(code, "INTERNAL_SERVER_ERROR" | "SERVICE_UNAVAILABLE" | "TIMEOUT") {
            return Some(Verdict::Retry { after: None, reason, category: ErrorCategory::Server });
        }
        return Some(Verdict::Reject { reason, category: ErrorCategory::Rejected });
    }
    let user_errors: Vec<String> = body
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|data| data.values())
        .filter_map(|payload| payload.get("userErrors").and_then(Value::as_array))
        .flatten()
        .map(|e| {
            let field = e.get("field").and_then(Value::as_array).map(|f| {
                f.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned).or_else(|| Some(p.to_string())))
                    .collect::<Vec<_>>()
                    .join(".")
            });
            let message = e.get("message").and_then(Value::as_str).unwrap_or("rejected");
            let code = e.get("code").and_then(Value::as_str).map(|c| format!(" ({c})")).unwrap_or_default();
            match field {
                Some(field) if !field.is_empty() => format!("{field}: {message}{code}"),
                _ => format!("{message}{code}"),
            }
        })
        .collect();
    (!user_errors.is_empty()).then(|| Verdict::Reject {
        reason: format!("userErrors: {}", user_errors.join("; ")),
        category: ErrorCategory::Rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Answer {
        let mut quota = QuotaSignal::default();
        read_quota(StatusCode::OK, body, &mut quota);
        Answer::Response { status: StatusCode::OK, retry_after: None, body: body.to_owned(), quota, location: None }
    }

    #[test]
    fn the_key_goes_after_the_arguments_of_the_idempotent_mutation() {
        let query = "mutation A($input: InventoryAdjustQuantitiesInput!) { inventoryAdjustQuantities(input: $input) { userErrors { field } } }";
        let keyed = with_idempotent(query, "order-1:\"2\"").unwrap();
        assert!(
            keyed
                .contains(r#"inventoryAdjustQuantities(input: $input) @idempotent(key: "order-1:\"2\"") { userErrors"#),
            "{keyed}"
        );
        assert_eq!(with_idempotent("mutation { productCreate(input: $i) { id } }", "k"), None);
    }

    #[test]
    fn throttled_is_retried_after_the_points_are_restored_and_feeds_the_quota() {
        let body = r#"{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}],
            "extensions":{"cost":{"requestedQueryCost":10,"actualQueryCost":null,"throttleStatus":{"maximumAvailable":1000.0,"currentlyAvailable":4,"restoreRate":100.0}}}}"#;
        let answer = answer(body);
        let Answer::Response { quota, .. } = &answer else { unreachable!() };
        assert!(quota.throttled);
        assert_eq!(quota.remaining, Some(0.0));
        assert_eq!(quota.retry_after, Some(Duration::from_millis(100)));
        match classify(&answer) {
            Some(Verdict::Retry { category: ErrorCategory::Throttled, after: Some(after), reason }) => {
                assert_eq!(after, Duration::from_millis(100));
                assert!(reason.contains("THROTTLED"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_errors_are_rejections_naming_the_field_and_a_clean_answer_is_left_to_the_generic_rule() {
        let body = r#"{"data":{"inventorySetQuantities":{"inventoryAdjustmentGroup":null,"userErrors":[{"field":["input","quantities","0","changeFromQuantity"],"message":"stale","code":"CHANGE_FROM_QUANTITY_STALE"}]}},
            "extensions":{"cost":{"requestedQueryCost":10,"actualQueryCost":10,"throttleStatus":{"maximumAvailable":1000.0,"currentlyAvailable":990,"restoreRate":100.0}}}}"#;
        match classify(&answer(body)) {
            Some(Verdict::Reject { reason, category: ErrorCategory::Rejected }) => {
                assert_eq!(
                    reason,
                    "userErrors: input.quantities.0.changeFromQuantity: stale (CHANGE_FROM_QUANTITY_STALE)"
                );
            }
            other => panic!("{other:?}"),
        }
        let clean = r#"{"data":{"inventorySetQuantities":{"userErrors":[]}},"extensions":{"cost":{"requestedQueryCost":10,"throttleStatus":{"maximumAvailable":1000.0,"currentlyAvailable":990,"restoreRate":100.0}}}}"#;
        let clean = answer(clean);
        assert_eq!(classify(&clean), None);
        let Answer::Response { quota, .. } = &clean else { unreachable!() };
        assert_eq!((quota.throttled, quota.remaining), (false, Some(99.0)));
    }

    #[test]
    fn a_tiny_restore_rate_waits_an_hour_at_most() {
        let body = r#"{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}],
            "extensions":{"cost":{"requestedQueryCost":1000,"throttleStatus":{"maximumAvailable":1000.0,"currentlyAvailable":0,"restoreRate":1e-300}}}}"#;
        let Answer::Response { quota, .. } = answer(body) else { unreachable!() };
        assert_eq!(quota.retry_after, Some(crate::protocol::MAX_UPSTREAM_WAIT));
    }
}
