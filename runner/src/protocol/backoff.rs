//! The wait between attempts: exponential with jitter, and the system's `Retry-After`.

use std::time::Duration;

use entrepot_api::resource::RetrySpec;

/// The longest pause a value from upstream may impose: a `Retry-After`, a quota
/// window's reset, a replenishment time, the wait a granted rate implies. A target that
/// really wants a longer pause says so again an hour later, at the cost of one request;
/// a wrong or hostile value (a date in the next century, a rate of 1e-300 per second)
/// pauses a Connector for an hour, not for ever.
pub const MAX_UPSTREAM_WAIT: Duration = Duration::from_secs(3600);

/// A wait of `secs` seconds read or derived from upstream, within
/// `0..=MAX_UPSTREAM_WAIT`; `None` for a value that is no number of seconds (NaN).
/// Never panics, whatever the value (`Duration::from_secs_f64` does on overflow).
pub fn upstream_wait(secs: f64) -> Option<Duration> {
    (!secs.is_nan()).then(|| Duration::from_secs_f64(secs.clamp(0.0, MAX_UPSTREAM_WAIT.as_secs_f64())))
}

/// Reads `Retry-After` as delay-seconds (Shopify sends `2.0`, so fractions are
/// accepted) or as an HTTP date, at most [`MAX_UPSTREAM_WAIT`] away.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs >= 0.0).then(|| upstream_wait(secs)).flatten();
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    Some(if when > now {
        upstream_wait(when.duration_since(now).as_secs_f64()).unwrap_or_default()
    } else {
        Duration::ZERO
    })
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
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
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

    #[test]
    fn an_absurd_wait_from_upstream_is_an_hour_at_most_and_never_a_panic() {
        for far in ["1e300", "inf", "99999999999999999999", "Fri, 01 Jan 9999 00:00:00 GMT"] {
            assert_eq!(parse_retry_after(far), Some(MAX_UPSTREAM_WAIT), "{far}");
        }
        assert_eq!(upstream_wait(f64::INFINITY), Some(MAX_UPSTREAM_WAIT));
        assert_eq!(upstream_wait(1.0 / 1e-300), Some(MAX_UPSTREAM_WAIT));
        assert_eq!(upstream_wait(-5.0), Some(Duration::ZERO));
        assert_eq!(upstream_wait(f64::NAN), None);
        assert_eq!(upstream_wait(0.25), Some(Duration::from_millis(250)));
    }
}
