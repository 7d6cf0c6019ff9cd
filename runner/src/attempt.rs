//! One way to attempt a call to an external system, shared by delivery, refetch and both
//! pollers: take a quota slot, send, classify the answer, and back off (honouring the
//! system's `Retry-After`) before the next attempt or stop. [`decide`] is the pure rule;
//! [`within_quota`] the slot around one call; [`with_retries`] the loop for callers that
//! wait in place (refetch, pollers). The delivery worker schedules its retries itself,
//! per ordering key, but decides with the same rule.

use std::{future::Future, time::Duration};

use tokio::sync::watch;

use crate::{
    protocol::{Answer, ErrorCategory, Verdict, backoff},
    queue::{Attempt, DeadLetterReason},
    quota::{Quota, Slot},
};

use entrepot_api::resource::RetrySpec;

/// The dead-letter reason of a record the system refused: `auth` for refused
/// credentials, else `rejected`.
pub fn refusal(category: ErrorCategory) -> DeadLetterReason {
    if category == ErrorCategory::Auth { DeadLetterReason::Auth } else { DeadLetterReason::Rejected }
}

/// What a record's attempts so far count for under the retry rule, the attempt being
/// decided included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Attempts that failed for a reason other than throttling.
    pub failures: u32,
    /// Attempts the system throttled.
    pub throttles: u32,
    /// Since the first throttled attempt (zero when none was).
    pub throttled_for: Duration,
}

impl Tally {
    /// The tally of a record's `attempts` (the one being decided included) at `now_ms`.
    pub fn of(attempts: &[Attempt], now_ms: i64) -> Self {
        let first_throttle = attempts.iter().find(|a| a.throttled).map(|a| a.at_ms);
        let throttles = attempts.iter().filter(|a| a.throttled).count() as u32;
        Self {
            failures: attempts.len() as u32 - throttles,
            throttles,
            throttled_for: first_throttle
                .map(|at| Duration::from_millis(now_ms.saturating_sub(at).max(0) as u64))
                .unwrap_or_default(),
        }
    }
}

/// What follows an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The system has it (or gave it): nothing follows.
    Done,
    /// A transient failure: try again after this wait.
    RetryIn(Duration),
    /// The system refused for a reason no retry fixes.
    Refused,
    /// Transient failures, but the policy's attempts are used up.
    Exhausted,
    /// The system has throttled it for longer than the policy's `maxThrottledFor`.
    ThrottledTooLong,
}

/// What follows an attempt whose answer meant `verdict`, the record's attempts so far
/// (that one included) being `tally`, under `policy`: the wait grows exponentially, and a
/// `Retry-After` from the system wins when it is longer (see [`backoff`]). Throttling
/// spends no attempt: it is retried until `maxThrottledFor` has passed since the first
/// throttled attempt.
pub fn decide(policy: &RetrySpec, tally: Tally, verdict: &Verdict) -> Next {
    match verdict {
        Verdict::Delivered => Next::Done,
        Verdict::Reject { .. } => Next::Refused,
        Verdict::Retry { after, .. } if verdict.throttled() => {
            if tally.throttled_for >= policy.max_throttled_for.get() {
                Next::ThrottledTooLong
            } else {
                Next::RetryIn(backoff(policy, tally.throttles, *after))
            }
        }
        Verdict::Retry { .. } if tally.failures >= policy.max_attempts => Next::Exhausted,
        Verdict::Retry { after, .. } => Next::RetryIn(backoff(policy, tally.failures, *after)),
    }
}

/// Makes one call within `quota`: waits for `slot`'s admission, calls, and feeds what
/// the call's answer (`answer_of` finds it in the result, if there is one) says about the
/// quota back before the slot is freed.
pub async fn within_quota<R>(
    quota: &Quota,
    slot: Slot,
    call: impl Future<Output = R>,
    answer_of: impl Fn(&R) -> Option<&Answer>,
) -> R {
    let permit = quota.admit(slot).await;
    let result = call.await;
    if let Some(Answer::Response { quota: signal, .. }) = answer_of(&result) {
        quota.observe_sent(signal, Some(permit.in_flight()));
    }
    result
}

/// For [`within_quota`]: a call whose result is the answer itself.
pub fn whole_answer(answer: &Answer) -> Option<&Answer> {
    Some(answer)
}

/// A failed attempt: what it means, and what the caller keeps of it.
#[derive(Debug)]
pub struct Failed<F> {
    /// `Retry` or `Reject` (a `Delivered` here, a success that could not be used, is
    /// retried).
    pub verdict: Verdict,
    /// The caller's account of the failure.
    pub detail: F,
}

