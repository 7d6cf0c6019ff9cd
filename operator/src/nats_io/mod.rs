//! The operator's I/O with NATS JetStream: one connection per server URL, kept between
//! reconciles, through which a JetStream flow's streams and buckets (and the quota buckets
//! of the Connectors it sends to, shared with other flows) are created, updated, read for
//! the flow's backlog and deleted with the flow.
//!
//! The operator connects with credentials of its own (the chart mounts
//! `nats.operatorCredentialsSecret` or `nats.operatorTokenSecret` into its pod, and
//! `--nats-credentials-file` or `--nats-token-file` names the file): it never reads a
//! Secret through the API, so the Secrets a flow names for its runners stay theirs.
//!
//! Kept apart from the controllers, like [`crate::kube_io`], so that their validate and
//! build steps stay pure. What each stream must be comes from
//! [`entrepot_api::jetstream`], so the runner and the operator agree on it.

mod streams;

use std::{collections::HashMap, path::PathBuf, sync::Mutex, time::Duration};

use async_nats::{Client, ConnectOptions, ServerAddr, connection::State, jetstream};
use entrepot_api::jetstream::{Layout, StreamPlan};
use tracing::info;

use self::streams::Sharing;
pub use self::streams::{Backlog, Change};

/// How long connecting to a server, and each JetStream request, may take: a NATS that
/// does not answer within it is reported as unreachable, and the reconcile retried later.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts a client makes to get a lost connection back before it closes.
const MAX_RECONNECTS: usize = 10;

/// How the operator authenticates to NATS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials: a server without authentication.
    #[default]
    None,
    /// A NATS credentials file (`.creds`: a user JWT and its seed).
    CredentialsFile(PathBuf),
    /// A file holding a token, for servers with token authentication.
    TokenFile(PathBuf),
}

/// Why a flow's queue could not be provisioned, read or deleted. Never holds a
/// credential: the URL is shown without any user or password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("NATS at {url}: {action}: {message}")]
pub struct QueueError {
    /// The servers, as the flow names them (redacted).
    pub url: String,
    /// What was being done: `connecting`, `creating stream entrepot_shop_orders_work`...
    pub action: String,
    /// What the client or the server said.
    pub message: String,
}

/// One client per NATS URL, shared by every reconcile.
pub struct Connections {
    auth: Auth,
    clients: Mutex<HashMap<String, Client>>,
}

impl Default for Connections {
    fn default() -> Self {
        Self::new(Auth::None)
    }
}

impl Connections {
    /// Connections that authenticate with `auth`.
    pub fn new(auth: Auth) -> Self {
        Self { auth, clients: Mutex::default() }
    }

    /// Creates what is missing of `plans` and updates what differs; a second call with
    /// the same plans changes nothing. Returns what happened to each stream or bucket.
    pub async fn provision(&self, url: &str, plans: &[StreamPlan]) -> Result<Vec<(String, Change)>, QueueError> {
        self.provision_as(url, plans, Sharing::Own).await
    }

    /// As [`provision`](Self::provision), for buckets several flows plan (the Connectors'
    /// quota buckets, `Layout::connector_plan`): one keeps the most replicas any flow asked
    /// for, so flows that ask for different ones do not undo each other.
    pub async fn provision_shared(&self, url: &str, plans: &[StreamPlan]) -> Result<Vec<(String, Change)>, QueueError> {
        self.provision_as(url, plans, Sharing::Shared).await
    }

    async fn provision_as(
        &self,
        url: &str,
        plans: &[StreamPlan],
        sharing: Sharing,
    ) -> Result<Vec<(String, Change)>, QueueError> {
        let js = self.jetstream(url).await?;
        let mut changes = Vec::with_capacity(plans.len());
        for plan in plans {
            let change = streams::ensure(&js, plan, sharing).await.map_err(|e| error(url, e.0, e.1))?;
            if change != Change::Unchanged {
                info!(url = %redact(url), stream = plan.name, ?change, "provisioned");
            }
            changes.push((plan.name.clone(), change));
        }
        Ok(changes)
    }

