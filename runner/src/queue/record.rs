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
    /// The id the sender gave this delivery, when it is not `delivery_id`: a scheme that
    /// signs only the body (`shopify-hmac-sha256`) dedups by the body's digest, and the
    /// sender's unsigned id (`X-Shopify-Webhook-Id`) is kept here, to look the delivery up
    /// in the sender's own logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_delivery_id: Option<String>,
    /// The source's id of the business event (e.g. `X-Shopify-Event-Id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The source's topic (e.g. `orders/create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Carried through every log line, metric exemplar and target call for this record.
    pub correlation_id: String,
    /// The W3C trace context (`traceparent`) the record's later spans (prepare, each
    /// delivery attempt) join, wherever they run: the intake's span, or the one the
    /// source sent when traces are not exported (`telemetry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
    /// When the runner first accepted the record, in Unix milliseconds.
    pub received_at_ms: i64,
    /// The raw payload, as received.
    #[serde(with = "json_bytes")]
    pub payload: Vec<u8>,
    /// Set when the record re-entered the pipeline on purpose, from the dead letters or
    /// as a reconciliation repair: prepare lets it past the idempotency-key dedup (its key
    /// was recorded when it first passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Box<Replay>>,
}

/// How a replayed record came back, and what happened to it before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    /// The dead letter it was replayed from; none for a reconciliation repair, which
    /// sends a record its target lacks or holds differently (see `runtime::records`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_id: Option<u64>,
    /// Times the record has been replayed, this one included.
    pub count: u32,
    /// The name of the one target it goes to again, when it failed at a target (the
    /// flow's other targets already have it); `None`: every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Who asked for it (`cli`, `admin API`, ...).
    pub requested_by: String,
    /// When it was replayed, in Unix milliseconds.
    pub replayed_at_ms: i64,
    /// Each earlier time it was dead-lettered, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<PastFailure>,
}

/// An earlier dead-lettering of a replayed record, kept so the trail stays whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PastFailure {
    /// The dead letter's id then.
    pub dead_letter_id: u64,
    /// The name of the target it failed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The category.
    pub reason: DeadLetterReason,
    /// The message.
    pub message: String,
    /// The target's last HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The target's last response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Every attempt made then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// When it was dead-lettered, in Unix milliseconds.
    pub dead_lettered_at_ms: i64,
}

/// A record ready to be sent to one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryItem {
    /// The envelope it came from.
    pub envelope: Envelope,
    /// The target's name (`spec.targets[].name`): stable when the flow's targets are
    /// reordered, unlike their positions.
    pub target: String,
    /// The idempotency key, also sent to the target.
    pub idempotency_key: String,
    /// The ordering key, when the flow declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// The record's source version, when the flow declares `delivery.versionKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The body to send: the record mapped for this target.
    #[serde(with = "json_bytes")]
    pub body: Vec<u8>,
}

impl DeliveryItem {
    /// Bytes it holds in memory, near enough: the record as received and as mapped, and
    /// its keys. What a delivery worker's byte budget counts.
    pub fn size(&self) -> usize {
        let e = &self.envelope;
        let texts = [&e.id, &e.correlation_id, &self.target, &self.idempotency_key];
        let optional = [&e.delivery_id, &e.event_id, &e.topic, &e.trace_parent, &self.ordering_key, &self.version];
        e.payload.len()
            + self.body.len()
            + texts.iter().map(|t| t.len()).sum::<usize>()
            + optional.iter().filter_map(|t| t.as_ref()).map(String::len).sum::<usize>()
    }
}

/// How many delivery items one read of the outbox may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Take {
    /// At most this many.
    pub items: usize,
    /// Stop once the items read hold this many bytes ([`DeliveryItem::size`]); the item
    /// that reaches it is returned, so one item is always read, however large.
    pub bytes: usize,
}

