//! Structured logs: every line written while a record is handled, from the webhook that
//! received it through mapping to each delivery attempt, carries its correlation id, so
//! `grep <id>` over the JSON log tells one record's whole story.

use std::time::Duration;

use entrepot_e2e::*;
use serde_json::Value;

#[tokio::test]
async fn json_log_lines_carry_the_correlation_id_from_webhook_to_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let target = ScriptedTarget::start().await;
    // One transient failure, so the record has a retry in its story.
    target.push(503, &[], "maintenance");
    let manifests = dir.path().join("manifests");
    write_quickstart(&manifests, &target.url);
    let log = dir.path().join("runner.log");
    let args = vec![
        "--log-format".into(),
        "json".into(),
        "run".into(),
        manifests.display().to_string(),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
    ];
    let runner = RunnerProcess::spawn_logged(args, vec![("ENTREPOT_LOG".into(), "debug".into())], &log).await;

    let body = shopify_order(7, "SKU-1", "2026-11-27T10:05:00-05:00");
    let answer = signed_request(&runner.webhook(FLOW), &body, "delivery-7", None)
        .header("x-correlation-id", "corr-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    eventually(Duration::from_secs(30), "the order delivered after one retry", || async {
        target.received().len() == 2 && status(&runner.admin_url).await.flows[0].pending == 0
    })
    .await;
    drop(runner);

    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let mentions = |line: &Value| line.to_string().contains("corr-7f3a");
    let in_span = |name: &str| -> Vec<&Value> {
        lines.iter().filter(|l| l["spans"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == name))).collect()
    };
    for span in ["webhook", "prepare", "deliver"] {
        let inside = in_span(span);
        assert!(!inside.is_empty(), "no log line inside a `{span}` span:\n{}", lines.len());
        for line in inside {
            assert!(mentions(line), "a line inside `{span}` lacks the correlation id: {line}");
        }
    }
    let queued = lines.iter().find(|l| l["message"] == "webhook queued").expect("the webhook was logged");
    assert_eq!(queued["span"]["correlation_id"], "corr-7f3a", "{queued}");
    assert_eq!(queued["span"]["delivery_id"], "delivery-7", "{queued}");
    // Both attempts are logged inside their `deliver` span: the 503 and the 204.
    let answers: Vec<&Value> = in_span("deliver").into_iter().filter(|l| l["message"] == "target answered").collect();
    assert_eq!(answers.len(), 2, "one line per attempt: {answers:?}");
    assert!(answers[0]["answer"].as_str().unwrap().starts_with("503"), "{}", answers[0]);
    // The retry and the delivery are logged by the worker with the id as a field.
    for message in ["delivery failed; will retry", "delivered"] {
        assert!(
            lines.iter().any(|l| l["message"].as_str().is_some_and(|m| m.starts_with(message)) && mentions(l)),
            "no `{message}` line with the correlation id"
        );
    }
    // The request the target saw carries it too.
    assert_eq!(target.received()[1].headers["x-correlation-id"], "corr-7f3a");
}
