//! The NetSuite asynchronous API and the Dynamics 365 flavour over real HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::dynamics::DynamicsKnobs;
use super::{ErpConfig, ErpHandle, NetSuiteKnobs, ThrottleShape, bind};

pub(super) fn order(external_id: &str, sku: &str) -> Value {
    json!({
        "externalId": external_id,
        "customer": {"email": "jane.doe@example.com"},
        "items": [{"item": sku, "quantity": 1, "rate": 1999}],
    })
}

pub(super) async fn start(config: ErpConfig) -> ErpHandle {
    bind(config, "127.0.0.1:0").await.expect("bind the ERP on loopback")
}

/// Follows a listing from `url` to its last page; `read` gives a page's records and the
/// next page's URL.
pub(super) async fn collect_pages(mut url: String, read: impl Fn(&Value) -> (Value, Option<String>)) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let page: Value = client().get(&url).send().await.unwrap().json().await.unwrap();
        let (records, next) = read(&page);
        seen.extend(records.as_array().expect("an array of records").iter().cloned());
        match next {
            Some(next) => url = next,
            None => return seen,
        }
    }
    panic!("more than 100 pages: the listing does not end");
}

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("an HTTP client")
}

pub(super) fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().expect("ASCII").to_owned())
}

fn known(skus: &[&str]) -> Option<std::collections::BTreeSet<String>> {
    Some(skus.iter().map(|s| s.to_string()).collect())
}

async fn post_async(erp: &ErpHandle, body: &Value, key: &str) -> reqwest::Response {
    client()
        .post(erp.sales_orders_url())
        .header("Prefer", "respond-async")
        .header("X-NetSuite-Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn netsuite_async_jobs_report_their_outcome_and_a_repeated_key_names_the_prior_job() {
    let erp = start(ErpConfig {
        known_skus: known(&["MUG-WHT"]),
        netsuite: NetSuiteKnobs { async_pending_polls: 1, ..Default::default() },
        ..ErpConfig::default()
    })
    .await;
    let accepted = post_async(&erp, &order("shopify-1", "MUG-WHT"), "key-1").await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let job = header(&accepted, "location").unwrap();
    assert_eq!(job, format!("{}/async/v1/job/1", erp.base_url()));

    let status: Value = client().get(&job).send().await.unwrap().json().await.unwrap();
    assert_eq!((status["completed"].as_bool(), status["progress"].as_str()), (Some(false), Some("pending")));
    let status: Value = client().get(&job).send().await.unwrap().json().await.unwrap();
    assert_eq!((status["completed"].as_bool(), status["progress"].as_str()), (Some(true), Some("succeeded")));
    let result = client().get(format!("{job}/task/1/result")).send().await.unwrap();
    assert_eq!(result.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&result, "location").as_deref(), Some("/salesOrders/1"));

    let repeated = post_async(&erp, &order("shopify-1", "MUG-WHT"), "key-1").await;
    assert_eq!(repeated.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&repeated, "location").as_deref(), Some(job.as_str()));
    let body: Value = repeated.json().await.unwrap();
    assert_eq!(body["o:errorDetails"][0]["o:errorCode"], "IDEMPOTENCY_ERROR");
    assert_eq!(erp.order_by_external_id("shopify-1").unwrap().writes, 1);

    // A business error is the job's outcome, not the 202's.
    let accepted = post_async(&erp, &order("shopify-2", "NOPE"), "key-2").await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let job = header(&accepted, "location").unwrap();
    client().get(&job).send().await.unwrap();
    let status: Value = client().get(&job).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["progress"], "failed");
    let result = client().get(format!("{job}/task/1/result")).send().await.unwrap();
    assert_eq!(result.status(), StatusCode::BAD_REQUEST);
    let body: Value = result.json().await.unwrap();
    assert_eq!(body["o:errorDetails"][0]["o:errorPath"], "items[0].item");
    let stats = erp.stats();
    assert_eq!((stats.created, stats.idempotent_replays, stats.rejected_business), (1, 1, 1));
}

