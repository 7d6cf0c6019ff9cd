//! OAuth 2.0 client credentials (RFC 6749 §4.4), or the refresh-token grant (§6, Login
//! with Amazon) when a refresh token is configured: one cached access token per
//! Connector, refreshed before it expires, with a single request in flight however many
//! deliveries and pages need a token at the same moment.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine as _;
use reqwest::{
    Url,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue},
};
use serde::Deserialize;
use tracing::{info, warn};

use super::{auth_error::AuthError, sensitive::sensitive};
use crate::protocol::describe_transport;
use crate::{protocol::summarize_body, secrets::Secrets};
use entrepot_api::resource::{ClientAuth, ConnectorType, OAuth2ClientCredentials, SecretKeySelector};

/// Lifetime assumed when the token endpoint gives no `expires_in`: short, so a token
/// that in fact lives less is still replaced before most systems would refuse it.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The most of a token endpoint's answer that is read: a token answer is a few KiB.
const TOKEN_ANSWER_LIMIT: usize = 64 * 1024;
/// A token is replaced when less than this, or a tenth of its lifetime, remains.
const MIN_MARGIN: Duration = Duration::from_secs(60);
/// After a failed early refresh the still-valid token is used, and the refresh tried
/// again this much later rather than on every request.
const RETRY_REFRESH: Duration = Duration::from_secs(5);
/// Callers that queued behind a token request that failed get its error rather than
/// sending a request each (the endpoint is down: no herd).
const FAILURE_REUSE: Duration = Duration::from_secs(1);

/// The longest a token is used before a new one is asked for, whatever `expires_in`
/// says: an absurd one (`u64::MAX`) would overflow the clock, and a day bounds how long
/// a revoked grant keeps working here.
const MAX_LIFETIME: Duration = Duration::from_secs(86_400);

/// When to replace a token that lives `expires_in` seconds, and when it expires, both
/// from when it was obtained.
fn schedule(expires_in: Option<u64>) -> (Duration, Duration) {
    let lifetime = expires_in.filter(|s| *s > 0).map_or(DEFAULT_LIFETIME, Duration::from_secs).min(MAX_LIFETIME);
    // The larger of 10% and 60 s, but never more than half: a 60-second token is used
    // for 30 seconds, not refreshed on every request.
    let margin = (lifetime / 10).max(MIN_MARGIN).min(lifetime / 2);
    (lifetime - margin, lifetime)
}

struct Token {
    value: HeaderValue,
    generation: u64,
    refresh_at: Instant,
    expires_at: Instant,
}

struct Failure {
    at: Instant,
    error: AuthError,
}

/// The token endpoint's answer (RFC 6749 §5.1). `expires_in` is a number, though some
/// servers send it as a string.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// Gets, caches and refreshes one Connector's access token.
pub(super) struct TokenSource {
    connector: String,
    namespace: String,
    spec: OAuth2ClientCredentials,
    /// The Connector's type: some token endpoints want headers of their own.
    kind: ConnectorType,
    url: Url,
    secrets: Secrets,
    http: reqwest::Client,
    current: Mutex<Option<Token>>,
    /// Held while a token is requested; keeps the last failure for callers that waited.
    requesting: tokio::sync::Mutex<Option<Failure>>,
    generations: AtomicU64,
}

impl TokenSource {
    pub(super) fn new(
        connector: &str,
        namespace: &str,
        spec: &OAuth2ClientCredentials,
        secrets: Secrets,
        http: reqwest::Client,
    ) -> Result<Self, AuthError> {
        let bad_url =
            |reason: String| AuthError::TokenUrl { connector: connector.into(), url: spec.token_url.clone(), reason };
        let url = Url::parse(&spec.token_url).map_err(|e| bad_url(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad_url(format!("the scheme is {}", url.scheme())));
        }
        Ok(Self {
            connector: connector.into(),
            namespace: namespace.into(),
            spec: spec.clone(),
            kind: ConnectorType::default(),
            url,
            secrets,
            http,
            current: Mutex::new(None),
            requesting: tokio::sync::Mutex::new(None),
            generations: AtomicU64::new(0),
        })
    }

    /// Sets the Connector's type (see `protocol::System::decorate_token_request`).
    pub(super) fn set_kind(&mut self, kind: ConnectorType) {
        self.kind = kind;
    }

    /// `Bearer <token>` and the token's generation.
    pub(super) async fn token(&self) -> Result<(HeaderValue, u64), AuthError> {
        self.token_at(Instant::now()).await
    }

