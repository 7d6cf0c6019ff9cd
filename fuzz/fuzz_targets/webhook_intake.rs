//! Webhook intake, as far as it goes before the queue: the signature check of every
//! scheme over fuzzed headers and body, the JSON depth limit, then the quickstart's Shopify
//! Mapping on what passes. The first byte picks the scheme; the rest is `name: value`
//! header lines, a blank line, and the body.
//!
//! Properties: nothing panics or overflows the stack; a fuzzed header is accepted only
//! when it is the signature the secret gives (no false accept); the right signature is
//! always accepted (no false refusal); an empty secret accepts nothing.
#![no_main]

use std::{sync::LazyLock, time::Duration};

use entrepot::source::signature::{sign, sign_standard_webhooks, signature_header, verify_delivery};
use entrepot_api::{
    mapping::{Program, check_depth},
    resource::SignatureScheme,
};
use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

const SECRET: &[u8] = b"whsec_fuzz-secret";
const CUSTOM: &str = "x-wms-hmac-sha256";
const NOW: i64 = 1_765_000_000;
const SCHEMES: [SignatureScheme; 4] = [
    SignatureScheme::ShopifyHmacSha256,
    SignatureScheme::StandardWebhooks,
    SignatureScheme::HmacSha256,
    SignatureScheme::ApiKey,
];

/// The quickstart's Shopify order Mapping, as a runner compiles it.
static MAPPING: LazyLock<Program> = LazyLock::new(|| {
    let text = include_str!("../../examples/quickstart/mappings.yaml");
    let start = text.find("  program: |\n").expect("the quickstart has a program") + "  program: |\n".len();
    let program: String = text[start..]
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.get(4..).unwrap_or_default()))
        .collect();
    Program::compile(&program, &Default::default()).expect("the quickstart's Mapping compiles")
});

fn verify(scheme: SignatureScheme, secrets: &[&[u8]], body: &[u8], headers: &HeaderMap) -> bool {
    let custom = matches!(scheme, SignatureScheme::HmacSha256 | SignatureScheme::ApiKey).then_some(CUSTOM);
    verify_delivery(scheme, custom, secrets, body, headers, Duration::from_secs(300), NOW).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let scheme = SCHEMES[usize::from(which) % SCHEMES.len()];
    let split = rest.windows(2).position(|w| w == b"\n\n").unwrap_or(rest.len());
    let (head, body) = (&rest[..split], rest.get(split + 2..).unwrap_or_default());
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(line[..colon].trim_ascii()), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        {
            headers.append(name, value);
        }
    }
    let custom = matches!(scheme, SignatureScheme::HmacSha256 | SignatureScheme::ApiKey).then_some(CUSTOM);
    let header = HeaderName::from_bytes(signature_header(scheme, custom).as_bytes()).expect("a header name");

    // No false accept: what the fuzzer wrote passes only if it is the signature itself.
    if verify(scheme, &[SECRET], body, &headers) && scheme != SignatureScheme::StandardWebhooks {
        let sent = headers.get(&header).map(HeaderValue::as_bytes).unwrap_or_default();
        assert_eq!(sent, sign(scheme, SECRET, body).as_bytes(), "a signature that is not the secret's passed");
    }
    assert!(!verify(scheme, &[b""], body, &headers), "an empty secret accepted a delivery");

    // No false refusal: the right signature always passes.
    let mut signed = headers.clone();
    let signature = match scheme {
        SignatureScheme::StandardWebhooks => {
            let id = "msg_fuzz";
            signed.insert("webhook-id", HeaderValue::from_static(id));
            signed.insert("webhook-timestamp", HeaderValue::from(NOW));
            sign_standard_webhooks(SECRET, id, NOW, body)
        }
        _ => sign(scheme, SECRET, body),
    };
    signed.insert(header, HeaderValue::from_str(&signature).expect("signatures are header values"));
    assert!(verify(scheme, &[SECRET], body, &signed), "a correctly signed delivery was refused");

    // What intake does with an accepted body: the depth limit, then the Mapping.
    if check_depth(body).is_ok() {
        let _ = MAPPING.run_json(body);
    }
});