#[tokio::test]
async fn netsuite_restlet_shape_refuses_over_the_limit_with_400_sss_request_limit_exceeded() {
    let erp = start(ErpConfig {
        max_concurrency: 0,
        netsuite: NetSuiteKnobs { throttle_shape: ThrottleShape::RestletRequestLimit, ..Default::default() },
        ..ErpConfig::default()
    })
    .await;
    let response = client().post(erp.sales_orders_url()).json(&order("a", "X")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SSS_REQUEST_LIMIT_EXCEEDED");
    assert_eq!(erp.stats().throttled, 1);
}

#[tokio::test]
async fn netsuite_pages_link_to_the_next_until_the_last() {
    let erp = start(ErpConfig::default()).await;
    for n in 0..5 {
        client().post(erp.sales_orders_url()).json(&order(&format!("o-{n}"), "X")).send().await.unwrap();
    }
    let seen = collect_pages(format!("{}?limit=2", erp.sales_orders_url()), |page| {
        let next = page["links"].as_array().unwrap().iter().find(|l| l["rel"] == "next");
        (page["items"].clone(), next.map(|l| l["href"].as_str().unwrap().to_owned()))
    })
    .await;
    let seen: Vec<_> = seen.iter().map(|o| o["externalId"].as_str().unwrap()).collect();
    assert_eq!(seen, ["o-0", "o-1", "o-2", "o-3", "o-4"]);
}

#[tokio::test]
async fn dynamics_pages_with_next_links_and_patches_under_if_match() {
    let erp = start(ErpConfig {
        known_skus: known(&["MUG-WHT"]),
        dynamics: DynamicsKnobs { page_size: 2, ..Default::default() },
        ..ErpConfig::default()
    })
    .await;
    let set = format!("{}/salesOrders", erp.dynamics_url());
    for n in 0..5 {
        let created = client().post(&set).json(&order(&format!("o-{n}"), "MUG-WHT")).send().await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let entity: Value = created.json().await.unwrap();
        assert!(entity["@odata.etag"].as_str().unwrap().starts_with("W/\""), "{entity}");
    }
    let seen = collect_pages(set.clone(), |page| {
        for entity in page["value"].as_array().unwrap() {
            assert!(entity["@odata.etag"].is_string(), "{entity}");
        }
        (page["value"].clone(), page["@odata.nextLink"].as_str().map(str::to_owned))
    })
    .await;
    assert_eq!(seen.len(), 5);

    let one = format!("{}/salesOrders(externalId='o-1')", erp.dynamics_url());
    let change = json!({"items": [{"item": "MUG-WHT", "quantity": 4}]});
    let bare = client().patch(&one).json(&change).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::PRECONDITION_REQUIRED);
    let read = client().get(&one).send().await.unwrap();
    let etag = header(&read, "etag").unwrap();
    assert!(erp.edit_elsewhere("o-1"));
    let stale = client().patch(&one).header("If-Match", &etag).json(&change).send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Request_EntityChanged");
    let fresh: Value = client().get(&one).send().await.unwrap().json().await.unwrap();
    let patched = client()
        .patch(&one)
        .header("If-Match", fresh["@odata.etag"].as_str().unwrap())
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let stored = erp.order_by_external_id("o-1").unwrap();
    assert_eq!((stored.writes, stored.items[0].quantity), (2, 4.0));
    assert_eq!(stored.customer_email, "jane.doe@example.com", "PATCH merges");
    assert_eq!(erp.stats().conflicts, 1);

    let invalid = client().post(&set).json(&order("o-9", "NOPE")).send().await.unwrap();
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    let body: Value = invalid.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("items[0].item"), "{body}");
}

#[tokio::test]
async fn dynamics_limits_each_user_to_a_sliding_window_with_retry_after() {
    let erp = start(ErpConfig {
        dynamics: DynamicsKnobs { requests_per_window: 2, window: Duration::from_secs(60), ..Default::default() },
        ..ErpConfig::default()
    })
    .await;
    let set = format!("{}/salesOrders", erp.dynamics_url());
    for _ in 0..2 {
        assert_eq!(client().get(&set).send().await.unwrap().status(), StatusCode::OK);
    }
    let throttled = client().get(&set).send().await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&throttled, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Another user has a window of their own.
    assert_eq!(client().get(&set).bearer_auth("other").send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(erp.stats().throttled, 1);
}

#[tokio::test]
async fn dynamics_batches_answer_each_operation() {
    let erp = start(ErpConfig {
        known_skus: known(&["MUG-WHT"]),
        dynamics: DynamicsKnobs { max_batch_operations: 3, ..Default::default() },
        ..ErpConfig::default()
    })
    .await;
    let batch = format!("{}/$batch", erp.dynamics_url());
    let requests = json!({"requests": [
        {"id": "1", "method": "POST", "url": "salesOrders", "body": order("b-1", "MUG-WHT")},
        {"id": "2", "method": "POST", "url": "salesOrders", "body": order("b-2", "NOPE")},
        {"id": "3", "method": "GET", "url": "salesOrders(externalId='b-1')"},
    ]});
    let answer: Value = client().post(&batch).json(&requests).send().await.unwrap().json().await.unwrap();
    let statuses: Vec<_> =
        answer["responses"].as_array().unwrap().iter().map(|r| (r["id"].clone(), r["status"].clone())).collect();
    assert_eq!(statuses, [(json!("1"), json!(201)), (json!("2"), json!(400)), (json!("3"), json!(200))]);
    let stats = erp.stats();
    assert_eq!((stats.created, stats.rejected_business), (1, 1));

    let too_many = json!({"requests": (0..4).map(|n| json!({"id": n.to_string(), "method": "GET", "url": "salesOrders(1)"})).collect::<Vec<_>>()});
    assert_eq!(client().post(&batch).json(&too_many).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
}
