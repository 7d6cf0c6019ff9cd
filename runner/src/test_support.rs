//! Fakes shared by the runner's unit tests: a scripted HTTP API that records what it
//! was sent, and an OAuth2 token endpoint that counts token requests. Both listen on
//! loopback.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, post},
};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::{manifest::ObjectKey, secrets::Secrets};

use entrepot_api::resource::{ClientAuth, OAuth2ClientCredentials, SecretKeySelector};

/// A server on loopback whose `/endless` answers 500 with a body that never ends, `/page`
/// 200 with one, and `/short` 200 with `0123456789`; returns its URL.
pub async fn endless_bodies() -> String {
    let endless = || {
        let chunk = || Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'x'; 64 * 1024]));
        axum::body::Body::from_stream(futures::stream::repeat_with(chunk))
    };
    let app = Router::new()
        .route("/endless", any(move || async move { (StatusCode::INTERNAL_SERVER_ERROR, endless()).into_response() }))
        .route("/page", any(move || async move { (StatusCode::OK, endless()).into_response() }))
        .route("/short", any(|| async { "0123456789" }));
    serve(app).await
}

/// Serves `app` on a loopback port; returns `http://127.0.0.1:PORT`.
pub async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// One request an [`Api`] received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Path and query, e.g. `/items?limit=2`.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
}

impl Seen {
    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<String> {
        let query = self.uri.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// The `Authorization` header.
    pub fn authorization(&self) -> Option<&str> {
        self.headers.get("authorization").and_then(|v| v.to_str().ok())
    }
}

/// An answer of an [`Api`].
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: serde_json::Value) -> Self {
        Self { status: 200, headers: vec![("content-type".into(), "application/json".into())], body: body.to_string() }
    }

    /// `status` with a text body.
    pub fn status(status: u16, body: &str) -> Self {
        Self { status, headers: Vec::new(), body: body.into() }
    }

    /// With a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Answer = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct ApiState {
    answer: Arc<Answer>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// An HTTP API that answers every request with `answer(request, how many came before)`
/// and records what it received.
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Api {
    /// Starts the API.
    pub async fn start(answer: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ApiState { answer: Arc::new(answer), seen: seen.clone() };
        let url = serve(Router::new().fallback(any(api_answer)).with_state(state)).await;
        Self { url, seen }
    }

    /// What it received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn api_answer(State(state): State<ApiState>, request: Request) -> Response {
    let seen = Seen { uri: request.uri().to_string(), headers: request.headers().clone() };
    let n = {
        let mut log = state.seen.lock().unwrap();
        log.push(seen.clone());
        log.len() - 1
    };
    let reply = (state.answer)(&seen, n);
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        response.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    response
}

/// A token request as received: its `Authorization` header and its form.
type TokenRequest = (Option<String>, BTreeMap<String, String>);

struct TokenState {
    requests: AtomicU64,
    expires_in: Option<u64>,
    forms: Mutex<Vec<TokenRequest>>,
    failure: Mutex<Option<(u16, String)>>,
    gate: Semaphore,
}

/// An OAuth2 token endpoint: answers `tok-1`, `tok-2`, ... and counts requests.
pub struct TokenEndpoint {
    /// The token URL.
    pub url: String,
    state: Arc<TokenState>,
}

impl TokenEndpoint {
    /// Starts an endpoint whose tokens live `expires_in` seconds (no `expires_in` when
    /// `None`).
    pub async fn start(expires_in: Option<u64>) -> Self {
        let state = Arc::new(TokenState {
            requests: AtomicU64::new(0),
            expires_in,
            forms: Mutex::default(),
            failure: Mutex::default(),
            gate: Semaphore::new(Semaphore::MAX_PERMITS),
        });
        let url = serve(Router::new().route("/token", post(issue)).with_state(state.clone())).await;
        Self { url: format!("{url}/token"), state }
    }

    /// Holds every request until [`TokenEndpoint::release`].
    pub fn hold(&self) {
        self.state.gate.forget_permits(Semaphore::MAX_PERMITS);
    }

    /// Lets held requests through.
    pub fn release(&self) {
        self.state.gate.add_permits(Semaphore::MAX_PERMITS - self.state.gate.available_permits());
    }

    /// Answers every later request with `status` and `body`.
    pub fn fail_with(&self, status: u16, body: &str) {
        *self.state.failure.lock().unwrap() = Some((status, body.into()));
    }

