//! A Connector's credentials, as the header each request carries: bearer token, API key
//! header, HTTP basic, or an OAuth2 client-credentials token. Secret values are read at
//! use time (a rotated Secret is picked up without a restart) and never reach a log,
//! an error message or a `Debug` output.

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use tracing::debug;

use super::{auth_error::AuthError, oauth2::TokenSource, sensitive::sensitive};
use crate::secrets::Secrets;
use entrepot_api::resource::{ConnectorAuth, SecretKeySelector};

/// The header that authenticates one request, with what is needed to refresh it if the
/// system refuses it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    header: Option<(HeaderName, HeaderValue)>,
    /// For OAuth2: which token this is, so that a refusal invalidates only that token.
    token: Option<u64>,
    /// The secret texts the header carries, to scrub from what the system answers
    /// (a system that echoes the request's headers in an error body).
    scrub: Scrub,
}

/// Secret texts to remove from an upstream answer before it is kept (a dead letter's
/// response body, `/v1/status`, a log line). `Debug` shows how many, never which.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scrub(Vec<String>);

impl std::fmt::Debug for Scrub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrub({} values)", self.0.len())
    }
}

impl Scrub {
    /// Texts shorter than this are not scrubbed: they would match ordinary words, and
    /// no credential is that short.
    const MIN_LEN: usize = 6;

    fn add(&mut self, value: &str) {
        let value = value.trim();
        if value.len() >= Self::MIN_LEN && !self.0.iter().any(|v| v == value) {
            self.0.push(value.to_string());
        }
    }

