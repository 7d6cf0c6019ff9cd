//! The webhook server's guards (issue 13): depth, replay, empty and untrimmed secrets,
//! and what is refused before the body is read.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::intake_tests::{FLOW, TARGET, fixture, intake_only, post};
use super::*;
use crate::{
    flow::FlowError,
    manifest::Manifests,
    queue::{Envelope, Prepared, now_ms},
    secrets::Secrets,
};

#[tokio::test]
async fn a_signed_body_nested_400_kb_deep_is_refused_with_400_and_nothing_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, url, secret) = intake_only(dir.path(), |_| ()).await;
    let deep = "[".repeat(400_000);
    assert_eq!(post(&url, &secret, deep.as_bytes(), "d-deep").await, 400);
    assert!(rt.queue.inbox(FLOW, 10).unwrap().is_empty());
    assert!(rt.queue.dead_letters(FLOW).unwrap().is_empty());
    assert!(rt.queue.outbox(FLOW, TARGET, 10).unwrap().is_empty());
}

#[tokio::test]
async fn a_deep_record_already_queued_from_before_is_dead_lettered_naming_the_depth() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _, _) = intake_only(dir.path(), |_| ()).await;
    let flow = rt.flows.get(FLOW).unwrap();
    let envelope = Envelope {
        id: "e-1".into(),
        correlation_id: "c-1".into(),
        trace_parent: None,
        delivery_id: Some("d-1".into()),
        source_delivery_id: None,
        event_id: None,
        topic: None,
        received_at_ms: now_ms(),
        payload: "[".repeat(400_000).into_bytes(),
        replay: None,
    };
    // The preparation the prepare worker runs on each inbox record at start.
    match flow.prepare_at_intake(&envelope) {
        Some(Prepared::DeadLetter(dead)) => assert!(dead.message.contains("deeper than 128"), "{}", dead.message),
        _ => panic!("a record nested too deeply must be dead-lettered"),
    }
}

#[tokio::test]
async fn a_body_signed_once_and_resent_under_a_fresh_delivery_id_is_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, url, secret) = intake_only(dir.path(), |_| ()).await;
    assert_eq!(post(&url, &secret, &fixture(), "d-1").await, 200);
    assert_eq!(post(&url, &secret, &fixture(), "d-replayed").await, 200);
    let outbox = rt.queue.outbox(FLOW, TARGET, 10).unwrap();
    assert_eq!(outbox.len(), 1);
    // Deduplicated by the body's digest; the sender's own id kept to look it up there.
    let envelope = &outbox[0].1.envelope;
    assert!(envelope.delivery_id.as_deref().is_some_and(|d| d.starts_with("body-sha256:")), "{envelope:?}");
    assert_eq!(envelope.source_delivery_id.as_deref(), Some("d-1"));
    let counts = rt.metrics.flow_counts(FLOW);
    assert_eq!((counts.received, counts.deduplicated), (1, 1), "the replay is a duplicate delivery");
}

fn runtime_with_secret(dir: &Path, secret: &str) -> Result<Arc<Runtime>, StartError> {
    let manifests = Manifests::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")).unwrap();
    let config = manifests.runner_config().unwrap();
    let mut secrets = manifests.secrets.clone();
    for values in secrets.values_mut() {
        if let Some(value) = values.get_mut("client-secret") {
            *value = secret.to_string();
        }
    }
    Runtime::new(config, &Secrets::with_manifests(secrets), dir)
}

/// The quickstart with its Secrets mounted as a kubelet lays them out, under `mounted`,
/// read with no cache: the Shopify webhook secret is `webhook`.
fn runtime_with_mounted_secrets(dir: &Path, mounted: &Path, webhook: &str) -> Arc<Runtime> {
    let manifests = Manifests::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")).unwrap();
    crate::test_support::kubelet_secret_volume(&mounted.join("shopify-demo"), 1, &[("client-secret", webhook)]);
    crate::test_support::kubelet_secret_volume(&mounted.join("erp-demo"), 1, &[("token", "erp-token")]);
    let secrets = Secrets::from_env().with_dir(mounted).with_file_cache(Duration::ZERO);
    Runtime::new(manifests.runner_config().unwrap(), &secrets, dir).unwrap()
}

#[tokio::test]
async fn a_rotated_webhook_secret_signs_the_next_delivery_without_a_restart() {
    let (dir, mounted) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rt = runtime_with_mounted_secrets(dir.path(), mounted.path(), "first-secret");
    tokio::spawn(rt.intake.task(rt.queue.clone()).unwrap());
    let url = format!("{}/webhooks/{FLOW}", crate::test_support::serve(rt.webhook_router()).await);
    assert_eq!(post(&url, b"first-secret", &fixture(), "d-1").await, 200);

    // The Secret rotated: the kubelet swaps the mounted file.
    crate::test_support::kubelet_secret_volume(
        &mounted.path().join("shopify-demo"),
        2,
        &[("client-secret", "second-secret\n")],
    );
    let second = fixture_with_id(2);
    assert_eq!(post(&url, b"second-secret", &second, "d-2").await, 200, "the new secret signs at once");
    let third = fixture_with_id(3);
    assert_eq!(post(&url, b"first-secret", &third, "d-3").await, 401, "the old one no longer does");

    // Rotated to empty by mistake: every delivery is refused, none let through.
    crate::test_support::kubelet_secret_volume(&mounted.path().join("shopify-demo"), 3, &[("client-secret", "")]);
    assert_eq!(post(&url, b"", &third, "d-4").await, 401);
    assert_eq!(post(&url, b"second-secret", &third, "d-5").await, 401);
    assert_eq!(rt.queue.outbox(FLOW, TARGET, 10).unwrap().len(), 2);
}

