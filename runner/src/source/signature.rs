//! Webhook signature verification over the raw body, in constant time: Shopify's
//! `X-Shopify-Hmac-Sha256` and Standard Webhooks (BigCommerce).

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use entrepot_api::resource::SignatureScheme;

/// Why a delivery's signature was refused. Deliberately vague towards the caller: the
/// reason goes to logs and metrics, not into the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header.
    #[error("signature header missing")]
    Missing,
    /// The header is not base64.
    #[error("signature header malformed")]
    Malformed,
    /// The signature does not match the body.
    #[error("signature does not match")]
    Mismatch,
    /// The signed timestamp is outside the tolerance (a replay, or a clock far off).
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// The flow's webhook secret is empty: every delivery is refused (an empty key
    /// would let anyone sign).
    #[error("the webhook secret is empty; set the Connector's spec.webhook.secretRef to a non-empty value")]
    NoSecret,
}

/// Whether `scheme` signs the body only, and not the sender's delivery id (nor a
/// timestamp): its deliveries are deduplicated by the body itself.
pub fn signs_body_only(scheme: SignatureScheme) -> bool {
    !matches!(scheme, SignatureScheme::StandardWebhooks)
}

/// A webhook secret as read from a Secret: without the line break a file or `echo` left
/// around it (a secret that ends in one would fail every delivery). Only `\r` and `\n`
/// go: they cannot be part of a base64 or hex key, nor of an API key typed in a header.
pub fn webhook_secret(raw: &str) -> &[u8] {
    raw.trim_matches(['\r', '\n']).as_bytes()
}

/// How long a Standard Webhooks signature is accepted by default (the specification's
/// recommendation).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

impl SignatureError {
    /// Fixed label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "signature_missing",
            Self::Malformed => "signature_malformed",
            Self::Mismatch => "signature_mismatch",
            Self::Stale => "signature_stale",
            Self::NoSecret => "secret_empty",
        }
    }
}

/// The header that carries the signature for a scheme; `custom` is the Connector's
/// `spec.webhook.header`, which `hmac-sha256` and `api-key` use.
pub fn signature_header(scheme: SignatureScheme, custom: Option<&str>) -> String {
    match scheme {
        SignatureScheme::ShopifyHmacSha256 => "x-shopify-hmac-sha256".into(),
        SignatureScheme::StandardWebhooks => "webhook-signature".into(),
        SignatureScheme::HmacSha256 | SignatureScheme::ApiKey => custom.unwrap_or_default().to_ascii_lowercase(),
    }
}