/// How [`with_retries`] ended.
#[derive(Debug)]
pub enum Outcome<T, F> {
    /// An attempt succeeded.
    Done(T),
    /// The system refused: the last failure, and how many attempts were made.
    Refused {
        /// The last failure.
        last: F,
        /// Attempts made.
        attempts: u32,
    },
    /// The attempts ran out: the last failure, and how many were made.
    Exhausted {
        /// The last failure.
        last: F,
        /// Attempts made.
        attempts: u32,
    },
    /// The system throttled it for longer than the policy allows: the last failure, and
    /// how many attempts were made.
    ThrottledTooLong {
        /// The last failure.
        last: F,
        /// Attempts made.
        attempts: u32,
    },
    /// `shutdown` turned true while waiting to retry.
    Interrupted,
}

/// Calls `attempt` (with its number, from 1) until it succeeds, is refused or the
/// policy's attempts run out, waiting as [`decide`] says in between; `on_retry` hears of
/// each failure that is retried, with the wait before the next attempt. With `shutdown`,
/// a wait ends early when it turns true.
pub async fn with_retries<T, F, A: Future<Output = Result<T, Failed<F>>>>(
    policy: &RetrySpec,
    mut shutdown: Option<&mut watch::Receiver<bool>>,
    mut attempt: impl FnMut(u32) -> A,
    mut on_retry: impl FnMut(&F, u32, Duration),
) -> Outcome<T, F> {
    let mut number = 0;
    let mut tally = Tally::default();
    let mut first_throttle = None;
    loop {
        number += 1;
        let failed = match attempt(number).await {
            Ok(done) => return Outcome::Done(done),
            Err(failed) => failed,
        };
        let verdict = match failed.verdict {
            // A success the caller could not use: transient.
            Verdict::Delivered => {
                Verdict::Retry { after: None, reason: String::new(), category: ErrorCategory::Server }
            }
            other => other,
        };
        if verdict.throttled() {
            tally.throttles += 1;
            tally.throttled_for = first_throttle.get_or_insert_with(tokio::time::Instant::now).elapsed();
        } else {
            tally.failures += 1;
        }
        let delay = match decide(policy, tally, &verdict) {
            Next::RetryIn(delay) => delay,
            Next::Refused => return Outcome::Refused { last: failed.detail, attempts: number },
            Next::ThrottledTooLong => return Outcome::ThrottledTooLong { last: failed.detail, attempts: number },
            Next::Exhausted | Next::Done => return Outcome::Exhausted { last: failed.detail, attempts: number },
        };
        on_retry(&failed.detail, number, delay);
        match shutdown.as_deref_mut() {
            Some(shutdown) => tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return Outcome::Interrupted,
            },
            None => tokio::time::sleep(delay).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetrySpec {
        RetrySpec {
            max_attempts,
            initial_backoff: entrepot_api::resource::Duration(Duration::from_millis(1)),
            max_backoff: entrepot_api::resource::Duration(Duration::from_millis(4)),
            ..Default::default()
        }
    }

    fn failures(failures: u32) -> Tally {
        Tally { failures, ..Default::default() }
    }

    fn throttled() -> Verdict {
        Verdict::Retry { after: None, reason: "429".into(), category: ErrorCategory::Throttled }
    }

    fn retry(after: Option<Duration>) -> Verdict {
        Verdict::Retry { after, reason: "503".into(), category: ErrorCategory::Server }
    }

    #[test]
    fn the_rule_retries_transient_failures_until_the_attempts_run_out_and_honours_retry_after() {
        let p = policy(3);
        assert_eq!(decide(&p, failures(0), &Verdict::Delivered), Next::Done);
        let reject = Verdict::Reject { reason: "400".into(), category: ErrorCategory::Rejected };
        assert_eq!(decide(&p, failures(1), &reject), Next::Refused);
        assert!(matches!(decide(&p, failures(2), &retry(None)), Next::RetryIn(d) if d <= Duration::from_millis(2)));
        assert_eq!(
            decide(&p, failures(1), &retry(Some(Duration::from_secs(5)))),
            Next::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(decide(&p, failures(3), &retry(None)), Next::Exhausted);
    }

    #[test]
    fn throttling_spends_no_attempt_only_time_up_to_max_throttled_for() {
        let p = policy(3);
        let day = Duration::from_secs(24 * 3600);
        // Fifty throttles and two failures: still retried.
        let tally = Tally { failures: 2, throttles: 50, throttled_for: Duration::from_secs(600) };
        assert!(matches!(decide(&p, tally, &throttled()), Next::RetryIn(_)));
        let tally = Tally { throttled_for: day, ..tally };
        assert_eq!(decide(&p, tally, &throttled()), Next::ThrottledTooLong);
        // A failure that is not throttling still counts against maxAttempts.
        assert_eq!(decide(&p, Tally { failures: 3, ..tally }, &retry(None)), Next::Exhausted);
    }

    #[test]
    fn the_tally_of_a_history_counts_throttles_apart_and_times_them_from_the_first() {
        let attempt = |at_ms, throttled| Attempt { at_ms, status: None, outcome: String::new(), throttled };
        let history = [attempt(1_000, false), attempt(2_000, true), attempt(5_000, true), attempt(6_000, false)];
        assert_eq!(
            Tally::of(&history, 9_000),
            Tally { failures: 2, throttles: 2, throttled_for: Duration::from_secs(7) }
        );
        assert_eq!(Tally::of(&history[..1], 9_000), Tally { failures: 1, ..Default::default() });
    }

    #[tokio::test]
    async fn the_loop_stops_at_success_refusal_or_the_last_attempt() {
        let mut calls = 0;
        let done = with_retries(
            &policy(5),
            None,
            |n| {
                calls += 1;
                async move { if n < 3 { Err(Failed { verdict: retry(None), detail: n }) } else { Ok("page") } }
            },
            |_, _, _| {},
        )
        .await;
        assert!(matches!(done, Outcome::Done("page")));
        assert_eq!(calls, 3);
        let mut retried = Vec::new();
        let exhausted = with_retries(
            &policy(2),
            None,
            |n| async move { Err::<(), _>(Failed { verdict: retry(None), detail: n }) },
            |detail, n, _| retried.push((*detail, n)),
        )
        .await;
        assert!(matches!(exhausted, Outcome::Exhausted { last: 2, attempts: 2 }));
        assert_eq!(retried, [(1, 1)]);
        let reject = Verdict::Reject { reason: "404".into(), category: ErrorCategory::Rejected };
        let refused = with_retries(
            &policy(5),
            None,
            |_| std::future::ready(Err::<(), _>(Failed { verdict: reject.clone(), detail: "gone" })),
            |_, _, _| {},
        )
        .await;
        assert!(matches!(refused, Outcome::Refused { last: "gone", attempts: 1 }));
    }

    #[tokio::test]
    async fn a_call_within_the_quota_holds_its_slot_and_feeds_the_answer_back() {
        use std::sync::Arc;

        use crate::protocol::QuotaSignal;

        use entrepot_api::resource::{ConnectorLimits, Priority};
        let limits = ConnectorLimits { requests_per_second: Some(10.0), concurrency: Some(1), ..Default::default() };
        let quota = Arc::new(Quota::new(Some(&limits)));
        let slot = quota.try_slot(Priority::Normal).expect("a free slot");
        let throttled = Answer::Response {
            status: reqwest::StatusCode::TOO_MANY_REQUESTS,
            retry_after: None,
            body: String::new(),
            quota: QuotaSignal { throttled: true, retry_after: Some(Duration::from_millis(1)), ..Default::default() },
            location: None,
        };
        let answer = within_quota(
            &quota,
            slot,
            async {
                assert!(quota.try_slot(Priority::High).is_none(), "the only slot is held during the call");
                throttled
            },
            whole_answer,
        )
        .await;
        assert!(matches!(answer, Answer::Response { .. }));
        assert!(quota.rate().is_some_and(|r| r < 10.0), "a 429 cuts the rate: {:?}", quota.rate());
        assert!(quota.try_slot(Priority::Normal).is_some(), "the slot is free again");
    }

    #[tokio::test]
    async fn a_shutdown_interrupts_the_wait() {
        let (stop, mut shutdown) = watch::channel(false);
        stop.send(true).unwrap();
        let slow = RetrySpec {
            max_attempts: 5,
            initial_backoff: entrepot_api::resource::Duration::from_secs(60),
            max_backoff: entrepot_api::resource::Duration::from_secs(60),
            ..Default::default()
        };
        let outcome = with_retries(
            &slow,
            Some(&mut shutdown),
            |_| async { Err::<(), _>(Failed { verdict: retry(None), detail: () }) },
            |_, _, _| {},
        )
        .await;
        assert!(matches!(outcome, Outcome::Interrupted));
    }
}
