//! Movement events pushed as signed webhooks, one publisher task per WMS so events leave in
//! the order movements were applied (before the seeded faults reorder some).
//!
//! Signature scheme (documented in docs/simulators.md): header `X-Wms-Hmac-Sha256` is the
//! base64 HMAC-SHA256 of the raw body keyed with the shared secret (the same primitive as
//! Shopify's). The body carries `eventId` (`mv-{sequence}`, also in `X-Wms-Event-Id`, the
//! dedupe key, kept on duplicates) and `occurredAt`, so a replayed old body is recognisable
//! by its sequence and time.

use std::fmt;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

use super::stock::{Level, Movement};
use crate::delivery::{DeliveryReport, Event, Faults, FaultyPoster};

/// The signature header.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-wms-hmac-sha256");
/// The event id header (the dedupe key).
pub const EVENT_ID_HEADER: HeaderName = HeaderName::from_static("x-wms-event-id");
/// The topic header.
pub const TOPIC_HEADER: HeaderName = HeaderName::from_static("x-wms-topic");

/// Where movement webhooks go.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The receiver's URL.
    pub target: String,
    /// The signing secret. Never logged.
    pub secret: String,
    /// Duplicates, reordering, drops and delay, seeded.
    pub faults: Faults,
    /// Time allowed per delivery.
    pub timeout: Duration,
}

impl WebhookConfig {
    /// Every event once, in order, to `target`, signed with `secret`.
    pub fn new(target: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            secret: secret.into(),
            faults: Faults::default(),
            timeout: Duration::from_secs(5),
        }
    }
}

// Written by hand so the secret never reaches a log line.
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("target", &self.target)
            .field("secret", &"<redacted>")
            .field("faults", &self.faults)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The base64 HMAC-SHA256 of `body` keyed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether `signature` signs `body` with `secret`, compared in constant time.
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Ok(tag) = BASE64.decode(signature.trim()) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// The signed event of one movement and the records it changed.
pub(super) fn event(secret: &str, movement: &Movement, levels: Vec<Level>, shippable: i64) -> Event {
    let id = format!("mv-{}", movement.sequence);
    let body = json!({
        "eventId": id,
        "topic": "inventory.movement",
        "occurredAt": movement.at,
        "movement": movement,
        "levels": levels,
        "shippable": shippable,
    });
    let body = Bytes::from(body.to_string());
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(TOPIC_HEADER, HeaderValue::from_static("inventory.movement"));
    if let Ok(value) = HeaderValue::from_str(&sign(secret.as_bytes(), &body)) {
        headers.insert(SIGNATURE_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(EVENT_ID_HEADER, value);
    }
    Event { id, body, headers }
}

/// What the publisher task is asked to do.
pub(super) enum Job {
    Deliver(Vec<Event>),
    /// Answer the report so far once every earlier batch is delivered.
    Flush(oneshot::Sender<DeliveryReport>),
}

/// Starts the publisher task; events sent on the returned channel are delivered in order.
pub(super) fn start(config: &WebhookConfig) -> Result<mpsc::UnboundedSender<Job>, String> {
    let poster = FaultyPoster::new(&config.target, config.faults, config.timeout)?;
    let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
    tokio::spawn(async move {
        let mut total = DeliveryReport::default();
        while let Some(job) = queue.recv().await {
            match job {
                Job::Deliver(events) => total.absorb(poster.deliver(events).await),
                Job::Flush(answer) => {
                    let _ = answer.send(total.clone());
                }
            }
        }
    });
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_secret_and_body() {
        let signature = sign(b"wms-secret", b"{\"eventId\":\"mv-1\"}");
        assert!(verify(b"wms-secret", b"{\"eventId\":\"mv-1\"}", &signature));
        assert!(!verify(b"other", b"{\"eventId\":\"mv-1\"}", &signature));
        assert!(!verify(b"wms-secret", b"{\"eventId\":\"mv-2\"}", &signature));
        assert!(!verify(b"wms-secret", b"{}", "not base64!"));
    }
}