    /// The system refused the token of `generation`: the next caller gets a new one. A
    /// newer token (another caller already refreshed) is kept.
    pub(super) fn invalidate(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|t| t.generation == generation) {
            *current = None;
        }
    }

    /// [`TokenSource::token`] as of `now` (tests move the clock forward).
    async fn token_at(&self, now: Instant) -> Result<(HeaderValue, u64), AuthError> {
        if let Some(token) = self.cached(now, |t| t.refresh_at) {
            return Ok(token);
        }
        let mut last_failure = self.requesting.lock().await;
        // Whoever held the lock before may have just refreshed it.
        if let Some(token) = self.cached(now, |t| t.refresh_at) {
            return Ok(token);
        }
        if let Some(failure) = last_failure.as_ref().filter(|f| f.at.elapsed() < FAILURE_REUSE) {
            return self.cached(now, |t| t.expires_at).ok_or_else(|| failure.error.clone());
        }
        match self.request().await {
            Ok((value, expires_in)) => {
                *last_failure = None;
                let generation = self.generations.fetch_add(1, Ordering::SeqCst) + 1;
                let (refresh_after, lifetime) = schedule(expires_in);
                let token = Token { value, generation, refresh_at: now + refresh_after, expires_at: now + lifetime };
                info!(connector = %self.connector, generation, expires_in_s = lifetime.as_secs(), "access token obtained");
                let answer = (token.value.clone(), generation);
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
                Ok(answer)
            }
            Err(error) => {
                *last_failure = Some(Failure { at: Instant::now(), error: error.clone() });
                let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
                match current.as_mut().filter(|t| now < t.expires_at) {
                    Some(still_valid) => {
                        warn!(connector = %self.connector, error = %error, "cannot refresh the access token; using the current one until it expires");
                        still_valid.refresh_at = now + RETRY_REFRESH;
                        Ok((still_valid.value.clone(), still_valid.generation))
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// The current token if `now` is before the deadline `until` picks.
    fn cached(&self, now: Instant, until: impl Fn(&Token) -> Instant) -> Option<(HeaderValue, u64)> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|t| now < until(t)).map(|t| (t.value.clone(), t.generation))
    }

    /// One token request: the header value and `expires_in`.
    async fn request(&self) -> Result<(HeaderValue, Option<u64>), AuthError> {
        let failed =
            |reason: String| AuthError::Token { connector: self.connector.clone(), url: self.url.to_string(), reason };
        let client_id = self.secret(&self.spec.client_id_secret_ref)?;
        let client_secret = self.secret(&self.spec.client_secret_secret_ref)?;
        let refresh_token = self.spec.refresh_token_secret_ref.as_ref().map(|r| self.secret(r)).transpose()?;
        let mut headers = reqwest::header::HeaderMap::new();
        crate::protocol::system(self.kind).decorate_token_request(&mut headers);
        let mut request = self
            .http
            .post(self.url.clone())
            .headers(headers)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(self.form(&client_id, &client_secret, refresh_token.as_deref()));
        if self.spec.client_auth == ClientAuth::Basic {
            // RFC 6749 §2.3.1: each part form-encoded before they are joined.
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(&client_id), encode(&client_secret));
            let value = sensitive(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
                .ok_or_else(|| failed("the client id or secret cannot be sent in a header".into()))?;
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(|e| failed(describe_transport(&e)))?;
        let status = response.status();
        let capped =
            super::body::read_prefix(response, TOKEN_ANSWER_LIMIT).await.map_err(|e| failed(describe_transport(&e)))?;
        if capped.cut && status.is_success() {
            return Err(failed(format!("the token answer is larger than {TOKEN_ANSWER_LIMIT} bytes")));
        }
        let body = capped.body;
        if !status.is_success() {
            return Err(failed(format!("{status}: {}", summarize_body(&String::from_utf8_lossy(&body)))));
        }
        let answer: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| failed(format!("the answer is not a token response: {e}")))?;
        let expires_in = answer.expires_in.as_ref().and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        let value = sensitive(&format!("Bearer {}", answer.access_token.trim()))
            .ok_or_else(|| failed("the access token cannot be sent in a header".into()))?;
        Ok((value, expires_in))
    }

    /// The token request's form: the grant (with the refresh token, if any), scopes,
    /// audience, extra parameters and, for `clientAuth: body`, the client's credentials.
    fn form(&self, client_id: &str, client_secret: &str, refresh_token: Option<&str>) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        match refresh_token {
            Some(token) => form.append_pair("grant_type", "refresh_token").append_pair("refresh_token", token),
            None => form.append_pair("grant_type", "client_credentials"),
        };
        if !self.spec.scopes.is_empty() {
            form.append_pair("scope", &self.spec.scopes.join(" "));
        }
        if let Some(audience) = &self.spec.audience {
            form.append_pair("audience", audience);
        }
        form.extend_pairs(&self.spec.extra_params);
        if self.spec.client_auth == ClientAuth::Body {
            form.append_pair("client_id", client_id).append_pair("client_secret", client_secret);
        }
        form.finish()
    }

    fn secret(&self, selector: &SecretKeySelector) -> Result<String, AuthError> {
        self.secrets
            .get(&self.namespace, selector)
            .map(|v| v.trim().to_string())
            .map_err(|source| AuthError::Secret { connector: self.connector.clone(), source: Box::new(source) })
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use super::*;
    use crate::test_support::{TokenEndpoint, oauth2_secrets, oauth2_spec};

    fn source(endpoint: &TokenEndpoint, client_auth: ClientAuth) -> TokenSource {
        let mut spec = oauth2_spec(&endpoint.url);
        spec.client_auth = client_auth;
        spec.scopes = vec!["items.read".into(), "items.write".into()];
        spec.extra_params = BTreeMap::from([("resource".to_string(), "erp".to_string())]);
        TokenSource::new("erp", "retail", &spec, oauth2_secrets(), reqwest::Client::new()).unwrap()
    }

    #[test]
    fn tokens_are_replaced_when_a_tenth_or_a_minute_of_their_life_remains() {
        let s = Duration::from_secs;
        assert_eq!(schedule(Some(3600)), (s(3240), s(3600)));
        assert_eq!(schedule(Some(300)), (s(240), s(300)));
        assert_eq!(schedule(Some(60)), (s(30), s(60)));
        assert_eq!(schedule(None), (s(240), s(300)));
        assert_eq!(schedule(Some(0)), schedule(None));
        // An absurd lifetime would overflow the clock when added to it.
        assert_eq!(schedule(Some(u64::MAX)), (s(86_400 - 8_640), s(86_400)));
    }

    #[tokio::test]
    async fn the_token_is_cached_and_refreshed_before_it_expires() {
        let endpoint = TokenEndpoint::start(Some(3600)).await;
        let tokens = source(&endpoint, ClientAuth::Basic);
        let t0 = Instant::now();
        let (first, _) = tokens.token_at(t0).await.unwrap();
        assert_eq!(first.to_str().unwrap(), "Bearer tok-1");
        let (again, _) = tokens.token_at(t0 + Duration::from_secs(3000)).await.unwrap();
        assert_eq!((again, endpoint.requests()), (first, 1));
        // 300 s before it expires, with 10% of its life left: replaced while still valid.
        let (second, _) = tokens.token_at(t0 + Duration::from_secs(3300)).await.unwrap();
        assert_eq!((second.to_str().unwrap(), endpoint.requests()), ("Bearer tok-2", 2));

        let form = endpoint.last_form();
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["scope"], "items.read items.write");
        assert_eq!(form["resource"], "erp");
        assert!(!form.contains_key("client_secret"), "basic client auth keeps the secret out of the form");
        let basic = base64::engine::general_purpose::STANDARD.encode("client%2Fid:s3cr%26t");
        assert_eq!(endpoint.last_authorization().as_deref(), Some(format!("Basic {basic}").as_str()));
    }

    #[tokio::test]
    async fn body_client_auth_sends_the_credentials_in_the_form() {
        let endpoint = TokenEndpoint::start(None).await;
        source(&endpoint, ClientAuth::Body).token().await.unwrap();
        let form = endpoint.last_form();
        assert_eq!((form["client_id"].as_str(), form["client_secret"].as_str()), ("client/id", "s3cr&t"));
        assert_eq!(endpoint.last_authorization(), None);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_token_request() {
        let endpoint = TokenEndpoint::start(Some(3600)).await;
        endpoint.hold();
        let tokens = Arc::new(source(&endpoint, ClientAuth::Basic));
        let callers: Vec<_> = (0..20)
            .map(|_| {
                tokio::spawn({
                    let tokens = tokens.clone();
                    async move { tokens.token().await.unwrap().0 }
                })
            })
            .collect();
        // Every caller is now waiting for the one request the endpoint holds; a caller
        // that sent its own would show up in the count.
        endpoint.wait_for_requests(1).await;
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        endpoint.release();
        for caller in callers {
            assert_eq!(caller.await.unwrap().to_str().unwrap(), "Bearer tok-1");
        }
        assert_eq!(endpoint.requests(), 1);
    }

    #[tokio::test]
    async fn a_refused_token_is_replaced_once_and_a_failed_refresh_names_the_endpoint() {
        let endpoint = TokenEndpoint::start(Some(3600)).await;
        let tokens = source(&endpoint, ClientAuth::Basic);
        let (_, first) = tokens.token().await.unwrap();
        tokens.invalidate(first);
        let (_, second) = tokens.token().await.unwrap();
        tokens.invalidate(first); // a late refusal of the old token keeps the new one
        assert_eq!((tokens.token().await.unwrap().1, endpoint.requests()), (second, 2));

        endpoint.fail_with(401, r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#);
        tokens.invalidate(second);
        let err = tokens.token().await.unwrap_err().to_string();
        assert!(err.contains("no access token from") && err.contains("Client authentication failed"), "{err}");
        assert!(!err.contains("s3cr"), "{err}");
    }
}
