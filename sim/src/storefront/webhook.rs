//! Shopify webhook deliveries: the signed body and the `X-Shopify-*` headers.
//!
//! A delivery is built once and then sent as many times as needed: Shopify retries resend
//! the original body with the same `X-Shopify-Webhook-Id` (the receiver's dedupe key), and
//! deliveries for one merchant action share `X-Shopify-Event-Id`.

use std::fmt;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::StorefrontError;
use super::order::Order;

/// `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body, keyed with the app secret.
pub const HMAC_HEADER: HeaderName = HeaderName::from_static("x-shopify-hmac-sha256");
/// `X-Shopify-Webhook-Id`: unique per delivery, kept across retries of that delivery.
pub const WEBHOOK_ID_HEADER: HeaderName = HeaderName::from_static("x-shopify-webhook-id");
/// `X-Shopify-Event-Id`: shared by every delivery caused by one merchant action.
pub const EVENT_ID_HEADER: HeaderName = HeaderName::from_static("x-shopify-event-id");
/// `X-Shopify-Topic`, e.g. `orders/create`.
pub const TOPIC_HEADER: HeaderName = HeaderName::from_static("x-shopify-topic");
/// `X-Shopify-Triggered-At`: when the event happened, RFC 3339.
pub const TRIGGERED_AT_HEADER: HeaderName = HeaderName::from_static("x-shopify-triggered-at");
/// `X-Shopify-Shop-Domain`, e.g. `acme.myshopify.com`.
pub const SHOP_DOMAIN_HEADER: HeaderName = HeaderName::from_static("x-shopify-shop-domain");
/// `X-Shopify-API-Version`, e.g. `2026-10`.
pub const API_VERSION_HEADER: HeaderName = HeaderName::from_static("x-shopify-api-version");

/// The user agent Shopify's webhook service sends.
const USER_AGENT: &str = "Shopify-Captain-Hook";

/// A webhook topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Topic {
    /// `orders/create`: an order was placed.
    #[serde(rename = "orders/create")]
    OrdersCreate,
    /// `orders/updated`: an order changed.
    #[serde(rename = "orders/updated")]
    OrdersUpdated,
}

impl Topic {
    /// The topic as Shopify writes it in `X-Shopify-Topic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrdersCreate => "orders/create",
            Self::OrdersUpdated => "orders/updated",
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The base64 HMAC-SHA256 of `body` keyed with `secret`, as Shopify signs webhooks.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    BASE64.encode(mac(secret, body).finalize().into_bytes())
}

/// Whether `signature` (the `X-Shopify-Hmac-Sha256` value) signs `body` with `secret`.
/// The comparison takes the same time however many bytes match.
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    match BASE64.decode(signature.trim()) {
        Ok(tag) => mac(secret, body).verify_slice(&tag).is_ok(),
        Err(_) => false,
    }
}

fn mac(secret: &[u8], body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    mac
}

/// One webhook delivery, ready to be sent (and re-sent) as is.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The `X-Shopify-Webhook-Id`, unique to this delivery.
    pub webhook_id: String,
    /// The `X-Shopify-Event-Id`.
    pub event_id: String,
    /// What happened.
    pub topic: Topic,
    /// The exact bytes that were signed and are sent.
    pub body: Bytes,
    /// Every header sent with the body, the signature included.
    pub headers: HeaderMap,
}

impl Delivery {
    /// The `X-Shopify-Hmac-Sha256` value.
    pub fn signature(&self) -> Option<&str> {
        self.headers.get(HMAC_HEADER).and_then(|value| value.to_str().ok())
    }

    /// The same delivery with a signature that does not match the body (a forged or
    /// corrupted request): well-formed base64 of the right length, one bit off.
    pub fn with_bad_signature(mut self) -> Self {
        let mut tag =
            self.signature().and_then(|signature| BASE64.decode(signature).ok()).unwrap_or_else(|| vec![0; 32]);
        if let Some(first) = tag.first_mut() {
            *first ^= 0x01;
        }
        self.headers.insert(HMAC_HEADER, header_value(BASE64.encode(tag)));
        self
    }
}

