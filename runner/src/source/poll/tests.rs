//! The poller against paginated APIs on loopback, with a real queue on disk.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use serde_json::{Value, json};

use super::{progress::Progress, *};
use crate::{
    flow::Flow,
    metrics::Metrics,
    protocol::ErrorCategory,
    queue::{Queue, RedbQueue},
    secrets::Secrets,
    test_support::{Api, Reply, Seen},
};
use entrepot_api::{
    config::FlowConfig,
    resource::{ConnectorSpec, SyncFlowSpec},
};

const FLOW: &str = "items";

/// A flow polling `api` with `trigger` (YAML), retries fast.
fn flow(api: &str, trigger: &str) -> Arc<Flow> {
    let yaml = format!(
        "source: {{connectorRef: erp, entity: items, trigger: {{poll: {trigger}}}}}\n\
         targets: [{{connectorRef: shop, entity: products}}]\n\
         delivery: {{retry: {{maxAttempts: 3, initialBackoff: 10ms, maxBackoff: 50ms}}}}\n"
    );
    let spec: SyncFlowSpec = serde_saphyr::from_str(&yaml).unwrap();
    let connector = |endpoint: &str| ConnectorSpec { endpoint: Some(endpoint.into()), ..ConnectorSpec::default() };
    let endpoint = |name: &str| Some(connector(if name == "erp" { api } else { "http://127.0.0.1:1" }));
    let config = FlowConfig::resolve(FLOW, "retail", &spec, endpoint, |_| None).unwrap();
    Arc::new(Flow::new(config, &Secrets::placeholders()).unwrap())
}

fn poller(flow: &Arc<Flow>, queue: &Queue) -> Poller {
    Poller::new(flow.clone(), queue.clone(), Metrics::new(), None).unwrap().expect("a poll trigger")
}

fn queue_in(dir: &tempfile::TempDir) -> Queue {
    RedbQueue::open(&dir.path().join("queue.redb")).unwrap()
}

/// The `id`s of the queued records, in queue order.
fn queued_ids(queue: &Queue) -> Vec<u64> {
    let inbox = queue.inbox(FLOW, 1000).unwrap();
    inbox.iter().map(|(_, e)| serde_json::from_slice::<Value>(&e.payload).unwrap()["id"].as_u64().unwrap()).collect()
}

fn item(id: u64) -> Value {
    json!({"id": id, "sku": format!("SKU-{id}"), "updated_at": "2026-03-01T00:00:00Z"})
}

fn items(ids: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    ids.map(item).collect()
}

fn uris(api: &Api) -> Vec<String> {
    api.seen().into_iter().map(|s| s.uri).collect()
}

fn complete(pages: u64, queued: u64, duplicates: u64) -> RunReport {
    RunReport { pages, queued, duplicates, end: RunEnd::Complete }
}

/// Five items in pages of two, by cursor: `{data: [...], meta: {next}}`. Page 2 answers
/// with `page_two` while it returns `Some`.
fn cursor_api(page_two: impl Fn() -> Option<Reply> + Send + Sync + 'static) -> impl Fn(&Seen, usize) -> Reply {
    move |seen, _| {
        let (records, next) = match seen.param("cursor").as_deref() {
            None => (items(1..=2), json!("c2")),
            Some("c2") => {
                if let Some(reply) = page_two() {
                    return reply;
                }
                (items(3..=4), json!("c3"))
            }
            _ => (items(5..=5), Value::Null),
        };
        Reply::json(json!({"data": records, "meta": {"next": next}}))
    }
}

const CURSOR: &str =
    "{interval: 1h, path: /items, records: .data, pagination: {cursor: {field: .meta.next, param: cursor}}}";

