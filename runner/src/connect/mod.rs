//! How the runner talks to a Connector's API: one HTTP client per Connector with its
//! credentials, shared by the flow's targets and its poller; the 401 rule's mechanics
//! (the rule itself is in `protocol`); and what went wrong last, for the status.

mod auth;
mod auth_error;
pub(crate) mod body;
mod channel;
mod health;
mod oauth2;
mod redirect;
mod sensitive;

use std::time::Duration;

use reqwest::{
    Method, RequestBuilder,
    header::{LOCATION, RETRY_AFTER},
};
use tracing::info;

pub use auth::{Auth, Credentials, Scrub};
pub use auth_error::AuthError;
pub use entrepot_api::rules::connector::{InvalidConnector, validate};
pub use health::{ConnectorHealth, LastError};
pub use redirect::same_origin_only;

use crate::{
    protocol::{Answer, QuotaSignal, System, describe_transport, parse_retry_after},
    quota::operations::{Metered, OperationQuotas},
    secrets::Secrets,
};

use entrepot_api::resource::{ConnectorAuth, ConnectorSpec, HeaderAuth};

/// A Connector's client cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The spec cannot be used as written.
    #[error(transparent)]
    Invalid(#[from] InvalidConnector),
    /// Its credentials cannot be set up.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The HTTP client cannot be built (TLS roots).
    #[error("Connector {connector}: HTTP client: {source}")]
    Client {
        /// The Connector.
        connector: String,
        /// Why.
        source: reqwest::Error,
    },
}

/// Per-request timeout: long enough for a slow ERP, short enough that a hung connection
/// is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of a failed answer's body that is kept (for dead letters and status).
const BODY_LIMIT: usize = 4096;

/// One Connector's API: its endpoint, an HTTP client and its credentials.
#[derive(Debug)]
pub struct ConnectorClient {
    name: String,
    namespace: String,
    endpoint: String,
    http: reqwest::Client,
    auth: Auth,
    /// What the Connector's type fixes about its system's protocol, with this
    /// Connector's state (a session).
    system: Box<dyn System>,
    /// One bucket per metered operation (`spec.limits.operations` and the type's defaults).
    operations: OperationQuotas,
    /// What went wrong last, for `/v1/status`.
    pub health: ConnectorHealth,
}

/// What sending a request gave.
#[derive(Debug)]
pub enum Sent {
    /// The system answered (after the 401 rule had its say), to a request that carried
    /// the credentials whose secret texts are scrubbed from what is kept of the answer.
    Response(reqwest::Response, Scrub),
    /// No answer: connect failure, timeout, reset.
    Transport(String),
    /// Nothing was sent: the credentials could not be obtained.
    Credentials(String),
}

