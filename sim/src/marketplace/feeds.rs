//! The Feeds API path for `JSON_LISTINGS_FEED`: an asynchronous job.
//!
//! `createFeedDocument` answers an upload URL (a pre-signed S3 URL in production, served
//! here at `/uploads/{id}` without authentication, as S3 needs none besides the signature);
//! the caller `PUT`s the JSON there and calls `createFeed`, then polls `getFeed`. Each
//! `getFeed` moves the feed one state on: `IN_QUEUE` → `IN_PROGRESS` → `DONE` (messages
//! applied, a processing report in `resultFeedDocumentId`) or `FATAL` (the document is not a
//! listings feed). At most [`super::MarketplaceConfig::feeds_per_window`] feeds are accepted
//! per window (Amazon: 5 per 5 minutes); more are `429 QuotaExceeded`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::sp_error::{SpError, patched_quantity};
use super::{ListingCause, Market, Operation, Shared};

/// The feed type this simulator processes.
const LISTINGS_FEED: &str = "JSON_LISTINGS_FEED";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedState {
    InQueue,
    InProgress,
    Done,
    Fatal,
}

impl FeedState {
    fn as_str(self) -> &'static str {
        match self {
            Self::InQueue => "IN_QUEUE",
            Self::InProgress => "IN_PROGRESS",
            Self::Done => "DONE",
            Self::Fatal => "FATAL",
        }
    }
}

#[derive(Debug)]
struct Feed {
    input: String,
    state: FeedState,
    created: Timestamp,
    result: Option<String>,
}

/// Documents, feeds and the recent feed creations the window counts.
#[derive(Debug, Default)]
pub(super) struct Feeds {
    documents: HashMap<String, Option<Bytes>>,
    feeds: BTreeMap<String, Feed>,
    recent: VecDeque<Instant>,
    next_id: u64,
}

impl Feeds {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/feeds/2021-06-30/documents", post(create_feed_document))
        .route("/feeds/2021-06-30/documents/{id}", get(get_feed_document))
        .route("/feeds/2021-06-30/feeds", post(create_feed))
        .route("/feeds/2021-06-30/feeds/{id}", get(get_feed))
        .route("/uploads/{id}", put(upload).get(download))
}

fn upload_url(headers: &HeaderMap, id: &str) -> String {
    let host = headers.get(header::HOST).and_then(|host| host.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}/uploads/{id}")
}

