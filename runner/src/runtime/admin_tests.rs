//! The admin API behind its token: payload and write routes refuse a caller without
//! the current token, the probes, `/metrics` and `/v1/status` stay open, a token
//! rotated the way the kubelet rotates a Secret volume applies to the next request, and
//! `x-entrepot-requested-by` is bounded before it is copied into queued records; a
//! replay, discard or injection needs a reason and is kept in the audit trail under the
//! token's fingerprint; injected records keep the caller's trace context, if well formed.

use std::path::Path;

use super::*;
use crate::{manifest::Manifests, secrets::Secrets, test_support::kubelet_secret_volume};
use reqwest::StatusCode;
use serde_json::json;

const FLOW: &str = "shopify-orders-to-erp";

/// The quickstart runtime (no workers) with its admin router served, guarded by `auth`.
async fn admin(dir: &Path, auth: AdminAuth) -> (Arc<Runtime>, String) {
    let manifests = Manifests::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")).unwrap();
    let config = manifests.runner_config().unwrap();
    let rt = Runtime::new(config, &Secrets::with_manifests(manifests.secrets.clone()), &dir.join("data")).unwrap();
    rt.set_admin_auth(auth).unwrap();
    let url = crate::test_support::serve(rt.admin_router()).await;
    (rt, url)
}