    /// The flow's backlog, from its work and dead-letter streams' state.
    pub async fn backlog(&self, url: &str, layout: &Layout) -> Result<Backlog, QueueError> {
        let js = self.jetstream(url).await?;
        streams::backlog(&js, layout).await.map_err(|e| error(url, e.0, e.1))
    }

    /// Deletes every stream and bucket of the flow; those already gone are no error.
    pub async fn remove(&self, url: &str, layout: &Layout) -> Result<(), QueueError> {
        self.delete_streams(url, layout.streams()).await
    }

    /// Deletes the key-value buckets named `buckets` (each the stream `KV_<bucket>`);
    /// those already gone are no error.
    pub async fn remove_buckets(&self, url: &str, buckets: &[String]) -> Result<(), QueueError> {
        self.delete_streams(url, buckets.iter().map(|b| format!("KV_{b}")).collect()).await
    }

    async fn delete_streams(&self, url: &str, names: Vec<String>) -> Result<(), QueueError> {
        let js = self.jetstream(url).await?;
        for stream in names {
            if streams::delete(&js, &stream).await.map_err(|e| error(url, e.0, e.1))? {
                info!(url = %redact(url), stream, "deleted");
            }
        }
        Ok(())
    }

    /// A JetStream context on the connection to `url`: the cached one while it is
    /// connected, else a new connection (the disconnected client is dropped; its
    /// reconnect attempts end after [`MAX_RECONNECTS`]).
    async fn jetstream(&self, url: &str) -> Result<jetstream::Context, QueueError> {
        let cached = self.clients.lock().unwrap_or_else(|p| p.into_inner()).get(url).cloned();
        let client = match cached {
            Some(client) if client.connection_state() == State::Connected => client,
            _ => {
                let client = self.connect(url).await?;
                self.clients.lock().unwrap_or_else(|p| p.into_inner()).insert(url.to_string(), client.clone());
                client
            }
        };
        Ok(jetstream::ContextBuilder::new().timeout(TIMEOUT).build(client))
    }

    async fn connect(&self, url: &str) -> Result<Client, QueueError> {
        let servers: Vec<ServerAddr> = url
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e: std::io::Error| error(url, "reading the URL".into(), e.to_string()))?;
        let options = ConnectOptions::new()
            .name("entrepot-operator")
            .connection_timeout(TIMEOUT)
            .request_timeout(Some(TIMEOUT))
            // A lost connection is made anew at the next reconcile: the client dropped then
            // gives up after a few attempts instead of retrying a gone server for ever.
            .max_reconnects(Some(MAX_RECONNECTS));
        let options = match &self.auth {
            Auth::None => options,
            Auth::CredentialsFile(path) => options.credentials_file(path).await.map_err(|e| {
                error(url, format!("reading the credentials file {}", path.display()), e.kind().to_string())
            })?,
            Auth::TokenFile(path) => {
                let token = tokio::fs::read_to_string(path).await.map_err(|e| {
                    error(url, format!("reading the token file {}", path.display()), e.kind().to_string())
                })?;
                options.token(token.trim().to_string())
            }
        };
        let client = options.connect(servers).await.map_err(|e| error(url, "connecting".into(), e.to_string()))?;
        info!(url = %redact(url), "connected to NATS");
        Ok(client)
    }
}

fn error(url: &str, action: String, message: String) -> QueueError {
    QueueError { url: redact(url), action, message }
}

/// `url` (comma-separated servers) with any `user:password@` replaced by `***@`, for
/// messages and logs.
pub fn redact(url: &str) -> String {
    let one = |server: &str| {
        let (scheme, rest) = server.split_once("://").map_or(("", server), |(s, r)| (s, r));
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let host = authority.rsplit_once('@').map_or(authority.to_string(), |(_, host)| format!("***@{host}"));
        let scheme = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
        let path = if rest.contains('/') { format!("/{path}") } else { String::new() };
        format!("{scheme}{host}{path}")
    };
    url.split(',').map(one).collect::<Vec<_>>().join(",")
}