impl ConnectorClient {
    /// Sets up Connector `name` of `namespace`; its Secrets must be available.
    pub fn new(name: &str, namespace: &str, spec: &ConnectorSpec, secrets: &Secrets) -> Result<Self, ConnectError> {
        validate(name, spec)?;
        let invalid = |field, message| InvalidConnector { connector: name.into(), field, message };
        let system = crate::protocol::system(spec.kind)
            .for_connector(spec)
            .map_err(|unfit| invalid(unfit.field, unfit.message))?;
        let declared = spec.limits.as_ref().map(|l| l.operations.as_slice()).unwrap_or_default();
        let operations = OperationQuotas::new(declared, &system.default_operations()).map_err(|(index, message)| {
            invalid(
                "spec.limits.operations",
                if index == usize::MAX { message } else { format!("entry {index}: {message}") },
            )
        })?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(same_origin_only())
            .user_agent(concat!("entrepot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ConnectError::Client { connector: name.into(), source })?;
        // `auth.token`: the Connector's type names the header.
        let auth_spec = match (&spec.auth, spec.kind.token_header()) {
            (Some(ConnectorAuth::Token { secret_ref }), Some(header)) => {
                Some(ConnectorAuth::Header(HeaderAuth { name: header.to_owned(), secret_ref: secret_ref.clone() }))
            }
            (other, _) => other.clone(),
        };
        let auth = Auth::new(name, namespace, auth_spec.as_ref(), secrets, http.clone())?.for_type(spec.kind);
        Ok(Self {
            name: name.into(),
            namespace: namespace.into(),
            endpoint: spec.endpoint.as_deref().unwrap_or_default().trim_end_matches('/').to_string(),
            http,
            auth,
            system,
            operations,
            health: ConnectorHealth::default(),
        })
    }

    /// The Connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Connector's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// What the Connector's type fixes about the system's protocol.
    pub fn system(&self) -> &dyn System {
        self.system.as_ref()
    }

    /// Waits for a token of the operation a request to `url` with `method` belongs to,
    /// and returns it so its answer can adapt the bucket; `None` when no operation
    /// meters the request.
    async fn pace(&self, method: &Method, url: &reqwest::Url) -> Option<Metered> {
        if self.operations.is_empty() {
            return None;
        }
        self.operations.pace(method, url).await
    }

    /// `spec.endpoint`, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends the request `build` makes, with the Connector's credentials. On a 401 it
    /// gets fresh credentials and, when they differ from the refused ones, sends the
    /// request once more (`protocol::refresh_credentials`); `build` is called again
    /// for that.
    pub async fn send(&self, build: impl Fn(&reqwest::Client) -> RequestBuilder) -> Sent {
        let credentials = match self.auth.credentials().await {
            Ok(c) => c,
            Err(e) => return Sent::Credentials(e.to_string()),
        };
        let first = self.attempt(&build, &credentials).await;
        let refused = matches!(&first, Sent::Response(r, _) if self.system.credentials_refused(r.status()));
        if !refused || !self.auth.refresh(&credentials).await {
            return first;
        }
        info!(connector = %self.name, "credentials refused; trying once more with fresh ones");
        match self.auth.credentials().await {
            Ok(fresh) => self.attempt(&build, &fresh).await,
            Err(e) => Sent::Credentials(e.to_string()),
        }
    }

    /// One request with the credentials, the protocol's session and its headers. When the
    /// system says the session went stale (`System::session_expired`), the request is
    /// sent once more with a fresh session.
    async fn attempt(&self, build: &impl Fn(&reqwest::Client) -> RequestBuilder, credentials: &Credentials) -> Sent {
        let mut fresh_session = false;
        loop {
            let credential = credentials.header().map(|(n, v)| (n.clone(), v.clone()));
            let mut headers = match self.system.session(&self.http, &self.endpoint, credential.clone()).await {
                Ok(session) => session,
                Err(e) => return Sent::Credentials(e),
            };
            self.system.decorate(&mut headers);
            if let Some((name, value)) = credential {
                let (name, value) = self.system.credential_header(name, value);
                headers.insert(name, value);
            }
            let request = match build(&self.http).headers(headers).build() {
                Ok(request) => request,
                Err(e) => return Sent::Transport(describe_transport(&e)),
            };
            // A system that meters each operation: wait for that operation's token.
            let metered = self.pace(request.method(), request.url()).await;
            let response = match self.http.execute(request).await {
                Ok(response) => response,
                Err(e) => return Sent::Transport(describe_transport(&e)),
            };
            if let Some(operation) = &metered {
                let (status, headers) = (response.status(), response.headers());
                let mut signal = crate::quota::operations::signal(status, headers);
                self.system.read_quota(status, headers, "", &mut signal);
                operation.observe(&signal);
                if signal.throttled {
                    info!(connector = %self.name, operation = %operation.name, "operation throttled (429); its bucket slows down");
                }
            }
            if fresh_session || !self.system.session_expired(response.status(), response.headers()) {
                return Sent::Response(response, credentials.scrub().clone());
            }
            info!(connector = %self.name, status = %response.status(), "session expired; sending once more with a fresh one");
            fresh_session = true;
        }
    }
}

impl Sent {
    /// The answer, with at most 4 KiB of the body and what it says about the quota
    /// (generic headers, then the `protocol`'s own reading).
    pub async fn into_answer(self, system: &dyn System) -> Answer {
        match self {
            Sent::Transport(e) => Answer::Transport(e),
            Sent::Credentials(e) => Answer::Credentials(e),
            Sent::Response(response, scrub) => {
                let status = response.status();
                let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(String::from);
                let mut quota =
                    QuotaSignal::read(status, response.headers(), retry_after.as_deref().and_then(parse_retry_after));
                let headers = response.headers().clone();
                let location = headers.get(LOCATION).and_then(|v| v.to_str().ok()).map(String::from);
                // Only what is kept is read: an enormous error page costs 4 KiB.
                let body = match body::read_prefix(response, BODY_LIMIT).await {
                    // A system may echo the request's credentials (a 400 quoting its
                    // headers): they are not kept in dead letters, status or logs.
                    Ok(capped) => scrub.apply(String::from_utf8_lossy(&capped.body).into_owned()),
                    Err(e) => format!("<body unreadable: {}>", describe_transport(&e)),
                };
                system.read_quota(status, &headers, &body, &mut quota);
                Answer::Response { status, retry_after, body, quota, location }
            }
        }
    }
}

#[cfg(test)]
mod system_tests;
#[cfg(test)]
mod tests;