async fn get(url: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

fn records(delivery_id: &str) -> serde_json::Value {
    json!({"records": [{"deliveryId": delivery_id, "payload": {"id": 1}}], "why": "test"})
}

#[tokio::test]
async fn payload_and_write_routes_need_the_token_and_the_probes_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let token_dir = dir.path().join("admin-token");
    kubelet_secret_volume(&token_dir, 1, &[("token", "first-token")]);
    let (rt, url) = admin(dir.path(), AdminAuth::TokenFile(token_dir.join("token"))).await;

    for open in ["/healthz", "/readyz", "/metrics", "/v1/status"] {
        let (status, _) = get(&format!("{url}{open}"), None).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{open} stays open");
    }
    let (status, body) = get(&format!("{url}/v1/deadletters"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body.contains("Authorization: Bearer") && body.contains("admin-token"),
        "names the header and where: {body}"
    );
    assert!(!body.contains("first-token"), "never the token itself: {body}");
    assert_eq!(get(&format!("{url}/v1/deadletters/1"), Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
    let client = reqwest::Client::new();
    for (path, body) in [
        (format!("/v1/flows/{FLOW}/records"), records("d-1")),
        ("/v1/deadletters/replay".into(), json!({"all": true})),
        ("/v1/deadletters/discard".into(), json!({"all": true})),
    ] {
        let refused = client.post(format!("{url}{path}")).json(&body).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(
        client.delete(format!("{url}/v1/deadletters/1")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(rt.queue.inbox(FLOW, 10).unwrap().is_empty(), "nothing was injected");

    assert_eq!(get(&format!("{url}/v1/deadletters"), Some("first-token")).await.0, StatusCode::OK);
    let injected = client
        .post(format!("{url}/v1/flows/{FLOW}/records"))
        .bearer_auth("first-token")
        .json(&records("d-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), StatusCode::OK);
    assert_eq!(rt.queue.inbox(FLOW, 10).unwrap().len(), 1);

    // The Secret is rotated: the kubelet swaps `..data`; the next request sees it.
    kubelet_secret_volume(&token_dir, 2, &[("token", "second-token")]);
    assert_eq!(get(&format!("{url}/v1/deadletters"), Some("first-token")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&format!("{url}/v1/deadletters"), Some("second-token")).await.0, StatusCode::OK);

    // A token file that went missing refuses everyone rather than opening the API.
    std::fs::remove_dir_all(&token_dir).unwrap();
    assert_eq!(get(&format!("{url}/v1/deadletters"), Some("second-token")).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_long_requested_by_is_cut_before_it_is_copied_into_each_record() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, url) = admin(dir.path(), AdminAuth::Open).await;
    let body = json!({"records": (0..20).map(|i| json!({"deliveryId": format!("d-{i}"), "payload": {"id": i}})).collect::<Vec<_>>(), "why": "load"});
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/flows/{FLOW}/records"))
        .header(REQUESTED_BY_HEADER, "r".repeat(200_000))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let inbox = rt.queue.inbox(FLOW, 100).unwrap();
    assert_eq!(inbox.len(), 20);
    for (_, envelope) in inbox {
        let by = &envelope.replay.expect("an injected record is marked as a replay").requested_by;
        let bound = admin_auth::OPEN_IDENTITY.len() + " ()".len() + admin_auth::REQUESTED_BY_MAX_CHARS;
        assert_eq!(by.chars().count(), bound, "cut, not refused");
    }
}

#[tokio::test]
async fn injected_records_keep_the_caller_s_trace_context_when_it_is_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, url) = admin(dir.path(), AdminAuth::Open).await;
    let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for (id, traceparent, kept) in
        [("d-1", Some(sent), Some(sent)), ("d-2", Some("00-not-a-trace-01"), None), ("d-3", None, None)]
    {
        let mut request = reqwest::Client::new().post(format!("{url}/v1/flows/{FLOW}/records")).json(&records(id));
        if let Some(traceparent) = traceparent {
            request = request.header(crate::telemetry::TRACEPARENT, traceparent);
        }
        assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
        let inbox = rt.queue.inbox(FLOW, 10).unwrap();
        let (_, envelope) = inbox.iter().find(|(_, e)| e.delivery_id.as_deref() == Some(id)).expect("queued");
        assert_eq!(envelope.trace_parent.as_deref(), kept, "{id}");
    }
}

#[tokio::test]
async fn actions_without_a_reason_are_refused_and_the_others_are_audited_under_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "audit-token\n").unwrap();
    let (_rt, url) = admin(dir.path(), AdminAuth::TokenFile(token_file)).await;
    let client = reqwest::Client::new();
    let mut no_reason = records("d-1");
    no_reason.as_object_mut().unwrap().remove("why");
    for (path, body) in [
        (format!("/v1/flows/{FLOW}/records"), no_reason),
        ("/v1/deadletters/replay".into(), json!({"all": true})),
        ("/v1/deadletters/discard".into(), json!({"all": true, "why": "  "})),
    ] {
        let refused = client.post(format!("{url}{path}")).bearer_auth("audit-token").json(&body).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{path}");
        let text = refused.text().await.unwrap();
        assert!(text.contains("`why` is required"), "{path}: names the field: {text}");
    }
    let delete = client.delete(format!("{url}/v1/deadletters/1")).bearer_auth("audit-token").send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::BAD_REQUEST);

    let injected = client
        .post(format!("{url}/v1/flows/{FLOW}/records"))
        .bearer_auth("audit-token")
        .header(REQUESTED_BY_HEADER, "cli (ana)")
        .json(&records("d-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), StatusCode::OK);
    let (status, body) = get(&format!("{url}/v1/audit?flow={FLOW}"), Some("audit-token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries: Vec<crate::queue::AuditEntry> = serde_json::from_str(&body).unwrap();
    assert_eq!(entries.len(), 1, "{body}");
    let entry = &entries[0];
    assert_eq!((entry.action, entry.count, entry.caller.why.as_str()), (crate::queue::AuditAction::Inject, 1, "test"));
    assert_eq!(entry.caller.identity, admin_auth::token_identity("audit-token"));
    assert_eq!(entry.caller.client.as_deref(), Some("cli (ana)"));
    assert_eq!(entry.records.len(), 1);
    assert!(!body.contains("audit-token"), "never the token: {body}");
    assert_eq!(get(&format!("{url}/v1/audit?flow=nope"), Some("audit-token")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("{url}/v1/audit"), None).await.0, StatusCode::UNAUTHORIZED);
}
