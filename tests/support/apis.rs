//! Fakes of the APIs a poll flow talks to: an ERP that lists items page by page, and an
//! OAuth2 token endpoint that counts the tokens it issues.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;

async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[derive(Clone)]
struct TokenState {
    issued: Arc<AtomicU64>,
    client: String,
}

/// An OAuth2 token endpoint (`POST /oauth/token`) for one client, authenticated with
/// HTTP basic: answers `tok-1`, `tok-2`, ... valid for an hour.
pub struct TokenEndpoint {
    /// The token URL.
    pub url: String,
    issued: Arc<AtomicU64>,
}

impl TokenEndpoint {
    /// Starts an endpoint for `client_id` / `client_secret`.
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        let issued = Arc::new(AtomicU64::new(0));
        let state = TokenState { issued: issued.clone(), client: basic(client_id, client_secret) };
        let url = serve(Router::new().route("/oauth/token", post(issue)).with_state(state)).await;
        Self { url: format!("{url}/oauth/token"), issued }
    }

    /// Tokens issued.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }
}

async fn issue(State(state): State<TokenState>, headers: HeaderMap, body: String) -> Response {
    let authorized = headers.get("authorization").is_some_and(|v| v.as_bytes() == state.client.as_bytes());
    if !authorized || !body.contains("grant_type=client_credentials") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
    Json(json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": 3600})).into_response()
}

#[derive(Default)]
struct Items {
    items: Vec<Value>,
    requests: Vec<Vec<(String, String)>>,
}

#[derive(Clone)]
struct ItemsState {
    items: Arc<Mutex<Items>>,
    credentials: String,
}

/// An ERP's `GET /api/v1/items?modifiedSince=&offset=&limit=`: the items modified at or
/// after `modifiedSince` (RFC 3339 UTC text, so text order is time order), by offset,
/// as `{items: [...]}`. Every request must carry the given basic credentials.
pub struct ItemsApi {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    items: Arc<Mutex<Items>>,
}

impl ItemsApi {
    /// Starts the API with `items`, each with a `lastModified`.
    pub async fn start(items: Vec<Value>, username: &str, password: &str) -> Self {
        let items = Arc::new(Mutex::new(Items { items, requests: Vec::new() }));
        let state = ItemsState { items: items.clone(), credentials: basic(username, password) };
        let url = serve(Router::new().route("/api/v1/items", get(list)).with_state(state)).await;
        Self { url, items }
    }

    /// Replaces the item with the same `itemId`, or adds it.
    pub fn upsert(&self, item: Value) {
        let mut state = self.items.lock().unwrap();
        match state.items.iter_mut().find(|i| i["itemId"] == item["itemId"]) {
            Some(existing) => *existing = item,
            None => state.items.push(item),
        }
    }

    /// The query of every request so far.
    pub fn requests(&self) -> Vec<Vec<(String, String)>> {
        self.items.lock().unwrap().requests.clone()
    }
}

async fn list(
    State(state): State<ItemsState>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if headers.get("authorization").is_none_or(|v| v.as_bytes() != state.credentials.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    }
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let since = param("modifiedSince").unwrap_or_default();
    let offset: usize = param("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let mut items = state.items.lock().unwrap();
    items.requests.push(query.clone());
    let page: Vec<Value> = items
        .items
        .iter()
        .filter(|i| i["lastModified"].as_str().unwrap_or_default() >= since.as_str())
        .skip(offset)
        .take(limit)
        .cloned()
        .collect();
    Json(json!({"items": page})).into_response()
}
