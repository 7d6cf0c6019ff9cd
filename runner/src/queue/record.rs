//! What the queue stores: envelopes as accepted from a source, delivery items prepared
//! for one target, and dead letters.

use serde::{Deserialize, Serialize};

/// A record as a source accepted it, before mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Unique id of the record (a UUIDv7: sortable by arrival).
    pub id: String,
    /// The source's id of this delivery (e.g. `X-Shopify-Webhook-Id`): retries of one
    /// delivery share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// The source's id of the business event (e.g. `X-Shopify-Event-Id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The source's topic (e.g. `orders/create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Carried through every log line, metric exemplar and target call for this record.
    pub correlation_id: String,
    /// When the runner first accepted the record, in Unix milliseconds.
    pub received_at_ms: i64,
    /// The raw payload, as received.
    #[serde(with = "json_bytes")]
    pub payload: Vec<u8>,
}

/// A record ready to be sent to one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryItem {
    /// The envelope it came from.
    pub envelope: Envelope,
    /// The target's index in the flow's `spec.targets`.
    pub target: u32,
    /// The idempotency key, also sent to the target.
    pub idempotency_key: String,
    /// The ordering key, when the flow declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// The body to send: the record mapped for this target.
    #[serde(with = "json_bytes")]
    pub body: Vec<u8>,
}

/// Why a record was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeadLetterReason {
    /// The mapping failed on it (bad input, a jq error, a key expression gave no key).
    Mapping,
    /// The target refused it for a business reason (4xx other than 401/408/429).
    Rejected,
    /// The target refused the Connector's credentials (401), even fresh ones.
    Auth,
    /// Every allowed attempt failed transiently.
    RetriesExhausted,
}

impl DeadLetterReason {
    /// The fixed label used in metrics and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mapping => "mapping",
            Self::Rejected => "rejected",
            Self::Auth => "auth",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// One delivery attempt, kept with a dead letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// When it was made, in Unix milliseconds.
    pub at_ms: i64,
    /// The HTTP status, when the target answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What happened, in a few words.
    pub outcome: String,
}

/// A record that could not be delivered, kept for inspection and replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The envelope as accepted from the source (replay starts from it).
    pub envelope: Envelope,
    /// The target it failed at, when it got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    /// The category.
    pub reason: DeadLetterReason,
    /// A message a human can act on.
    pub message: String,
    /// The target's last HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The target's last response body (at most 4 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Every attempt made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// When it was dead-lettered, in Unix milliseconds.
    pub dead_lettered_at_ms: i64,
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Payloads are JSON: store them as JSON text inside the record when they are UTF-8, so
/// a stored record reads naturally; otherwise as an array of bytes.
mod json_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.collect_seq(bytes),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Bytes(Vec<u8>),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Text(t) => t.into_bytes(),
            Repr::Bytes(b) => b,
        })
    }
}