    /// Token requests received.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Waits until `n` token requests arrived.
    pub async fn wait_for_requests(&self, n: u64) {
        while self.requests() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The last request's form.
    pub fn last_form(&self) -> BTreeMap<String, String> {
        self.state.forms.lock().unwrap().last().cloned().unwrap_or_default().1
    }

    /// The last request's `Authorization` header.
    pub fn last_authorization(&self) -> Option<String> {
        self.state.forms.lock().unwrap().last().and_then(|(a, _)| a.clone())
    }
}

async fn issue(State(state): State<Arc<TokenState>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
    let form = url::form_urlencoded::parse(&body).into_owned().collect();
    state.forms.lock().unwrap().push((authorization, form));
    drop(state.gate.acquire().await.unwrap());
    if let Some((status, body)) = state.failure.lock().unwrap().clone() {
        return (StatusCode::from_u16(status).unwrap(), body).into_response();
    }
    let mut token = serde_json::json!({"access_token": format!("tok-{n}"), "token_type": "Bearer"});
    if let Some(expires_in) = state.expires_in {
        token["expires_in"] = expires_in.into();
    }
    axum::Json(token).into_response()
}

/// OAuth2 client credentials against `token_url`, client id and secret in Secret `oauth`.
pub fn oauth2_spec(token_url: &str) -> OAuth2ClientCredentials {
    OAuth2ClientCredentials {
        token_url: token_url.into(),
        client_id_secret_ref: SecretKeySelector { name: "oauth".into(), key: "client-id".into() },
        client_secret_secret_ref: SecretKeySelector { name: "oauth".into(), key: "client-secret".into() },
        scopes: Vec::new(),
        audience: None,
        extra_params: BTreeMap::new(),
        client_auth: ClientAuth::Basic,
        refresh_token_secret_ref: None,
    }
}

/// The Secret behind [`oauth2_spec`] in namespace `retail`: characters that need
/// encoding in both values.
pub fn oauth2_secrets() -> Secrets {
    let key = ObjectKey { namespace: "retail".into(), name: "oauth".into() };
    let values = BTreeMap::from([
        ("client-id".to_string(), "client/id".to_string()),
        ("client-secret".to_string(), "s3cr&t".to_string()),
    ]);
    Secrets::with_manifests(BTreeMap::from([(key, values)])).with_env(BTreeMap::new())
}

/// OAuth2 against `token_url` with the keys of Secret `market` (`client-id`,
/// `client-secret` and, with `refresh`, `refresh-token`): the marketplaces' credentials.
pub fn marketplace_oauth(
    token_url: String,
    client_auth: ClientAuth,
    refresh: bool,
) -> entrepot_api::resource::ConnectorAuth {
    let key = |k: &str| SecretKeySelector { name: "market".into(), key: k.into() };
    entrepot_api::resource::ConnectorAuth::OAuth2ClientCredentials(OAuth2ClientCredentials {
        token_url,
        client_id_secret_ref: key("client-id"),
        client_secret_secret_ref: key("client-secret"),
        scopes: Vec::new(),
        audience: None,
        extra_params: BTreeMap::new(),
        client_auth,
        refresh_token_secret_ref: refresh.then(|| key("refresh-token")),
    })
}

/// Secret `market` in namespace `retail` with these keys and values.
pub fn marketplace_secrets(values: &[(&str, &str)]) -> Secrets {
    let object = ObjectKey { namespace: "retail".into(), name: "market".into() };
    let values = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Secrets::with_manifests(BTreeMap::from([(object, values)])).with_env(BTreeMap::new())
}

/// Writes a Secret volume the way the kubelet's atomic writer does: the files live in a
/// timestamped directory, `..data` links to it, and each key is a link `<key> ->
/// ..data/<key>`. A later call writes a new directory and swaps `..data` with one
/// `rename`, so a reader sees either all the old files or all the new ones.
pub fn kubelet_secret_volume(dir: &std::path::Path, generation: u32, files: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(dir).unwrap();
    let timestamped = format!("..2026_12_07_12_00_00.{generation}");
    std::fs::create_dir(dir.join(&timestamped)).unwrap();
    for (key, value) in files {
        std::fs::write(dir.join(&timestamped).join(key), value).unwrap();
        let link = dir.join(key);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(std::path::Path::new("..data").join(key), &link).unwrap();
        }
    }
    let staged = dir.join("..data_tmp");
    symlink(&timestamped, &staged).unwrap();
    std::fs::rename(&staged, dir.join("..data")).unwrap();
}