/// Why a record was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeadLetterReason {
    /// The mapping failed on it (bad input, a jq error, a key expression gave no key).
    Mapping,
    /// The mapped record is not a valid instance of the canonical entity its Mapping
    /// `produces`; the message lists the JSON pointer of every failing field.
    SchemaViolation,
    /// The source could not read it as a record (a CSV row with the wrong number of
    /// fields, invalid UTF-8, a line that is not JSON); the message names the file and line.
    InvalidRecord,
    /// The target refused it for a business reason (4xx other than 401/408/429).
    Rejected,
    /// The target refused the Connector's credentials (401), even fresh ones.
    Auth,
    /// Every allowed attempt failed transiently.
    #[serde(alias = "retries_exhausted")]
    RetriesExhausted,
    /// The target throttled it for longer than `delivery.retry.maxThrottledFor`.
    #[serde(alias = "throttled_too_long")]
    ThrottledTooLong,
}

impl DeadLetterReason {
    /// Every reason.
    pub const ALL: [Self; 7] = [
        Self::Mapping,
        Self::SchemaViolation,
        Self::InvalidRecord,
        Self::Rejected,
        Self::Auth,
        Self::RetriesExhausted,
        Self::ThrottledTooLong,
    ];

    /// The fixed label used in metrics and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mapping => "mapping",
            Self::SchemaViolation => "schema_violation",
            Self::InvalidRecord => "invalid_record",
            Self::Rejected => "rejected",
            Self::Auth => "auth",
            Self::RetriesExhausted => "retries_exhausted",
            Self::ThrottledTooLong => "throttled_too_long",
        }
    }

    /// What to do about a dead letter of this kind: the first line of remediation.
    pub fn remedy(self) -> &'static str {
        match self {
            Self::Mapping => "the record could not be mapped: fix the Mapping (or the source data), then replay it",
            Self::SchemaViolation => {
                "the mapped record breaks the canonical schema at the fields listed: fix the Mapping (or the source \
                 data) so they hold, then replay it"
            }
            Self::Auth => {
                "the target refused the credentials even after fresh ones were fetched: fix the Connector's Secret \
                 or its permissions at the target, then replay it"
            }
            Self::InvalidRecord => {
                "the source data is malformed at the line named: correct it at the source and send it again \
                 (e.g. a corrected file), then discard this letter"
            }
            Self::Rejected => {
                "the target refused the record: fix the cause it names (e.g. create the missing SKU at the target, \
                 or correct the Mapping), then replay it; discard it if it should never be delivered"
            }
            Self::RetriesExhausted => {
                "the target kept failing transiently: check that it is up and accepting requests, then replay it"
            }
            Self::ThrottledTooLong => {
                "the target throttled it for longer than delivery.retry.maxThrottledFor: check the Connector's \
                 declared limits against what the target grants (and who else uses its quota), then replay it"
            }
        }
    }
}

impl std::str::FromStr for DeadLetterReason {
    type Err = String;

    /// Accepts the listing label (`retries_exhausted`) and the JSON name (`retriesExhausted`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mapping" => Ok(Self::Mapping),
            "schema_violation" | "schemaViolation" => Ok(Self::SchemaViolation),
            "invalid_record" | "invalidRecord" => Ok(Self::InvalidRecord),
            "auth" => Ok(Self::Auth),
            "rejected" => Ok(Self::Rejected),
            "retries_exhausted" | "retriesExhausted" => Ok(Self::RetriesExhausted),
            "throttled_too_long" | "throttledTooLong" => Ok(Self::ThrottledTooLong),
            other => Err(format!(
                "unknown reason `{other}`: use mapping, schema_violation, invalid_record, auth, rejected, \
                 retries_exhausted or throttled_too_long"
            )),
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
    /// The target throttled it: it spent no attempt of the retry policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub throttled: bool,
}

/// A record that could not be delivered, kept for inspection and replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The envelope as accepted from the source (replay starts from it).
    pub envelope: Envelope,
    /// The name of the target it failed at, when it got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
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

impl DeadLetter {
    /// This dead letter (stored under `id`) as an entry in a replayed record's history.
    pub fn as_past_failure(&self, id: u64) -> PastFailure {
        PastFailure {
            dead_letter_id: id,
            target: self.target.clone(),
            reason: self.reason,
            message: self.message.clone(),
            status: self.status,
            response_body: self.response_body.clone(),
            attempts: self.attempts.clone(),
            dead_lettered_at_ms: self.dead_lettered_at_ms,
        }
    }
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
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