/// Builds signed deliveries for one shop.
#[derive(Clone)]
pub struct WebhookSigner {
    secret: String,
    shop_domain: HeaderValue,
    api_version: HeaderValue,
}

// Written by hand so the secret never reaches a log line.
impl fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSigner")
            .field("secret", &"<redacted>")
            .field("shop_domain", &self.shop_domain)
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl WebhookSigner {
    /// A signer for `shop_domain` (e.g. `acme.myshopify.com`) and `api_version`
    /// (e.g. `2026-10`), keyed with the app's shared `secret`.
    pub fn new(secret: impl Into<String>, shop_domain: &str, api_version: &str) -> Result<Self, StorefrontError> {
        let header = |field: &'static str, value: &str| {
            HeaderValue::from_str(value)
                .map_err(|_| StorefrontError::InvalidHeaderValue { field, value: value.to_owned() })
        };
        Ok(Self {
            secret: secret.into(),
            shop_domain: header("shop_domain", shop_domain)?,
            api_version: header("api_version", api_version)?,
        })
    }

    /// A new delivery of `order` under `topic`, with a fresh webhook id and event id.
    pub fn delivery(&self, order: &Order, topic: Topic) -> Delivery {
        self.deliveries_for_subscriptions(order, topic, 1).remove(0)
    }

    /// The deliveries of one merchant action to `subscriptions` subscriptions (at least
    /// one): each has its own `X-Shopify-Webhook-Id`, all share one `X-Shopify-Event-Id`
    /// and carry the order's `updated_at` (its `created_at` for `orders/create`) as
    /// `X-Shopify-Triggered-At`.
    pub fn deliveries_for_subscriptions(&self, order: &Order, topic: Topic, subscriptions: usize) -> Vec<Delivery> {
        // An Order has only string keys and numbers, which serde_json always serializes.
        let body = Bytes::from(serde_json::to_vec(order).unwrap_or_default());
        let event_id = uuid::Uuid::now_v7().to_string();
        let at = match topic {
            Topic::OrdersCreate => &order.created_at,
            Topic::OrdersUpdated => &order.updated_at,
        };
        let triggered_at = at.parse::<jiff::Timestamp>().unwrap_or_else(|_| jiff::Timestamp::now());
        (0..subscriptions.max(1)).map(|_| self.build(topic, body.clone(), event_id.clone(), triggered_at)).collect()
    }

    /// A new delivery of arbitrary `body` bytes, signed as they are (to test receivers
    /// with payloads the generator does not make, e.g. pretty-printed JSON).
    pub fn delivery_with_body(&self, topic: Topic, body: impl Into<Bytes>) -> Delivery {
        self.build(topic, body.into(), uuid::Uuid::now_v7().to_string(), jiff::Timestamp::now())
    }

    fn build(&self, topic: Topic, body: Bytes, event_id: String, triggered_at: jiff::Timestamp) -> Delivery {
        // Random (v7) rather than seeded ids: two runs with one seed send the same orders,
        // but they are new deliveries, and a receiver must not dedupe them as retries.
        let webhook_id = uuid::Uuid::now_v7().to_string();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        headers.insert(TOPIC_HEADER, HeaderValue::from_static(topic.as_str()));
        headers.insert(HMAC_HEADER, header_value(sign(self.secret.as_bytes(), &body)));
        headers.insert(SHOP_DOMAIN_HEADER, self.shop_domain.clone());
        headers.insert(API_VERSION_HEADER, self.api_version.clone());
        headers.insert(WEBHOOK_ID_HEADER, header_value(webhook_id.clone()));
        headers.insert(EVENT_ID_HEADER, header_value(event_id.clone()));
        headers.insert(TRIGGERED_AT_HEADER, header_value(triggered_at.to_string()));
        Delivery { webhook_id, event_id, topic, body, headers }
    }
}

