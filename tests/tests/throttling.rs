//! Throttling is the target asking to slow down, not the record failing: it spends no
//! attempt of `delivery.retry.maxAttempts`, only time, up to `maxThrottledFor`.

use std::time::Duration;

use entrepot_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const ORDERS: u64 = 4;
const THROTTLES: usize = 50;

/// The quickstart flow against `target`, retrying every few milliseconds.
fn config(target: &ScriptedTarget) -> entrepot_api::config::RunnerConfig {
    let mut config = quickstart_config(&target.url);
    let retry = &mut config.flows[0].spec.delivery.retry;
    retry.initial_backoff = Duration::from_millis(2).into();
    retry.max_backoff = Duration::from_millis(5).into();
    config
}

async fn send(runner: &InProcessRunner, ids: impl Iterator<Item = u64>) {
    for id in ids {
        let body = shopify_order(id, "MUG-WHT", "2026-11-27T10:00:00-05:00");
        assert_eq!(post_webhook(&runner.webhook(FLOW), &body, &format!("wh-{id}"), None).await.status(), 200);
    }
}

#[tokio::test]
async fn a_target_that_throttles_every_record_fifty_times_still_receives_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    for id in 1..=ORDERS {
        target.throttle_matching(&format!(r#""shopify:{id}""#), THROTTLES);
    }
    let config = config(&target);
    let max_attempts = config.flows[0].spec.delivery.retry.max_attempts as usize;
    assert!(THROTTLES > max_attempts, "more throttles than the flow's attempts ({max_attempts})");
    let runner = InProcessRunner::start(config, dir.path()).await;
    send(&runner, 1..=ORDERS).await;
    eventually(WAIT, "every order delivered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == ORDERS && s.flows[0].pending == 0
    })
    .await;
    let s = status(&runner.admin_url).await;
    assert_eq!(s.flows[0].dead_lettered, 0, "throttling dead-letters nothing");
    for id in 1..=ORDERS {
        let tries = target.received().iter().filter(|r| r.body["externalId"] == format!("shopify:{id}")).count();
        assert_eq!(tries, THROTTLES + 1, "order {id}: {THROTTLES} throttled, then received once");
    }
    runner.stop().await;
}

#[tokio::test]
async fn a_record_throttled_past_max_throttled_for_is_dead_lettered_as_throttled_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    target.throttle_matching(r#""shopify:1""#, usize::MAX);
    let mut config = config(&target);
    config.flows[0].spec.delivery.retry.max_throttled_for = Duration::from_millis(300).into();
    let runner = InProcessRunner::start(config, dir.path()).await;
    send(&runner, 1..=2).await;
    eventually(WAIT, "order 2 delivered and order 1 dead-lettered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == 1 && s.flows[0].dead_lettered == 1
    })
    .await;
    let letters: Vec<Value> =
        reqwest::get(format!("{}/v1/deadletters", runner.admin_url)).await.unwrap().json().await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "throttledTooLong");
    let message = letters[0]["message"].as_str().unwrap();
    assert!(message.contains("maxThrottledFor"), "the message names the setting: {message}");
    let attempts = letters[0]["attempts"].as_array().unwrap();
    assert!(attempts.len() > 8, "more tries than maxAttempts: {}", attempts.len());
    assert!(attempts.iter().all(|a| a["throttled"] == true), "each attempt is marked throttled: {attempts:?}");
    runner.stop().await;
}