#[tokio::test]
async fn link_pagination_follows_relative_and_absolute_next_links() {
    let api = Api::start(|seen, _| {
        let host = seen.headers["host"].to_str().unwrap().to_string();
        match seen.param("page_info").as_deref() {
            None => Reply::json(json!({"items": items(1..=2)})).header("link", r#"</items?page_info=p2&limit=2>; rel="next""#),
            Some("p2") => Reply::json(json!({"items": items(3..=4)})).header(
                "link",
                &format!(r#"<http://{host}/items?page_info=p1&limit=2>; rel="previous", <http://{host}/items?page_info=p3&limit=2>; rel="next""#),
            ),
            _ => Reply::json(json!({"items": items(5..=5)})).header("link", r#"</items?page_info=p2&limit=2>; rel="previous""#),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let flow =
        flow(&api.url, r#"{interval: 1h, path: /items, query: {limit: "2"}, records: .items, pagination: {link: {}}}"#);
    let poller = poller(&flow, &queue);
    assert_eq!(poller.poll_once().await, complete(3, 5, 0));
    assert_eq!(queued_ids(&queue), [1, 2, 3, 4, 5]);
    assert_eq!(uris(&api), ["/items?limit=2", "/items?page_info=p2&limit=2", "/items?page_info=p3&limit=2"]);
    // Without a watermark every poll reads everything; what was queued is dropped.
    assert_eq!(poller.poll_once().await, complete(3, 0, 5));
    assert_eq!(queue.pending(FLOW).unwrap(), 5);
}

#[tokio::test]
async fn cursor_pagination_sends_the_cursor_until_there_is_none() {
    let api = Api::start(cursor_api(|| None)).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    assert_eq!(poller(&flow(&api.url, CURSOR), &queue).poll_once().await, complete(3, 5, 0));
    assert_eq!(queued_ids(&queue), [1, 2, 3, 4, 5]);
    assert_eq!(uris(&api), ["/items", "/items?cursor=c2", "/items?cursor=c3"]);
}

#[tokio::test]
async fn offset_pagination_stops_at_a_short_or_empty_page() {
    let catalog = Arc::new(Mutex::new(items(1..=5)));
    let served = catalog.clone();
    let api = Api::start(move |seen, _| {
        let offset: usize = seen.param("offset").unwrap().parse().unwrap();
        let limit: usize = seen.param("limit").unwrap().parse().unwrap();
        let all = served.lock().unwrap().clone();
        Reply::json(json!(all.into_iter().skip(offset).take(limit).collect::<Vec<_>>()))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let trigger = "{interval: 1h, path: /items, pagination: {offset: {param: offset, limitParam: limit, pageSize: 2}}}";
    let flow = flow(&api.url, trigger);
    assert_eq!(poller(&flow, &queue).poll_once().await, complete(3, 5, 0));
    assert_eq!(uris(&api), ["/items?offset=0&limit=2", "/items?offset=2&limit=2", "/items?offset=4&limit=2"]);

    catalog.lock().unwrap().pop();
    assert_eq!(poller(&flow, &queue).poll_once().await, complete(3, 0, 4), "a full page then an empty one");
    assert_eq!(queued_ids(&queue), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn the_watermark_advances_is_sent_on_the_next_poll_and_overlaps_are_deduplicated() {
    // The API returns every record updated at or after `updated_at_min`, as most do.
    let catalog = Arc::new(Mutex::new(vec![
        json!({"id": 1, "updated_at": "2026-03-01T10:00:00-05:00"}), // 15:00Z: the latest
        json!({"id": 2, "updated_at": "2026-03-01T14:00:00Z"}),
        json!({"id": 3, "updated_at": "2026-02-01T00:00:00Z"}),
    ]));
    let served = catalog.clone();
    let api = Api::start(move |seen, _| {
        let since: jiff::Timestamp = seen.param("updated_at_min").unwrap().parse().unwrap();
        let all = served.lock().unwrap().clone();
        let newer: Vec<Value> = all
            .into_iter()
            .filter(|r| r["updated_at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap() >= since)
            .collect();
        Reply::json(json!({"items": newer}))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let trigger = "{interval: 1h, path: /items, records: .items, \
                   watermark: {field: .updated_at, param: updated_at_min, initial: \"2026-01-01T00:00:00Z\"}}";
    let flow = flow(&api.url, trigger);
    let poller = poller(&flow, &queue);
    assert_eq!(poller.poll_once().await, complete(1, 3, 0));

    // Item 2 changes and item 4 appears; item 1 is read again at the watermark.
    {
        let mut all = catalog.lock().unwrap();
        all[1] = json!({"id": 2, "updated_at": "2026-03-02T09:00:00Z", "price": 5});
        all.push(json!({"id": 4, "updated_at": "2026-03-01T16:00:00Z"}));
    }
    assert_eq!(poller.poll_once().await, complete(1, 2, 1));
    let since: Vec<String> = api.seen().iter().map(|s| s.param("updated_at_min").unwrap()).collect();
    assert_eq!(since, ["2026-01-01T00:00:00Z", "2026-03-01T10:00:00-05:00"], "the source's own text comes back");
    assert_eq!(queued_ids(&queue), [1, 2, 3, 2, 4]);
    let progress = Progress::load(&queue, FLOW).unwrap();
    assert_eq!(progress.watermark, Some(json!("2026-03-02T09:00:00Z")));
    assert_eq!(progress.run, None);
}

#[tokio::test]
async fn a_429_with_retry_after_on_page_2_is_retried() {
    let throttled = Arc::new(AtomicBool::new(true));
    let once = throttled.clone();
    let api = Api::start(cursor_api(move || {
        once.swap(false, Ordering::SeqCst).then(|| Reply::status(429, "slow down").header("retry-after", "1"))
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let flow = flow(&api.url, CURSOR);
    let poller = poller(&flow, &queue);
    assert_eq!(poller.poll_once().await, complete(3, 5, 0));
    assert_eq!(uris(&api), ["/items", "/items?cursor=c2", "/items?cursor=c2", "/items?cursor=c3"]);
    assert_eq!(queued_ids(&queue), [1, 2, 3, 4, 5]);
    assert_eq!(poller.metrics.poll_errors.with_label_values(&[FLOW, "throttled"]).get(), 1);
    let client = &flow.connectors["erp"];
    assert_eq!(client.health.last_error().map(|e| e.category), Some(ErrorCategory::Throttled));
}

#[tokio::test]
async fn a_restart_resumes_at_the_page_after_the_last_commit_without_requeuing_or_gaps() {
    let down = Arc::new(AtomicBool::new(true));
    let outage = down.clone();
    let api =
        Api::start(cursor_api(move || outage.load(Ordering::SeqCst).then(|| Reply::status(503, "maintenance")))).await;
    let dir = tempfile::tempdir().unwrap();
    let trigger = "{interval: 1h, path: /items, records: .data, pagination: {cursor: {field: .meta.next, param: cursor}}, \
                   watermark: {field: .id, param: since_id, initial: \"0\"}}";
    {
        let queue = queue_in(&dir);
        let report = poller(&flow(&api.url, trigger), &queue).poll_once().await;
        assert_eq!((report.pages, report.queued), (1, 2));
        assert!(matches!(report.end, RunEnd::Failed { category: ErrorCategory::Server, .. }), "{report:?}");
        let progress = Progress::load(&queue, FLOW).unwrap();
        assert_eq!(progress.watermark, None, "the watermark waits for the run to complete");
        assert_eq!(progress.run.map(|r| r.next), Some(Page::Cursor("c2".into())));
    } // The runner goes away: queue, flow and poller dropped, the store closed.

    down.store(false, Ordering::SeqCst);
    let before = api.seen().len();
    let queue = queue_in(&dir);
    assert_eq!(poller(&flow(&api.url, trigger), &queue).poll_once().await, complete(2, 3, 0));
    let after: Vec<Seen> = api.seen().split_off(before);
    let cursors: Vec<_> = after.iter().map(|s| s.param("cursor")).collect();
    assert_eq!(cursors, [Some("c2".to_string()), Some("c3".to_string())], "page 1 is not read again");
    assert!(after.iter().all(|s| s.param("since_id").as_deref() == Some("0")), "a resumed run keeps its watermark");
    assert_eq!(queued_ids(&queue), [1, 2, 3, 4, 5]);
    assert_eq!(Progress::load(&queue, FLOW).unwrap().watermark, Some(json!(5)));
}

#[tokio::test]
async fn a_refused_page_stops_the_run_and_a_refused_resumed_page_starts_over() {
    let expired = Arc::new(AtomicBool::new(true));
    let refuse = expired.clone();
    let api = Api::start(cursor_api(move || {
        refuse.load(Ordering::SeqCst).then(|| Reply::status(400, r#"{"message":"cursor expired"}"#))
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let flow = flow(&api.url, CURSOR);
    let poller = poller(&flow, &queue);
    let report = poller.poll_once().await;
    assert_eq!(
        report.end,
        RunEnd::Failed { category: ErrorCategory::Rejected, message: "400 Bad Request: cursor expired".into() }
    );
    assert_eq!(uris(&api), ["/items", "/items?cursor=c2"], "a refusal is not retried");
    assert_eq!(poller.metrics.poll_errors.with_label_values(&[FLOW, "rejected"]).get(), 1);
    let status = flow.connectors["erp"].health.last_error().unwrap();
    assert_eq!(
        (status.category, status.message.as_str()),
        (ErrorCategory::Rejected, "400 Bad Request: cursor expired")
    );
    assert_eq!(Progress::load(&queue, FLOW).unwrap().run, None, "the refused run is dropped");

    expired.store(false, Ordering::SeqCst);
    assert_eq!(poller.poll_once().await, complete(3, 3, 2));
    assert_eq!(queued_ids(&queue), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn backpressure_pauses_before_the_next_page_and_the_run_resumes_there() {
    let api = Api::start(|seen, _| {
        let offset: u64 = seen.param("offset").unwrap().parse().unwrap();
        Reply::json(json!(items(1..=5).into_iter().skip(offset as usize).take(2).collect::<Vec<_>>()))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    let flow = flow(
        &api.url,
        "{interval: 1h, path: /items, pagination: {offset: {param: offset, limitParam: limit, pageSize: 2}}}",
    );
    let limited = Poller::new(flow.clone(), queue.clone(), Metrics::new(), Some(2)).unwrap().expect("a poll trigger");
    assert!(!limited.should_pause());
    let report = limited.poll_once().await;
    assert_eq!(report, RunReport { pages: 2, queued: 4, duplicates: 0, end: RunEnd::Paused });
    assert!(limited.should_pause(), "4 waiting, 2 allowed");
    assert!(!poller(&flow, &queue).should_pause(), "no limit, no pause");

    // The backlog drains (here: a limit it is under); the run goes on from page 3.
    let roomier = Poller::new(flow.clone(), queue.clone(), Metrics::new(), Some(10)).unwrap().expect("a poll trigger");
    assert_eq!(roomier.poll_once().await, complete(1, 1, 0));
    let offsets: Vec<_> = api.seen().iter().map(|s| s.param("offset").unwrap()).collect();
    assert_eq!(offsets, ["0", "2", "4"]);
    assert_eq!(queued_ids(&queue), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn a_page_that_does_not_fit_the_trigger_is_an_invalid_page() {
    let api = Api::start(|seen, _| match seen.uri.as_str() {
        "/html" => Reply::status(200, "<html>login</html>"),
        _ => Reply::json(json!({"data": {"id": 1}})),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_in(&dir);
    for (path, expected) in
        [("/html", "the page is not JSON"), ("/object", "`records` (`.data`) gave an object, not an array")]
    {
        let flow = flow(&api.url, &format!("{{interval: 1h, path: {path}, records: .data}}"));
        let report = poller(&flow, &queue).poll_once().await;
        let RunEnd::Failed { category: ErrorCategory::Invalid, message } = &report.end else { panic!("{report:?}") };
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(queue.pending(FLOW).unwrap(), 0);
}

#[test]
fn a_record_keeps_its_delivery_id_whatever_the_key_order_and_a_change_gets_a_new_one() {
    let a: Value = serde_json::from_str(r#"{"id": 7, "sku": "A", "dims": {"w": 1, "h": 2}}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"dims": {"h": 2, "w": 1}, "sku": "A", "id": 7}"#).unwrap();
    assert_eq!(delivery_id(&a), delivery_id(&b));
    assert!(delivery_id(&a).starts_with("poll:"));
    assert_ne!(delivery_id(&a), delivery_id(&json!({"id": 7, "sku": "B", "dims": {"w": 1, "h": 2}})));
}

#[tokio::test]
async fn a_page_past_the_cap_is_refused_as_invalid_and_not_asked_for_again() {
    use super::run::{MAX_PAGE_BYTES, get_page};
    let url = crate::test_support::endless_bodies().await;
    let spec = ConnectorSpec { endpoint: Some(url.clone()), allow_plain_http: true, ..ConnectorSpec::default() };
    let client = ConnectorClient::new("shop", "retail", &spec, &Secrets::default()).unwrap();
    let page = reqwest::Url::parse(&format!("{url}/page")).unwrap();
    let mut attempts = 0;
    let failure = match get_page(&client, &page, &Default::default(), |_, _, _| attempts += 1).await {
        Err(failure) => failure,
        Ok(_) => panic!("an endless page was read"),
    };
    assert_eq!(failure.category, ErrorCategory::Invalid);
    assert!(failure.refused && failure.message.contains(&format!("{} MiB", MAX_PAGE_BYTES >> 20)), "{failure:?}");
    assert_eq!(attempts, 1, "asked once: the same page would come again");
}