/// The fixture order with another id (another record, another body).
fn fixture_with_id(id: u64) -> Vec<u8> {
    let mut order: serde_json::Value = serde_json::from_slice(&fixture()).unwrap();
    order["id"] = id.into();
    serde_json::to_vec(&order).unwrap()
}

#[tokio::test]
async fn an_empty_webhook_secret_refuses_to_start_the_flow() {
    let dir = tempfile::tempdir().unwrap();
    for empty in ["", "\n", "\r\n"] {
        let Err(err) = runtime_with_secret(dir.path(), empty) else {
            panic!("{empty:?}: an empty secret must not start")
        };
        assert!(matches!(&err, StartError::Flow(FlowError::EmptySecret { .. })), "{empty:?}: {err}");
        assert!(err.to_string().contains("spec.webhook.secretRef"), "{err}");
    }
}

#[tokio::test]
async fn a_secret_read_with_a_trailing_newline_verifies_as_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_with_secret(dir.path(), "hush\n").unwrap();
    tokio::spawn(rt.intake.task(rt.queue.clone()).unwrap());
    let url = format!("{}/webhooks/{FLOW}", crate::test_support::serve(rt.webhook_router()).await);
    assert_eq!(post(&url, b"hush", &fixture(), "d-1").await, 200);
    assert_eq!(post(&url, b"hush\n", &fixture(), "d-2").await, 401);
}

/// Sends the head of a request announcing a 3 MB body, and none of the body: what the
/// server answers within two seconds, if anything.
async fn answer_to_a_head_alone(url: &str, path: &str, signed: bool) -> Option<String> {
    let address = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let signature = if signed { "x-shopify-hmac-sha256: AAAA\r\n" } else { "" };
    let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\n{signature}content-length: 3000000\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut answer)).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&answer[..read]).into_owned())
}

#[tokio::test]
async fn an_unknown_flow_or_an_unsigned_request_is_refused_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_rt, url, _) = intake_only(dir.path(), |_| ()).await;
    let unknown = answer_to_a_head_alone(&url, "/webhooks/no-such-flow", true).await;
    assert!(unknown.as_deref().is_some_and(|a| a.starts_with("HTTP/1.1 404")), "{unknown:?}");
    let unsigned = answer_to_a_head_alone(&url, &format!("/webhooks/{FLOW}"), false).await;
    assert!(unsigned.as_deref().is_some_and(|a| a.starts_with("HTTP/1.1 401")), "{unsigned:?}");
}

#[tokio::test]
async fn an_ordering_key_of_dot_dot_is_dead_lettered_rather_than_put_in_a_target_url() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, url, secret) =
        intake_only(dir.path(), |config| config.flows[0].spec.delivery.ordering_key = Some(r#""..""#.into())).await;
    assert_eq!(post(&url, &secret, &fixture(), "d-1").await, 200);
    assert!(rt.queue.outbox(FLOW, TARGET, 10).unwrap().is_empty(), "nothing sent to <path>/..");
    let letters = rt.queue.dead_letters(FLOW).unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].1.message.contains("would leave the target's path"), "{}", letters[0].1.message);
}

#[tokio::test]
async fn a_body_that_never_ends_is_answered_408_once_the_request_time_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _, _) = intake_only(dir.path(), |_| ()).await;
    let bounds = crate::source::webhook::Bounds { in_flight: 8, request_time: Duration::from_millis(300) };
    let url = crate::test_support::serve(crate::source::webhook::router_within(rt.clone(), bounds)).await;
    let answer = answer_to_a_head_alone(&url, &format!("/webhooks/{FLOW}"), true).await;
    assert!(answer.as_deref().is_some_and(|a| a.starts_with("HTTP/1.1 408")), "{answer:?}");
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _, _) = intake_only(dir.path(), |_| ()).await;
    let bounds = crate::source::webhook::Bounds { in_flight: 1, request_time: Duration::from_secs(5) };
    let url = crate::test_support::serve(crate::source::webhook::router_within(rt.clone(), bounds)).await;
    // The first holds the only slot, waiting for a body that does not come.
    let path = format!("/webhooks/{FLOW}");
    let (first, second) = tokio::join!(answer_to_a_head_alone(&url, &path, true), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        answer_to_a_head_alone(&url, &path, true).await
    });
    assert_eq!(first, None, "the first still waits for its body");
    assert!(second.as_deref().is_some_and(|a| a.starts_with("HTTP/1.1 503")), "{second:?}");
}
