//! The SAP flavour (and seeded concurrent edits) over real HTTP.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::flavour_tests::{client, collect_pages, header, order, start};
use super::sap::SapKnobs;
use super::{ErpConfig, ErpHandle};

/// Fetches a CSRF token; returns it with the session cookie.
async fn fetch_token(erp: &ErpHandle) -> (String, String) {
    let response =
        client().get(format!("{}/salesOrders", erp.sap_url())).header("X-CSRF-Token", "Fetch").send().await.unwrap();
    let token = header(&response, "x-csrf-token").expect("a token");
    let cookie = header(&response, "set-cookie").expect("a session cookie");
    (token, cookie.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn sap_writes_need_a_live_csrf_token_with_its_cookie() {
    let erp =
        start(ErpConfig { sap: SapKnobs { csrf_token_uses: Some(1), ..Default::default() }, ..ErpConfig::default() })
            .await;
    let set = format!("{}/salesOrders", erp.sap_url());
    let bare = client().post(&set).json(&order("s-1", "X")).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&bare, "x-csrf-token").as_deref(), Some("Required"));

    let (token, cookie) = fetch_token(&erp).await;
    let without_cookie =
        client().post(&set).header("X-CSRF-Token", &token).json(&order("s-1", "X")).send().await.unwrap();
    assert_eq!(without_cookie.status(), StatusCode::FORBIDDEN);
    let send = |external_id: &str| {
        client()
            .post(&set)
            .header("X-CSRF-Token", &token)
            .header("Cookie", &cookie)
            .json(&order(external_id, "X"))
            .send()
    };
    assert_eq!(send("s-1").await.unwrap().status(), StatusCode::CREATED);
    // One use per token here: the second write finds it expired.
    assert_eq!(send("s-2").await.unwrap().status(), StatusCode::FORBIDDEN);
    let (token, cookie) = fetch_token(&erp).await;
    let created = client()
        .post(&set)
        .header("X-CSRF-Token", &token)
        .header("Cookie", &cookie)
        .json(&order("s-2", "X"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(erp.stats().csrf_refused, 3);

    let (token, cookie) = fetch_token(&erp).await;
    erp.expire_csrf_tokens();
    let expired = client()
        .post(&set)
        .header("X-CSRF-Token", &token)
        .header("Cookie", &cookie)
        .json(&order("s-3", "X"))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sap_repeatable_requests_answer_once_and_updates_need_if_match() {
    let erp = start(ErpConfig::default()).await;
    let set = format!("{}/salesOrders", erp.sap_url());
    let (token, cookie) = fetch_token(&erp).await;
    let create = || {
        client()
            .post(&set)
            .header("X-CSRF-Token", &token)
            .header("Cookie", &cookie)
            .header("Repeatability-Request-ID", "6f1c1f2e-0000-4000-8000-000000000001")
            .header("Repeatability-First-Sent", "Sat, 28 Nov 2026 10:00:00 GMT")
            .json(&order("r-1", "X"))
            .send()
    };
    let first = create().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(header(&first, "repeatability-result").as_deref(), Some("accepted"));
    let first_body: Value = first.json().await.unwrap();
    let again = create().await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    assert_eq!(erp.order_by_external_id("r-1").unwrap().writes, 1);
    assert_eq!(erp.stats().idempotent_replays, 1);

    let one = format!("{}/salesOrders('r-1')", erp.sap_url());
    let update = |etag: Option<String>| {
        let mut request = client().patch(&one).header("X-CSRF-Token", &token).header("Cookie", &cookie);
        if let Some(etag) = etag {
            request = request.header("If-Match", etag);
        }
        request.json(&json!({"memo": "changed"})).send()
    };
    assert_eq!(update(None).await.unwrap().status(), StatusCode::PRECONDITION_REQUIRED);
    let etag = first_body["d"]["__metadata"]["etag"].as_str().unwrap().to_owned();
    erp.edit_elsewhere("r-1");
    assert_eq!(update(Some(etag)).await.unwrap().status(), StatusCode::PRECONDITION_FAILED);
    let current = client().get(&one).send().await.unwrap();
    let etag = header(&current, "etag");
    assert_eq!(update(etag).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(erp.order_by_external_id("r-1").unwrap().writes, 2);
}

#[tokio::test]
async fn sap_pages_with_next_until_the_last_and_dynamics_conflicts_are_seeded() {
    let erp = start(ErpConfig { sap: SapKnobs { page_size: 2, ..Default::default() }, ..ErpConfig::default() }).await;
    for n in 0..3 {
        client().post(erp.sales_orders_url()).json(&order(&format!("p-{n}"), "X")).send().await.unwrap();
    }
    let seen = collect_pages(format!("{}/salesOrders", erp.sap_url()), |page| {
        (page["d"]["results"].clone(), page["d"]["__next"].as_str().map(str::to_owned))
    })
    .await;
    assert_eq!(seen.len(), 3);

    // The same seed gives the same sequence of concurrent edits.
    let mut runs = Vec::new();
    for _ in 0..2 {
        let erp = start(ErpConfig { seed: 7, concurrent_edit_ratio: 0.5, ..ErpConfig::default() }).await;
        client().post(erp.sales_orders_url()).json(&order("c-1", "X")).send().await.unwrap();
        let one = format!("{}/salesOrders(externalId='c-1')", erp.dynamics_url());
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let read = client().get(&one).send().await.unwrap();
            let etag = header(&read, "etag").unwrap();
            let patched =
                client().patch(&one).header("If-Match", etag).json(&json!({"memo": "x"})).send().await.unwrap();
            statuses.push(patched.status().as_u16());
        }
        assert!(statuses.contains(&412) && statuses.contains(&200), "{statuses:?}");
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test]
async fn a_lost_answer_is_a_504_after_the_write_and_a_repeat_gets_the_first_answer() {
    let erp = start(ErpConfig { lost_answer_ratio: 1.0, ..ErpConfig::default() }).await;
    let (token, cookie) = fetch_token(&erp).await;
    let send = || {
        client()
            .post(format!("{}/salesOrders", erp.sap_url()))
            .header("X-CSRF-Token", &token)
            .header("Cookie", &cookie)
            .header("Repeatability-Request-ID", "6f1c1f2e-0000-4000-8000-000000000002")
            .header("Repeatability-First-Sent", "Sat, 28 Nov 2026 10:00:00 GMT")
            .json(&order("l-1", "X"))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(erp.order_by_external_id("l-1").unwrap().writes, 1);
    // Every successful answer is lost here, the replayed one too; the write is not repeated.
    assert_eq!(send().await.unwrap().status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(erp.order_by_external_id("l-1").unwrap().writes, 1);
    let stats = erp.stats();
    assert_eq!((stats.created, stats.idempotent_replays), (1, 1));
}
