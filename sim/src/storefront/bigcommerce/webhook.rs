//! BigCommerce webhook deliveries: thin payloads signed per Standard Webhooks
//! (external-API reference §2 BigCommerce).
//!
//! - The body is `{scope, store_id, data{type,id}, hash, created_at, producer}`: it names the
//!   record and nothing more, so a receiver refetches it (`GET /v2/orders/{id}`).
//! - Signature: `webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`.
//!   BigCommerce's Standard Webhooks key is base64(client secret), so the HMAC key bytes are
//!   the client secret itself. (U) The header names are inferred from the Standard Webhooks
//!   spec, not stated by BigCommerce.
//! - Duplicates happen as new messages (new `webhook-id`, new timestamp) with the same body,
//!   hence the same `hash`: receivers dedupe on `hash`.

use std::fmt;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::storefront::Sendable;

/// `webhook-id`: the message id, kept across retries of one message.
pub const ID_HEADER: HeaderName = HeaderName::from_static("webhook-id");
/// `webhook-timestamp`: when the message was signed, Unix seconds.
pub const TIMESTAMP_HEADER: HeaderName = HeaderName::from_static("webhook-timestamp");
/// `webhook-signature`: space-separated `v1,<base64>` signatures.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("webhook-signature");

/// The Standard Webhooks signature of `body` for message `id` at `timestamp`: `v1,<base64>`.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// One thin webhook message, ready to be sent (and re-sent) as is.
#[derive(Debug, Clone)]
pub struct ThinDelivery {
    /// The `webhook-id`.
    pub message_id: String,
    /// The payload's `hash` (the dedupe key).
    pub hash: String,
    /// The payload's `scope`, e.g. `store/order/created`.
    pub scope: String,
    /// The id in `data.id`.
    pub record_id: u64,
    /// The exact bytes signed and sent.
    pub body: Bytes,
    /// Every header sent, the signature included.
    pub headers: HeaderMap,
}

impl Sendable for ThinDelivery {
    fn id(&self) -> &str {
        &self.message_id
    }
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    fn body(&self) -> &Bytes {
        &self.body
    }
}

/// Builds signed thin messages for one store.
#[derive(Clone)]
pub struct ThinSigner {
    secret: String,
    store_hash: String,
}

// Written by hand so the secret never reaches a log line.
impl fmt::Debug for ThinSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThinSigner").field("secret", &"<redacted>").field("store_hash", &self.store_hash).finish()
    }
}

impl ThinSigner {
    /// Signs with the app's client `secret` (never logged) for store `store_hash`.
    pub fn new(secret: impl Into<String>, store_hash: impl Into<String>) -> Self {
        Self { secret: secret.into(), store_hash: store_hash.into() }
    }

    /// A message about order `order_id` under `scope` (e.g. `store/order/created`).
    pub fn order_event(&self, scope: &str, order_id: u64) -> ThinDelivery {
        let data = json!({ "type": "order", "id": order_id });
        // (U) BigCommerce documents `hash` as a SHA-1 of the payload data; SHA-256 stands in
        // for it here: a receiver only compares hashes, it never recomputes them.
        let hash = Sha256::digest(data.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>();
        let body = json!({
            "created_at": jiff::Timestamp::now().as_second(),
            "store_id": "1001",
            "producer": format!("stores/{}", self.store_hash),
            "scope": scope,
            "data": data,
            "hash": hash,
        });
        let body = Bytes::from(body.to_string());
        self.message(scope, order_id, hash, body, jiff::Timestamp::now().as_second())
    }

    /// The same payload sent again as a new message (new id and timestamp, same `hash`),
    /// as BigCommerce's duplicates are.
    pub fn duplicate(&self, delivery: &ThinDelivery) -> ThinDelivery {
        let d = delivery;
        self.message(&d.scope, d.record_id, d.hash.clone(), d.body.clone(), jiff::Timestamp::now().as_second())
    }

    /// The same message signed at another `timestamp` (Unix seconds), e.g. a stale one.
    pub fn signed_at(&self, delivery: &ThinDelivery, timestamp: i64) -> ThinDelivery {
        let mut d = delivery.clone();
        d.headers.insert(TIMESTAMP_HEADER, value(timestamp.to_string()));
        d.headers.insert(SIGNATURE_HEADER, value(sign(self.secret.as_bytes(), &d.message_id, timestamp, &d.body)));
        d
    }

    fn message(&self, scope: &str, record_id: u64, hash: String, body: Bytes, timestamp: i64) -> ThinDelivery {
        let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ID_HEADER, value(message_id.clone()));
        headers.insert(TIMESTAMP_HEADER, value(timestamp.to_string()));
        headers.insert(SIGNATURE_HEADER, value(sign(self.secret.as_bytes(), &message_id, timestamp, &body)));
        ThinDelivery { message_id, hash, scope: scope.to_owned(), record_id, body, headers }
    }
}

/// Ids, digits and base64 are always valid header values.
fn value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_test_vector_verifies() {
        // The Standard Webhooks specification's example: secret
        // whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw (key = its base64 part decoded),
        // msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp 1614265330, body {"test": 2432232314}.
        let key = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_duplicate_is_a_new_message_with_the_same_hash() {
        let signer = ThinSigner::new("client-secret", "abc123");
        let first = signer.order_event("store/order/created", 101);
        let again = signer.duplicate(&first);
        assert_ne!(first.message_id, again.message_id);
        assert_eq!((first.hash.as_str(), &first.body), (again.hash.as_str(), &again.body));
        let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(body["data"], json!({ "type": "order", "id": 101 }));
        assert_eq!(body["producer"], "stores/abc123");
        assert!(!format!("{signer:?}").contains("client-secret"));
    }
}
