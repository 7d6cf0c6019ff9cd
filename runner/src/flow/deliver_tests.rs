use super::*;
use crate::protocol::ErrorCategory;

fn policy() -> RetrySpec {
    RetrySpec {
        max_attempts: 3,
        initial_backoff: entrepot_api::resource::Duration::from_secs(1),
        max_backoff: entrepot_api::resource::Duration::from_secs(8),
        ..Default::default()
    }
}

fn failures(failures: u32) -> Tally {
    Tally { failures, ..Default::default() }
}

#[test]
fn delivered_is_acknowledged_and_a_transient_failure_retried_after_its_backoff() {
    let now = Instant::now();
    assert_eq!(decide(&Verdict::Delivered, failures(0), &policy(), now), Settlement::Ack);
    let retry = Verdict::Retry {
        after: Some(Duration::from_secs(30)),
        reason: "429".into(),
        category: ErrorCategory::Throttled,
    };
    assert_eq!(
        decide(&retry, Tally { throttles: 1, ..Default::default() }, &policy(), now),
        Settlement::RetryAt(now + Duration::from_secs(30))
    );
    let retry = Verdict::Retry { after: None, reason: "503".into(), category: ErrorCategory::Server };
    match decide(&retry, failures(2), &policy(), now) {
        Settlement::RetryAt(when) => {
            assert!(when >= now + Duration::from_secs(1) && when <= now + Duration::from_secs(2), "{when:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rejection_or_the_last_attempt_is_dead_lettered_with_its_reason() {
    let now = Instant::now();
    let rejected =
        Verdict::Reject { reason: "400 Bad Request: no such item".into(), category: ErrorCategory::Rejected };
    assert_eq!(
        decide(&rejected, failures(1), &policy(), now),
        Settlement::DeadLetter(GiveUp {
            reason: DeadLetterReason::Rejected,
            message: "400 Bad Request: no such item".into()
        })
    );
    let auth = Verdict::Reject { reason: "auth: 401".into(), category: ErrorCategory::Auth };
    assert!(matches!(
        decide(&auth, failures(1), &policy(), now),
        Settlement::DeadLetter(GiveUp { reason: DeadLetterReason::Auth, .. })
    ));
    let retry = Verdict::Retry { after: None, reason: "target error: 503".into(), category: ErrorCategory::Server };
    assert_eq!(
        decide(&retry, failures(3), &policy(), now),
        Settlement::DeadLetter(GiveUp {
            reason: DeadLetterReason::RetriesExhausted,
            message: "3 attempts failed; last: target error: 503".into()
        })
    );
}

#[test]
fn throttling_is_retried_past_max_attempts_until_max_throttled_for() {
    let now = Instant::now();
    let throttled =
        Verdict::Retry { after: None, reason: "429 Too Many Requests".into(), category: ErrorCategory::Throttled };
    let tally = Tally { failures: 2, throttles: 40, throttled_for: Duration::from_secs(3600) };
    assert!(matches!(decide(&throttled, tally, &policy(), now), Settlement::RetryAt(_)));
    let tally = Tally { throttled_for: Duration::from_secs(24 * 3600 + 5), ..tally };
    assert_eq!(
        decide(&throttled, tally, &policy(), now),
        Settlement::DeadLetter(GiveUp {
            reason: DeadLetterReason::ThrottledTooLong,
            message: "throttled for 24h5s (40 throttled attempts, past delivery.retry.maxThrottledFor); \
                      last: 429 Too Many Requests"
                .into()
        })
    );
}