/// Checks a delivery's signature headers against `body`, with any of `secrets` (the
/// current one first, then one still accepted during a rotation). Standard Webhooks
/// signatures must be dated within `tolerance` of `now` (Unix seconds).
pub fn verify_delivery(
    scheme: SignatureScheme,
    custom_header: Option<&str>,
    secrets: &[&[u8]],
    body: &[u8],
    headers: &HeaderMap,
    tolerance: Duration,
    now: i64,
) -> Result<(), SignatureError> {
    let header = headers.get(signature_header(scheme, custom_header).as_str()).map(|v| v.as_bytes());
    let mut last = SignatureError::NoSecret;
    // An empty key fails closed: HMAC under it is anyone's, and an empty API key matches
    // an empty header.
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let checked = match scheme {
            SignatureScheme::ShopifyHmacSha256 | SignatureScheme::HmacSha256 | SignatureScheme::ApiKey => {
                verify(scheme, secret, body, header)
            }
            SignatureScheme::StandardWebhooks => standard_webhooks(secret, body, headers, tolerance, now),
        };
        match checked {
            Ok(()) => return Ok(()),
            // A malformed or stale delivery stays so whatever the key.
            Err(
                e @ (SignatureError::Missing
                | SignatureError::Malformed
                | SignatureError::Stale
                | SignatureError::NoSecret),
            ) => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Standard Webhooks: `webhook-signature` holds space-separated `v1,<base64>` entries, one
/// of which must be the HMAC-SHA256 of `"<webhook-id>.<webhook-timestamp>.<body>"`.
/// BigCommerce's key is base64(client secret), so the HMAC key is the client secret's bytes.
fn standard_webhooks(
    secret: &[u8],
    body: &[u8],
    headers: &HeaderMap,
    tolerance: Duration,
    now: i64,
) -> Result<(), SignatureError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let (Some(id), Some(timestamp), Some(signatures)) =
        (text("webhook-id"), text("webhook-timestamp"), text("webhook-signature"))
    else {
        return Err(SignatureError::Missing);
    };
    let timestamp: i64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    if timestamp.abs_diff(now) > tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let mut any = false;
    for entry in signatures.split(' ').filter(|e| !e.is_empty()) {
        // Other versions (e.g. `v1a`, asymmetric) are skipped, not refused.
        let Some(encoded) = entry.strip_prefix("v1,") else { continue };
        let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(encoded) else { continue };
        any = true;
        // verify_slice compares in constant time.
        if mac.clone().verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(if any { SignatureError::Mismatch } else { SignatureError::Malformed })
}

/// Checks `header` (the signature header's value, if any) against `body`.
pub fn verify(
    scheme: SignatureScheme,
    secret: &[u8],
    body: &[u8],
    header: Option<&[u8]>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    match scheme {
        // Standard Webhooks signs headers too: see `verify_delivery`.
        SignatureScheme::StandardWebhooks => Err(SignatureError::Malformed),
        SignatureScheme::ApiKey => {
            // Both sides through the same MAC, then compared in constant time: neither
            // the key's length nor its prefix shows in the timing.
            let digest = |bytes: &[u8]| {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(b"entrepot api-key").expect("HMAC takes keys of any length");
                mac.update(bytes);
                mac
            };
            let sent = digest(header.trim_ascii()).finalize().into_bytes();
            digest(secret).verify_slice(&sent).map_err(|_| SignatureError::Mismatch)
        }
        SignatureScheme::ShopifyHmacSha256 | SignatureScheme::HmacSha256 => {
            let expected = base64::engine::general_purpose::STANDARD
                .decode(header.trim_ascii())
                .map_err(|_| SignatureError::Malformed)?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
            mac.update(body);
            // verify_slice compares in constant time.
            mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
        }
    }
}

/// Signs `body` the way `scheme` does (for tests, the demo and the simulator's peers).
pub fn sign(scheme: SignatureScheme, secret: &[u8], body: &[u8]) -> String {
    match scheme {
        // Standard Webhooks signs the id and timestamp too: see `sign_standard_webhooks`.
        SignatureScheme::StandardWebhooks => sign_standard_webhooks(secret, "", 0, body),
        SignatureScheme::ApiKey => String::from_utf8_lossy(secret).into_owned(),
        SignatureScheme::ShopifyHmacSha256 | SignatureScheme::HmacSha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
            mac.update(body);
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
    }
}

/// The Standard Webhooks signature (`v1,<base64>`) of message `id` at `timestamp`.
pub fn sign_standard_webhooks(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEME: SignatureScheme = SignatureScheme::ShopifyHmacSha256;

    #[test]
    fn a_known_shopify_signature_verifies() {
        // HMAC-SHA256("hush", "{}") computed independently (python hmac + base64).
        let header = "UFwgrGBPZilFtmKh8TqcovA78LGYb1BdWu9I4Q2oyRg=";
        assert_eq!(sign(SCHEME, b"hush", b"{}"), header);
        assert_eq!(verify(SCHEME, b"hush", b"{}", Some(header.as_bytes())), Ok(()));
    }

    #[test]
    fn tampering_a_wrong_key_or_a_missing_header_fails() {
        let sig = sign(SCHEME, b"hush", br#"{"id":1}"#);
        assert_eq!(verify(SCHEME, b"hush", br#"{"id":2}"#, Some(sig.as_bytes())), Err(SignatureError::Mismatch));
        assert_eq!(verify(SCHEME, b"other", br#"{"id":1}"#, Some(sig.as_bytes())), Err(SignatureError::Mismatch));
        assert_eq!(verify(SCHEME, b"hush", b"{}", None), Err(SignatureError::Missing));
        assert_eq!(verify(SCHEME, b"hush", b"{}", Some(b"not base64!")), Err(SignatureError::Malformed));
    }

    fn standard(id: &str, timestamp: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    #[test]
    fn the_standard_webhooks_vector_verifies_and_stale_wrong_or_rotated_keys_are_told_apart() {
        // The Standard Webhooks specification's example (secret whsec_MfKQ…, key = the
        // base64 part decoded).
        let key = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, at, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign_standard_webhooks(&key, id, at, body), good);
        let scheme = SignatureScheme::StandardWebhooks;
        let check = |secrets: &[&[u8]], headers: &HeaderMap, now| {
            verify_delivery(scheme, None, secrets, body, headers, DEFAULT_TOLERANCE, now)
        };
        assert_eq!(check(&[&key], &standard(id, at, good), at + 10), Ok(()));
        // Several signatures, one of them good.
        assert_eq!(check(&[&key], &standard(id, at, &format!("v1,AAAA {good}")), at), Ok(()));
        assert_eq!(check(&[b"other"], &standard(id, at, good), at), Err(SignatureError::Mismatch));
        assert_eq!(check(&[b"other", &key], &standard(id, at, good), at), Ok(()), "a previous secret still verifies");
        assert_eq!(check(&[&key], &standard(id, at, good), at + 301), Err(SignatureError::Stale));
        assert_eq!(check(&[&key], &standard("msg_other", at, good), at), Err(SignatureError::Mismatch));
        assert_eq!(check(&[&key], &standard(id, at, "v2,xyz"), at), Err(SignatureError::Malformed));
        assert_eq!(check(&[&key], &HeaderMap::new(), at), Err(SignatureError::Missing));
    }

    #[test]
    fn a_custom_hmac_header_and_an_api_key_are_checked_under_the_configured_header() {
        let body = br#"{"eventId":"mv-1"}"#;
        let mut headers = HeaderMap::new();
        headers.insert("x-wms-hmac-sha256", sign(SignatureScheme::HmacSha256, b"wms", body).parse().unwrap());
        let check = |scheme, header, secret: &[u8], headers: &HeaderMap| {
            verify_delivery(scheme, Some(header), &[secret], body, headers, DEFAULT_TOLERANCE, 0)
        };
        assert_eq!(check(SignatureScheme::HmacSha256, "X-Wms-Hmac-Sha256", b"wms", &headers), Ok(()));
        assert_eq!(
            check(SignatureScheme::HmacSha256, "X-Wms-Hmac-Sha256", b"other", &headers),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(check(SignatureScheme::HmacSha256, "X-Other", b"wms", &headers), Err(SignatureError::Missing));

        let mut keyed = HeaderMap::new();
        keyed.insert("x-api-key", "eventbridge-key".parse().unwrap());
        assert_eq!(check(SignatureScheme::ApiKey, "X-Api-Key", b"eventbridge-key", &keyed), Ok(()));
        assert_eq!(
            check(SignatureScheme::ApiKey, "X-Api-Key", b"eventbridge-key-2", &keyed),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(SignatureScheme::ApiKey, "X-Api-Key", b"eventbridge-ke", &keyed),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(check(SignatureScheme::ApiKey, "X-Key", b"eventbridge-key", &keyed), Err(SignatureError::Missing));
    }
}