    /// `text` with every secret text replaced by `[redacted]`.
    pub fn apply(&self, text: String) -> String {
        // The longest first: a token's header value contains the token.
        let mut values: Vec<&String> = self.0.iter().filter(|v| text.contains(v.as_str())).collect();
        if values.is_empty() {
            return text;
        }
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.into_iter().fold(text, |text, v| text.replace(v.as_str(), "[redacted]"))
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The header's name only, never its value.
        f.debug_struct("Credentials")
            .field("header", &self.header.as_ref().map(|(name, _)| name.as_str()))
            .field("value", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The header to send, if the Connector has credentials.
    pub fn header(&self) -> Option<(&HeaderName, &HeaderValue)> {
        self.header.as_ref().map(|(n, v)| (n, v))
    }

    /// The secret texts to scrub from the system's answer to a request sent with these.
    pub fn scrub(&self) -> &Scrub {
        &self.scrub
    }
}

/// How one Connector authenticates. Shared by its targets and its poller.
pub struct Auth {
    connector: String,
    namespace: String,
    secrets: Secrets,
    scheme: Scheme,
}

enum Scheme {
    None,
    Bearer(SecretKeySelector),
    Header(HeaderName, SecretKeySelector),
    Basic { username: SecretKeySelector, password: SecretKeySelector },
    OAuth2(Box<TokenSource>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match &self.scheme {
            Scheme::None => "none",
            Scheme::Bearer(_) => "bearer",
            Scheme::Header(..) => "header",
            Scheme::Basic { .. } => "basic",
            Scheme::OAuth2(_) => "oauth2ClientCredentials",
        };
        f.debug_struct("Auth").field("connector", &self.connector).field("scheme", &scheme).finish_non_exhaustive()
    }
}

impl Auth {
    /// Sets up `spec` for Connector `connector` in `namespace`. Every Secret key it
    /// names must be available now, so a flow with a missing Secret does not start;
    /// the values are read again at each use.
    pub fn new(
        connector: &str,
        namespace: &str,
        spec: Option<&ConnectorAuth>,
        secrets: &Secrets,
        http: reqwest::Client,
    ) -> Result<Self, AuthError> {
        let scheme = match spec {
            None => Scheme::None,
            Some(ConnectorAuth::Bearer { secret_ref }) => Scheme::Bearer(secret_ref.clone()),
            Some(ConnectorAuth::Header(h)) => {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| AuthError::HeaderName { connector: connector.into(), name: h.name.clone() })?;
                Scheme::Header(name, h.secret_ref.clone())
            }
            // The Connector client turns `token` into the type's header before this point.
            Some(ConnectorAuth::Token { .. }) => {
                return Err(AuthError::HeaderName {
                    connector: connector.into(),
                    name: "(auth.token: set by the Connector type)".into(),
                });
            }
            Some(ConnectorAuth::Basic(b)) => {
                Scheme::Basic { username: b.username_secret_ref.clone(), password: b.password_secret_ref.clone() }
            }
            Some(ConnectorAuth::OAuth2ClientCredentials(o)) => {
                Scheme::OAuth2(Box::new(TokenSource::new(connector, namespace, o, secrets.clone(), http)?))
            }
        };
        let auth = Self { connector: connector.into(), namespace: namespace.into(), secrets: secrets.clone(), scheme };
        for selector in spec.map(ConnectorAuth::secret_refs).unwrap_or_default() {
            auth.secret(selector, false)?;
        }
        Ok(auth)
    }

    /// Fits the token requests to the Connector's type (Walmart's token endpoint wants
    /// its `WM_*` headers).
    pub fn for_type(mut self, kind: entrepot_api::resource::ConnectorType) -> Self {
        if let Scheme::OAuth2(tokens) = &mut self.scheme {
            tokens.set_kind(kind);
        }
        self
    }

    /// The credentials for the next request. For OAuth2 this may call the token endpoint
    /// (once, however many callers ask at the same time).
    pub async fn credentials(&self) -> Result<Credentials, AuthError> {
        self.build(false).await
    }

    /// The system refused `refused`: gets fresh credentials (a new token; the Secret
    /// read again, bypassing the cache) and says whether they differ, that is whether
    /// one more attempt is worth making.
    pub async fn refresh(&self, refused: &Credentials) -> bool {
        if let Scheme::OAuth2(tokens) = &self.scheme {
            if let Some(generation) = refused.token {
                tokens.invalidate(generation);
            }
            return true;
        }
        match self.build(true).await {
            Ok(fresh) => fresh != *refused,
            Err(e) => {
                debug!(connector = %self.connector, error = %e, "cannot re-read credentials after a 401");
                false
            }
        }
    }

    async fn build(&self, fresh: bool) -> Result<Credentials, AuthError> {
        let mut scrub = Scrub::default();
        let header = match &self.scheme {
            Scheme::None => None,
            Scheme::Bearer(selector) => {
                let token = self.secret(selector, fresh)?;
                scrub.add(&token);
                Some((AUTHORIZATION, self.value(&format!("Bearer {}", token.trim()), selector)?))
            }
            Scheme::Header(name, selector) => {
                let key = self.secret(selector, fresh)?;
                scrub.add(&key);
                Some((name.clone(), self.value(key.trim(), selector)?))
            }
            Scheme::Basic { username, password } => {
                let password_value = self.secret(password, fresh)?;
                let pair = format!("{}:{}", self.secret(username, fresh)?.trim(), password_value.trim());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                scrub.add(&password_value);
                scrub.add(&encoded);
                Some((AUTHORIZATION, self.value(&format!("Basic {encoded}"), password)?))
            }
            Scheme::OAuth2(tokens) => {
                let (value, generation) = tokens.token().await?;
                if let Ok(text) = value.to_str() {
                    scrub.add(text.strip_prefix("Bearer ").unwrap_or(text));
                }
                return Ok(Credentials { header: Some((AUTHORIZATION, value)), token: Some(generation), scrub });
            }
        };
        Ok(Credentials { header, token: None, scrub })
    }

    // The file behind a Secret is small and usually cached, so this reads it inline
    // rather than on a blocking thread.
    fn secret(&self, selector: &SecretKeySelector, fresh: bool) -> Result<String, AuthError> {
        let got = if fresh {
            self.secrets.reload(&self.namespace, selector)
        } else {
            self.secrets.get(&self.namespace, selector)
        };
        got.map_err(|source| AuthError::Secret { connector: self.connector.clone(), source: Box::new(source) })
    }

    fn value(&self, text: &str, selector: &SecretKeySelector) -> Result<HeaderValue, AuthError> {
        sensitive(text)
            .ok_or_else(|| AuthError::HeaderValue { connector: self.connector.clone(), selector: selector.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest::ObjectKey;
    use entrepot_api::resource::{BasicAuth, HeaderAuth};

    fn sel(name: &str, key: &str) -> SecretKeySelector {
        SecretKeySelector { name: name.into(), key: key.into() }
    }

    fn secrets(values: &[(&str, &str, &str)]) -> Secrets {
        let mut manifests: BTreeMap<ObjectKey, BTreeMap<String, String>> = BTreeMap::new();
        for (name, key, value) in values {
            let object = ObjectKey { namespace: "retail".into(), name: (*name).into() };
            manifests.entry(object).or_default().insert((*key).into(), (*value).into());
        }
        Secrets::with_manifests(manifests).with_env(BTreeMap::new())
    }

    async fn header_of(spec: &ConnectorAuth, secrets: &Secrets) -> (String, String, String) {
        let auth = Auth::new("erp", "retail", Some(spec), secrets, reqwest::Client::new()).unwrap();
        let credentials = auth.credentials().await.unwrap();
        let (name, value) = credentials.header().unwrap();
        let debug = format!("{auth:?} {credentials:?} {value:?}");
        (name.to_string(), value.to_str().unwrap().to_string(), debug)
    }

    #[tokio::test]
    async fn each_static_scheme_builds_its_header_and_debug_never_shows_the_value() {
        let s = secrets(&[("erp", "token", "tok-123\n"), ("erp", "user", "ada"), ("erp", "password", "pw-456")]);
        let bearer = ConnectorAuth::Bearer { secret_ref: sel("erp", "token") };
        let header = ConnectorAuth::Header(HeaderAuth {
            name: "X-Shopify-Access-Token".into(),
            secret_ref: sel("erp", "token"),
        });
        let basic = ConnectorAuth::Basic(BasicAuth {
            username_secret_ref: sel("erp", "user"),
            password_secret_ref: sel("erp", "password"),
        });
        let cases = [
            (bearer, "authorization", "Bearer tok-123".to_string()),
            (header, "x-shopify-access-token", "tok-123".to_string()),
            (
                basic,
                "authorization",
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ada:pw-456")),
            ),
        ];
        for (spec, name, value) in cases {
            let (got_name, got_value, debug) = header_of(&spec, &s).await;
            assert_eq!((got_name.as_str(), got_value.as_str()), (name, value.as_str()), "{spec:?}");
            for secret in ["tok-123", "pw-456", "YWRh"] {
                assert!(!debug.contains(secret), "{debug}");
            }
        }
        let none = Auth::new("erp", "retail", None, &s, reqwest::Client::new()).unwrap();
        assert!(none.credentials().await.unwrap().header().is_none());
    }

    #[tokio::test]
    async fn a_missing_secret_or_a_bad_header_name_stops_the_setup_and_names_the_field() {
        let s = secrets(&[]);
        let bearer = ConnectorAuth::Bearer { secret_ref: sel("erp", "token") };
        let err = Auth::new("erp", "retail", Some(&bearer), &s, reqwest::Client::new()).unwrap_err().to_string();
        assert!(err.starts_with("Connector erp: spec.auth: secret retail/erp key token"), "{err}");
        let s = secrets(&[("erp", "token", "tok\nHUSH-42")]);
        let bad = ConnectorAuth::Header(HeaderAuth { name: "X Auth".into(), secret_ref: sel("erp", "token") });
        let err = Auth::new("erp", "retail", Some(&bad), &s, reqwest::Client::new()).unwrap_err().to_string();
        assert!(err.contains("spec.auth.header.name `X Auth`"), "{err}");
        let auth = Auth::new("erp", "retail", Some(&bearer), &s, reqwest::Client::new()).unwrap();
        let err = auth.credentials().await.unwrap_err().to_string();
        assert!(err.contains("secret erp key token cannot be sent") && !err.contains("HUSH"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_static_secret_is_worth_a_retry_only_once_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("erp")).unwrap();
        std::fs::write(dir.path().join("erp/token"), "old").unwrap();
        let s = Secrets::from_env().with_dir(dir.path()).with_env(BTreeMap::new());
        let auth = Auth::new(
            "erp",
            "retail",
            Some(&ConnectorAuth::Bearer { secret_ref: sel("erp", "token") }),
            &s,
            reqwest::Client::new(),
        )
        .unwrap();
        let refused = auth.credentials().await.unwrap();
        assert!(!auth.refresh(&refused).await, "the same token again is not worth a retry");
        std::fs::write(dir.path().join("erp/token"), "new").unwrap();
        assert!(auth.refresh(&refused).await);
        assert_eq!(auth.credentials().await.unwrap().header().unwrap().1.to_str().unwrap(), "Bearer new");
    }
}
