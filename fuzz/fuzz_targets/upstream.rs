//! What upstream systems answer: `Retry-After`, rate-limit and quota headers of every
//! Connector type, GraphQL cost bodies, `Link` pagination headers. The first line is a
//! `Retry-After` value, the next lines `name: value` headers, and the whole text is also
//! the body. Nothing may panic, and no wait read from it may exceed an hour.
#![no_main]

use entrepot::{
    protocol::{MAX_UPSTREAM_WAIT, QuotaSignal, parse_retry_after, system},
    source::poll::page::next_link,
};
use entrepot_api::resource::ConnectorType;
use libfuzzer_sys::fuzz_target;
use reqwest::{
    StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};

const TYPES: [ConnectorType; 9] = [
    ConnectorType::Shopify,
    ConnectorType::BigCommerce,
    ConnectorType::NetSuite,
    ConnectorType::Dynamics365,
    ConnectorType::SapOdata,
    ConnectorType::AmazonSp,
    ConnectorType::Walmart,
    ConnectorType::Rest,
    ConnectorType::Postgres,
];

fn bounded(signal: &QuotaSignal) {
    for wait in [signal.retry_after, signal.reset_after].into_iter().flatten() {
        assert!(wait <= MAX_UPSTREAM_WAIT, "a wait of {wait:?} from upstream");
    }
}

fuzz_target!(|text: &str| {
    let mut lines = text.split('\n');
    let retry_after = parse_retry_after(lines.next().unwrap_or_default());
    if let Some(wait) = retry_after {
        assert!(wait <= MAX_UPSTREAM_WAIT, "Retry-After read as {wait:?}");
    }
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim()))
        {
            headers.append(name, value);
        }
    }
    let _ = next_link(headers.get_all(reqwest::header::LINK).iter().filter_map(|v| v.to_str().ok()));
    let _ = next_link(text.lines());
    for status in [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS, StatusCode::SERVICE_UNAVAILABLE] {
        let signal = QuotaSignal::read(status, &headers, retry_after);
        bounded(&signal);
        for kind in TYPES {
            let mut read = signal.clone();
            system(kind).read_quota(status, &headers, text, &mut read);
            bounded(&read);
        }
    }
});