/// Base64, UUIDs and RFC 3339 timestamps are always valid header values.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HMAC-SHA256 written from RFC 2104 on top of `sha2` alone, so the signature is
    /// checked against something that does not share the `hmac` crate's code.
    fn independent_hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        const BLOCK: usize = 64;
        let mut block_key = [0u8; BLOCK];
        if key.len() > BLOCK {
            block_key[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block_key[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| block_key.map(|k| k ^ byte);
        let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
        let outer = Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
        outer.into()
    }

    fn signer() -> WebhookSigner {
        WebhookSigner::new("shpss_test_secret", "acme.myshopify.com", "2026-10").unwrap()
    }

    #[test]
    fn the_signature_matches_an_independent_hmac_of_the_raw_body() {
        let delivery = signer().delivery_with_body(Topic::OrdersCreate, &b"{\"id\": 1}\n"[..]);
        let expected = independent_hmac_sha256(b"shpss_test_secret", &delivery.body);
        let signature = delivery.signature().expect("a signature header");
        assert_eq!(BASE64.decode(signature).unwrap(), expected);
        assert!(verify(b"shpss_test_secret", &delivery.body, signature));
        assert!(!verify(b"another_secret", &delivery.body, signature));
        assert!(!verify(b"shpss_test_secret", b"{\"id\": 1}", signature));

        // RFC 4231 test case 2, so the independent HMAC is itself right.
        assert_eq!(
            BASE64.encode(independent_hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            sign(b"Jefe", b"what do ya want for nothing?"),
        );
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
    }

    #[test]
    fn a_delivery_carries_the_shopify_headers() {
        let delivery = signer().delivery_with_body(Topic::OrdersCreate, &b"{}"[..]);
        let get = |name: &HeaderName| delivery.headers.get(name).unwrap().to_str().unwrap();
        assert_eq!(get(&TOPIC_HEADER), "orders/create");
        assert_eq!(get(&SHOP_DOMAIN_HEADER), "acme.myshopify.com");
        assert_eq!(get(&API_VERSION_HEADER), "2026-10");
        assert_eq!(get(&WEBHOOK_ID_HEADER), delivery.webhook_id);
        assert_eq!(get(&EVENT_ID_HEADER), delivery.event_id);
        assert_eq!(get(&header::CONTENT_TYPE), "application/json");
        get(&TRIGGERED_AT_HEADER).parse::<jiff::Timestamp>().expect("Triggered-At is RFC 3339");
        uuid::Uuid::parse_str(&delivery.webhook_id).expect("the webhook id is a UUID");

        let other = signer().delivery_with_body(Topic::OrdersCreate, &b"{}"[..]);
        assert_ne!(delivery.webhook_id, other.webhook_id);
    }

    #[test]
    fn a_bad_signature_is_well_formed_but_does_not_verify() {
        let delivery = signer().delivery_with_body(Topic::OrdersCreate, &b"{}"[..]);
        let good = delivery.signature().unwrap().to_owned();
        let bad = delivery.clone().with_bad_signature();
        let bad_signature = bad.signature().unwrap();
        assert_ne!(bad_signature, good);
        assert_eq!(BASE64.decode(bad_signature).unwrap().len(), 32);
        assert!(!verify(b"shpss_test_secret", &bad.body, bad_signature));
        assert_eq!(bad.webhook_id, delivery.webhook_id);
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        assert!(!format!("{:?}", signer()).contains("shpss_test_secret"));
    }

    #[test]
    fn a_header_value_with_a_newline_is_refused() {
        let refused = WebhookSigner::new("s", "acme\n.myshopify.com", "2026-10").unwrap_err();
        assert!(refused.to_string().contains("shop_domain"), "{refused}");
    }
}
