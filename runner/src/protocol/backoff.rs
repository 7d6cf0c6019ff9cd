//! The wait between attempts: exponential with jitter, and the system's `Retry-After`.

use std::time::Duration;

use entrepot_api::resource::RetrySpec;

/// Reads `Retry-After` as delay-seconds (Shopify sends `2.0`, so fractions are
/// accepted) or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    Some(if when > now { Duration::try_from(when - now).unwrap_or_default() } else { Duration::ZERO })
}

/// The wait before attempt number `attempt + 1` (the first retry follows attempt 1):
/// exponential from `initial_backoff`, capped at `max_backoff`, with full jitter in its
/// upper half so retries from many records spread out. A `Retry-After` from the target
/// wins when it is longer.
pub fn backoff(policy: &RetrySpec, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let initial = policy.initial_backoff.get();
    let max = policy.max_backoff.get().max(initial);
    let exp = initial.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30))).min(max);
    let jittered = exp.mul_f64(rand::random_range(0.5..=1.0));
    match retry_after {
        Some(after) if after > jittered => after,
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Answer, Verdict, classify};

    fn response(status: u16, retry_after: Option<&str>) -> Answer {
        Answer::Response {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            retry_after: retry_after.map(Into::into),
            body: String::new(),
            quota: Default::default(),
            location: None,
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("2.0"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120))
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let d = parse_retry_after(&future).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        assert_eq!(parse_retry_after("soon"), None);
        assert!(
            matches!(classify(&response(429, Some("3"))), Verdict::Retry { after: Some(d), .. } if d == Duration::from_secs(3))
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_yields_to_retry_after() {
        let policy = RetrySpec {
            max_attempts: 10,
            initial_backoff: entrepot_api::resource::Duration::from_secs(1),
            max_backoff: entrepot_api::resource::Duration::from_secs(8),
            ..Default::default()
        };
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)] {
            let d = backoff(&policy, attempt, None);
            let full = Duration::from_secs(full);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert_eq!(backoff(&policy, 1, Some(Duration::from_secs(30))), Duration::from_secs(30));
    }
}