/// `POST /feeds/2021-06-30/documents`.
async fn create_feed_document(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let op = Operation::CreateFeedDocument;
    if let Err(refused) = shared.admit(op, &headers) {
        return *refused;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request["contentType"].as_str().is_none_or(str::is_empty) {
        return shared.fail(SpError::invalid(op, "contentType is required, e.g. application/json; charset=UTF-8."));
    }
    let id = {
        let mut market = shared.market();
        let id = format!("amzn1.tortuga.4.na.{}", market.feeds.next_id());
        market.feeds.documents.insert(id.clone(), None);
        id
    };
    let url = upload_url(&headers, &id);
    shared.answer(op, StatusCode::CREATED, &json!({"feedDocumentId": id, "url": url}))
}

/// `GET /feeds/2021-06-30/documents/{id}`: where to download a document (a processing report).
async fn get_feed_document(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let op = Operation::GetFeedDocument;
    if let Err(refused) = shared.admit(op, &headers) {
        return *refused;
    }
    if !shared.market().feeds.documents.contains_key(&id) {
        return shared.fail(SpError::not_found(op, format!("No feed document {id}.")));
    }
    let url = upload_url(&headers, &id);
    shared.answer(op, StatusCode::OK, &json!({"feedDocumentId": id, "url": url}))
}

/// `PUT /uploads/{id}`: the pre-signed upload.
async fn upload(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    match shared.market().feeds.documents.get_mut(&id) {
        Some(slot) => {
            *slot = Some(body);
            StatusCode::OK
        }
        None => StatusCode::FORBIDDEN,
    }
}

/// `GET /uploads/{id}`.
async fn download(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.market().feeds.documents.get(&id) {
        Some(Some(bytes)) => bytes.clone().into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `POST /feeds/2021-06-30/feeds`.
async fn create_feed(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let op = Operation::CreateFeed;
    if let Err(refused) = shared.admit(op, &headers) {
        return *refused;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let feed_type = request["feedType"].as_str().unwrap_or_default();
    if feed_type != LISTINGS_FEED {
        return shared.fail(SpError::invalid(
            op,
            format!("feedType {feed_type:?} is not supported: this marketplace processes {LISTINGS_FEED}."),
        ));
    }
    let input = request["inputFeedDocumentId"].as_str().unwrap_or_default().to_owned();
    let mut market = shared.market();
    if !matches!(market.feeds.documents.get(&input), Some(Some(_))) {
        return shared
            .fail(SpError::invalid(op, format!("inputFeedDocumentId {input:?} names no uploaded feed document.")));
    }
    let now = Instant::now();
    let window = shared.config.feed_window;
    let feeds = &mut market.feeds;
    while feeds.recent.front().is_some_and(|at| now.duration_since(*at) >= window) {
        feeds.recent.pop_front();
    }
    if feeds.recent.len() >= shared.config.feeds_per_window {
        *market.stats.throttled.entry(op.name()).or_default() += 1;
        drop(market);
        return shared.fail(SpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "QuotaExceeded",
            format!(
                "You exceeded your quota of {} {LISTINGS_FEED} feeds per {} s.",
                shared.config.feeds_per_window,
                window.as_secs()
            ),
            Some(op),
        ));
    }
    feeds.recent.push_back(now);
    let id = format!("{}", 50_000_000_000 + feeds.next_id());
    feeds.feeds.insert(id.clone(), Feed { input, state: FeedState::InQueue, created: Timestamp::now(), result: None });
    market.stats.feeds_created += 1;
    drop(market);
    shared.answer(op, StatusCode::ACCEPTED, &json!({"feedId": id}))
}

/// `GET /feeds/2021-06-30/feeds/{id}`: the feed's state, moved on one step.
async fn get_feed(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let op = Operation::GetFeed;
    if let Err(refused) = shared.admit(op, &headers) {
        return *refused;
    }
    let mut market = shared.market();
    let Some(feed) = market.feeds.feeds.get(&id) else {
        drop(market);
        return shared.fail(SpError::not_found(op, format!("No feed {id}.")));
    };
    let (state, input, created) = (feed.state, feed.input.clone(), feed.created);
    let next = match state {
        FeedState::InQueue => FeedState::InProgress,
        FeedState::InProgress => {
            let report = process(&mut market, &shared.config.seller_id, &id, &input);
            let result_id = format!("amzn1.tortuga.4.na.{}", market.feeds.next_id());
            let fatal = report["summary"]["fatal"].as_bool().unwrap_or(false);
            market.feeds.documents.insert(result_id.clone(), Some(Bytes::from(report.to_string())));
            if let Some(feed) = market.feeds.feeds.get_mut(&id) {
                feed.result = Some(result_id);
            }
            if fatal { FeedState::Fatal } else { FeedState::Done }
        }
        done => done,
    };
    let result = market.feeds.feeds.get_mut(&id).and_then(|feed| {
        feed.state = next;
        feed.result.clone()
    });
    drop(market);
    let mut body = json!({
        "feedId": id,
        "feedType": LISTINGS_FEED,
        "createdTime": created,
        "processingStatus": next.as_str(),
    });
    if let Some(result) = result {
        body["resultFeedDocumentId"] = Value::String(result);
    }
    shared.answer(op, StatusCode::OK, &body)
}

/// Applies a listings feed's messages and builds its processing report.
fn process(market: &mut Market, seller_id: &str, feed_id: &str, input: &str) -> Value {
    let document: Option<Value> = market
        .feeds
        .documents
        .get(input)
        .and_then(|bytes| bytes.as_ref())
        .and_then(|bytes| serde_json::from_slice(bytes).ok());
    let fatal = |message: String| {
        json!({
            "header": {"sellerId": seller_id, "version": "2.0", "feedId": feed_id},
            "issues": [{"code": "FATAL", "severity": "ERROR", "message": message}],
            "summary": {"fatal": true, "errors": 1, "warnings": 0, "messagesProcessed": 0, "messagesAccepted": 0, "messagesInvalid": 0},
        })
    };
    let Some(document) = document else {
        return fatal("The feed document is not JSON.".to_owned());
    };
    if document["header"]["sellerId"].as_str() != Some(seller_id) {
        return fatal(format!("header.sellerId must be {seller_id}."));
    }
    let Some(messages) = document["messages"].as_array() else {
        return fatal("messages must be an array.".to_owned());
    };
    let mut issues = Vec::new();
    let mut accepted = 0;
    for (index, message) in messages.iter().enumerate() {
        let message_id = message["messageId"].clone();
        let sku = message["sku"].as_str().unwrap_or_default();
        let at = format!("messages[{index}].");
        let outcome = if sku.is_empty() {
            Err(format!("{at}sku is required"))
        } else {
            patched_quantity(&message["patches"], &at)
        };
        match outcome {
            Ok(quantity) => {
                if let Some(quantity) = quantity {
                    market.set_quantity(sku, quantity, ListingCause::Feed);
                }
                accepted += 1;
            }
            Err(error) => {
                issues.push(json!({"messageId": message_id, "code": "4000001", "severity": "ERROR", "message": error}))
            }
        }
    }
    json!({
        "header": {"sellerId": seller_id, "version": "2.0", "feedId": feed_id},
        "issues": issues,
        "summary": {
            "errors": issues.len(),
            "warnings": 0,
            "messagesProcessed": messages.len(),
            "messagesAccepted": accepted,
            "messagesInvalid": messages.len() - accepted,
        },
    })
}
