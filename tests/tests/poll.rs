//! A poll flow end to end (examples/erp-items-poll): items polled page by page from a
//! fake ERP with basic credentials reach a storefront that takes OAuth2 client-credentials
//! tokens, every item exactly once, with one token for all of them and one more after
//! the storefront refuses the first.

use std::time::Duration;

use entrepot::{manifest::Manifests, secrets::Secrets};

use entrepot_api::resource::ConnectorAuth;
use entrepot_e2e::*;
use serde_json::{Value, json};

const ITEMS: usize = 25;
const WAIT: Duration = Duration::from_secs(30);

fn item(n: usize, modified: &str) -> Value {
    json!({
        "itemId": format!("IT-{n:03}"), "sku": format!("SKU-{n:03}"), "displayName": format!("Item {n}"),
        "basePrice": "12.50", "currency": "EUR", "status": "active", "lastModified": modified
    })
}

#[tokio::test]
async fn polled_items_reach_an_oauth2_storefront_exactly_once() {
    let erp = ItemsApi::start(
        (1..=ITEMS).map(|n| item(n, &format!("2026-03-01T10:{n:02}:00Z"))).collect(),
        "integration",
        "demo-erp-password",
    )
    .await;
    let tokens = TokenEndpoint::start("demo-client", "demo-client-secret").await;
    let storefront = ScriptedTarget::start().await;
    storefront.push(401, &[], r#"{"message":"invalid_token"}"#); // the first token is revoked at once

    let manifests = Manifests::load_dir(&repo_root().join("examples/erp-items-poll")).unwrap();
    let mut config = manifests.runner_config().unwrap();
    let flow = &mut config.flows[0];
    flow.connectors.get_mut("erp-items").unwrap().endpoint = Some(format!("{}/api/v1", erp.url));
    let shop = flow.connectors.get_mut("storefront").unwrap();
    shop.endpoint = Some(format!("{}/demo-shop", storefront.url));
    // One request at a time, so the request order below is the delivery order (items of
    // different keys otherwise go concurrently).
    shop.limits = Some(entrepot_api::resource::ConnectorLimits { concurrency: Some(1), ..Default::default() });
    let Some(ConnectorAuth::OAuth2ClientCredentials(oauth)) = shop.auth.as_mut() else {
        panic!("the example uses OAuth2")
    };
    oauth.token_url = tokens.url.clone();
    let poll = flow.spec.source.trigger.poll.as_mut().unwrap();
    poll.interval = Duration::from_millis(100).into();
    poll.pagination = Some(entrepot_api::resource::Pagination::Offset {
        param: "offset".into(),
        limit_param: "limit".into(),
        page_size: 10,
    });
    flow.spec.delivery.retry.initial_backoff = Duration::from_millis(20).into();

    let dir = tempfile::tempdir().unwrap();
    let runner =
        InProcessRunner::start_with(config, &Secrets::with_manifests(manifests.secrets.clone()), dir.path()).await;
    eventually(WAIT, "every item delivered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == ITEMS as u64 && s.flows[0].pending == 0
    })
    .await;

    // Two items change in the ERP: the next polls deliver those two only.
    erp.upsert(item(3, "2026-03-02T08:00:00Z"));
    erp.upsert(item(ITEMS + 1, "2026-03-02T09:00:00Z"));
    eventually(WAIT, "the changed items delivered", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == ITEMS as u64 + 2 && s.flows[0].pending == 0
    })
    .await;
    // One more poll after that reads the newest item again (the watermark is inclusive).
    let polls = erp.requests().len();
    eventually(WAIT, "another poll", || async { erp.requests().len() > polls }).await;
    eventually(WAIT, "the re-read item dropped as a duplicate", || async {
        status(&runner.admin_url).await.flows[0].deduplicated >= 1
    })
    .await;

    let received = storefront.received();
    let keys: Vec<String> =
        received[1..].iter().map(|r| r.headers["idempotency-key"].to_str().unwrap().to_string()).collect();
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), keys.len(), "no item revision delivered twice: {keys:?}");
    assert_eq!(keys.len(), ITEMS + 2);
    assert!(keys.contains(&"SKU-003:2026-03-02T08:00:00Z".to_string()), "{keys:?}");
    assert_eq!(received[0].body["key"], received[1].body["key"], "the refused request is sent again with a new token");
    let authorizations: Vec<&str> = received.iter().map(|r| r.headers["authorization"].to_str().unwrap()).collect();
    assert_eq!(authorizations[0], "Bearer tok-1");
    assert!(authorizations[1..].iter().all(|a| *a == "Bearer tok-2"), "{authorizations:?}");
    assert_eq!(tokens.issued(), 2, "one token for every request, one more after the refusal");

    let first_run: Vec<String> = erp.requests()[..3].iter().map(|q| format!("{q:?}")).collect();
    assert!(first_run[0].contains(r#"("modifiedSince", "2026-01-01T00:00:00Z")"#), "{first_run:?}");
    assert!(first_run[2].contains(r#"("offset", "20")"#), "{first_run:?}");
    let s = status(&runner.admin_url).await;
    let names: Vec<&str> = s.connectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["erp-items", "storefront"]);
    assert!(s.connectors.iter().all(|c| c.last_error_category.is_none()), "{:?}", s.connectors);
    runner.stop().await;
}
