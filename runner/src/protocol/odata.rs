//! What the ERP types share: the upsert under `If-Match` of the OData types (through the
//! Connector's [`Channel`]), the UUID an idempotency key becomes, and the verdicts on
//! conflicts.

use std::time::Duration;

use reqwest::{
    Method, StatusCode, Url,
    header::{HeaderValue, IF_MATCH},
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::info;

use super::{Answer, Channel, ErrorCategory, Verdict, Write, WriteContext};

/// The write as an upsert on an OData service: read the record at `entity_url`; absent
/// (`404`), create it with a `POST` to the entity set (`write.url` as the target built
/// it, without the key); present, `PATCH` it under `If-Match` with the ETag just read
/// (the header, else the first of `etag_paths` in the body). A `412` (someone changed it
/// in between) reads it again and patches once more within the attempt; a second `412`
/// is left to the verdict (a transient retry).
pub(super) async fn upsert(
    channel: &dyn Channel,
    write: &Write,
    set_url: &str,
    entity_url: &str,
    etag_paths: &[&[&str]],
) -> Answer {
    let mut conflicts = 0;
    loop {
        let read = channel.request(Method::GET, entity_url, None).await;
        match read.status() {
            Some(StatusCode::NOT_FOUND) => return channel.request(Method::POST, set_url, Some(write)).await.answer,
            Some(status) if status.is_success() => {}
            // Transport, throttling, auth: the read's answer is the attempt's.
            _ => return read.answer,
        }
        let etag = read.etag.or_else(|| etag_paths.iter().find_map(|path| string_at(read.json.as_ref()?, path)));
        let mut patch = write.clone();
        // Without an ETag to match, `*` says "whatever is there": the service still
        // requires the header.
        let etag = etag.unwrap_or_else(|| "*".into());
        if let Ok(value) = HeaderValue::from_str(&etag) {
            patch.headers.insert(IF_MATCH, value);
        }
        let patched = channel.request(Method::PATCH, entity_url, Some(&patch)).await;
        if patched.status() != Some(StatusCode::PRECONDITION_FAILED) || conflicts > 0 {
            return patched.answer;
        }
        conflicts += 1;
        info!(connector = %channel.name(), "the record changed since it was read (412); reading it again");
    }
}

fn string_at(value: &Value, path: &[&str]) -> Option<String> {
    path.iter().try_fold(value, |v, key| v.get(key)).and_then(Value::as_str).map(String::from)
}

/// The id a system's own idempotency mechanism (NetSuite's key, SAP's repeatability id)
/// gets for this delivery, and when it was first sent (Unix ms). Every retry repeats
/// both. A record replayed on purpose (from the dead letters after a fix, or as a
/// reconciliation repair) gets a new pair, stable across its own retries: the system
/// spent the first id on the attempt that failed, and would answer a replay under it
/// with that failure.
pub(super) fn delivery_key(record: &WriteContext<'_>) -> (String, i64) {
    match record.replayed_at_ms {
        None => (key_uuid(record.idempotency_key), record.received_at_ms),
        Some(replayed_at_ms) => {
            (key_uuid(&format!("{}#replay@{replayed_at_ms}", record.idempotency_key)), replayed_at_ms)
        }
    }
}

/// A UUID standing for an idempotency key: the same key always gives the same UUID, so
/// every retry of a record repeats the id the system saw first. (Version 8: built from
/// the first 16 bytes of the key's SHA-256.)
fn key_uuid(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

/// `location` resolved against `base`, if it stays on the Connector's endpoint (its
/// credentials go with a request there).
pub(super) fn on_endpoint(channel: &dyn Channel, base: &str, location: &str) -> Option<String> {
    let resolved = Url::parse(base).ok()?.join(location).ok()?;
    let home = Url::parse(channel.endpoint()).ok()?;
    (resolved.origin() == home.origin()).then(|| resolved.to_string())
}

/// The OData types' verdicts: a `412` still there after the in-attempt refetch is
/// transient (the record is busy; the next attempt reads it again); a CSRF refusal after
/// a fresh token is a transient session failure.
pub(super) fn classify(answer: &Answer) -> Option<Verdict> {
    let Answer::Response { status, body, .. } = answer else { return None };
    if *status == StatusCode::PRECONDITION_FAILED {
        return Some(Verdict::Retry {
            after: Some(Duration::from_secs(1)),
            reason: "conflict: the record changed while it was written (412 Precondition Failed)".into(),
            category: ErrorCategory::Server,
        });
    }
    if *status == StatusCode::FORBIDDEN && body.contains("CSRF") {
        return Some(Verdict::Retry {
            after: None,
            reason: "auth: the CSRF token was refused again after a fresh one (403)".into(),
            category: ErrorCategory::Auth,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use entrepot_api::resource::Operation;

    #[test]
    fn a_key_always_gives_the_same_uuid_and_another_key_another() {
        let a = key_uuid("shopify-1042:3");
        assert_eq!(a, key_uuid("shopify-1042:3"));
        assert_ne!(a, key_uuid("shopify-1042:4"));
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
    }

    fn item(replayed_at_ms: Option<i64>) -> WriteContext<'static> {
        WriteContext {
            operation: Operation::Create,
            base_url: "http://erp",
            idempotency_key: "o-1:3",
            ordering_key: None,
            received_at_ms: 1_000,
            replayed_at_ms,
        }
    }

    #[test]
    fn retries_repeat_the_delivery_key_and_a_replay_gets_its_own() {
        let (first, sent) = delivery_key(&item(None));
        assert_eq!((first.as_str(), sent), (key_uuid("o-1:3").as_str(), 1_000));
        assert_eq!(delivery_key(&item(None)).0, first, "a retry repeats it");
        let (replayed, sent) = delivery_key(&item(Some(9_000)));
        assert_ne!(replayed, first);
        assert_eq!(sent, 9_000);
        assert_eq!(delivery_key(&item(Some(9_000))).0, replayed, "a retry of the replay repeats its own");
    }

    #[test]
    fn a_second_412_and_a_repeated_csrf_refusal_are_transient() {
        let answer = |status: u16, body: &str| Answer::Response {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            body: body.into(),
            quota: Default::default(),
            location: None,
        };
        assert!(matches!(classify(&answer(412, "")), Some(Verdict::Retry { category: ErrorCategory::Server, .. })));
        assert!(matches!(
            classify(&answer(403, r#"{"error":{"message":{"value":"CSRF token validation failed"}}}"#)),
            Some(Verdict::Retry { category: ErrorCategory::Auth, .. })
        ));
        assert_eq!(classify(&answer(403, "forbidden")), None);
        assert_eq!(classify(&answer(400, "bad")), None);
    }
}
