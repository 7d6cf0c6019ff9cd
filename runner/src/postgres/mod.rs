//! PostgreSQL, shared by the `postgres` target and the polled `sql` source: where the
//! database is (the Connector's `postgres://HOST[:PORT]/DATABASE` endpoint), how to log
//! in (the Connector's `auth.basic` Secret keys, read at each connection so a rotated
//! password is picked up), and what an error means (retry, or refuse the record).

use std::time::Duration;

use std::sync::Arc;

use rustls::{
    ClientConfig, RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, pem::PemObject},
};
use tokio_postgres::{Client, NoTls, config::SslMode as PgSslMode, error::SqlState};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::debug;

pub use entrepot_api::rules::postgres::{Endpoint, parse_endpoint, quote_ident, quote_table};

use crate::{
    protocol::{ErrorCategory, Verdict},
    secrets::Secrets,
};

use entrepot_api::resource::{ConnectorAuth, ConnectorSpec, SecretKeySelector, SslMode};

/// How long a connection attempt may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A postgres Connector's database: where it is and how to log in. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    connector: String,
    namespace: String,
    endpoint: Endpoint,
    login: Option<(SecretKeySelector, SecretKeySelector)>,
    tls: Option<Tls>,
    secrets: Secrets,
}

/// What `verify-full` checks the server's certificate against, read at each connection
/// (a rotated CA is picked up; connections are long-lived).
#[derive(Clone)]
enum Tls {
    /// The system's roots.
    System,
    /// The CA in a Secret key.
    Ca(SecretKeySelector),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password; the Secret key names are not secret.
        f.debug_struct("Database")
            .field("connector", &self.connector)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Connector `connector` of `namespace` as a database. Its spec has passed
    /// `connect::validate`; the Secret keys it names must be available now.
    pub fn new(connector: &str, namespace: &str, spec: &ConnectorSpec, secrets: &Secrets) -> Result<Self, String> {
        let endpoint = parse_endpoint(spec.endpoint.as_deref().unwrap_or_default())
            .map_err(|why| format!("Connector {connector}: spec.endpoint {why}"))?;
        let login = match &spec.auth {
            Some(ConnectorAuth::Basic(b)) => Some((b.username_secret_ref.clone(), b.password_secret_ref.clone())),
            None => None,
            Some(other) => {
                return Err(format!(
                    "Connector {connector}: spec.auth: a database logs in with basic, not {}",
                    other.scheme()
                ));
            }
        };
        for key in login.iter().flat_map(|(u, p)| [u, p]) {
            secrets.get(namespace, key).map_err(|e| format!("Connector {connector}: {e}"))?;
        }
        let options = spec.database.clone().unwrap_or_default();
        let tls = match (options.ssl_mode, options.ca_secret_ref) {
            (SslMode::Disable, _) => None,
            (SslMode::VerifyFull, Some(ca)) => {
                secrets.get(namespace, &ca).map_err(|e| format!("Connector {connector}: {e}"))?;
                Some(Tls::Ca(ca))
            }
            (SslMode::VerifyFull, None) => Some(Tls::System),
        };
        Ok(Self {
            connector: connector.into(),
            namespace: namespace.into(),
            endpoint,
            login,
            tls,
            secrets: secrets.clone(),
        })
    }

    /// The Connector's name.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// Opens a connection; its I/O runs on a task of its own until the client is dropped.
    pub async fn connect(&self) -> Result<Client, Failure> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.endpoint.host)
            .port(self.endpoint.port)
            .dbname(&self.endpoint.database)
            .application_name("entrepot")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true);
        if let Some((user, password)) = &self.login {
            let read = |key| {
                self.secrets.reload(&self.namespace, key).map_err(|e| Failure {
                    verdict: Verdict::Retry {
                        after: None,
                        reason: format!("auth: {e}"),
                        category: ErrorCategory::Auth,
                    },
                    sqlstate: None,
                })
            };
            config.user(read(user)?).password(read(password)?);
        }
        let connector = self.connector.clone();
        let closed =
            move |e: tokio_postgres::Error| debug!(connector = %connector, error = %e, "database connection closed");
        let timed_out = || Failure::unreachable("timeout connecting to the database".into());
        let Some(tls) = &self.tls else {
            let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT * 2, config.connect(NoTls))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| Failure::of(&e))?;
            tokio::spawn(async move { connection.await.map_err(closed) });
            return Ok(client);
        };
        let roots = match tls {
            Tls::System => system_roots().map_err(|why| {
                Failure::unreachable(format!("TLS: {why}; set spec.database.caSecretRef, or install CA certificates"))
            })?,
            Tls::Ca(ca) => {
                let pem =
                    self.secrets.reload(&self.namespace, ca).map_err(|e| Failure::unreachable(format!("TLS: {e}")))?;
                ca_roots(&pem)
                    .map_err(|why| Failure::unreachable(format!("TLS: spec.database.caSecretRef ({ca}): {why}")))?
            }
        };
        let client_config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Failure::unreachable(format!("TLS: {e}")))?
            .with_root_certificates(Arc::new(roots))
            .with_no_client_auth();
        // Refuse a server that does not offer TLS rather than fall back to plain text.
        config.ssl_mode(PgSslMode::Require);
        let (client, connection) =
            tokio::time::timeout(CONNECT_TIMEOUT * 2, config.connect(MakeRustlsConnect::new(client_config)))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| Failure::of(&e))?;
        tokio::spawn(async move { connection.await.map_err(closed) });
        Ok(client)
    }
}

/// The CA certificates of a PEM text.
fn ca_roots(pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("not PEM certificates: {e}"))?;
        roots.add(cert).map_err(|e| format!("not a CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(roots)
}

/// The system's CA certificates.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err("no CA certificates found on this system".into());
    }
    Ok(roots)
}

/// A database error, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Retry or refuse, with the database's message.
    pub verdict: Verdict,
    /// The SQLSTATE, when the database answered.
    pub sqlstate: Option<String>,
}

/// A constraint's detail without the row's values, which are the record's personal data:
/// `Key (email)=(jane@example.com) already exists.` keeps the columns and the verdict,
/// `Failing row contains (...)` keeps nothing of the row. The record is in the dead letter.
fn without_values(detail: &str) -> String {
    if detail.starts_with("Failing row contains") {
        return "Failing row contains (…).".into();
    }
    match (detail.find(")=("), detail.rfind(')')) {
        (Some(at), Some(last)) if last > at + 2 => format!("{})=(…){}", &detail[..at], &detail[last + 1..]),
        _ => detail.to_string(),
    }
}

impl Failure {
    /// Classifies `error`:
    /// - the data or the statement is wrong: classes 22 (data exception: a wrong type, a
    ///   value too long), 23 (integrity constraint: not null, unique, foreign key,
    ///   check), 42 (an unknown column or table, a missing privilege), 44 (a view's check
    ///   option), P0 (a trigger's `RAISE EXCEPTION`: the database's own business rule) and
    ///   0A (a feature not supported): refused, never retried, dead-lettered;
    /// - anything else is retried: 08 (connection), 40 (serialization failure, deadlock),
    ///   53 (resources; 53300, too many connections, counts as throttling), 57 (shutdown,
    ///   cancelled), 28 (the login refused: the Secret may be fixed without touching the
    ///   records), 3D (no such database yet) and the classes not listed (safer to retry
    ///   a record than to drop it); a connection lost without an answer too.
    pub fn of(error: &tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            return Self::unreachable(describe(error));
        };
        let code = db.code().code().to_string();
        let mut reason = db.message().to_string();
        if let Some(column) = db.column().filter(|c| !reason.contains(&format!("\"{c}\""))) {
            reason = format!("column \"{column}\": {reason}");
        }
        if let Some(detail) = db.detail() {
            reason = format!("{reason}; {}", without_values(detail));
        }
        let reason = crate::protocol::personal_data(&format!("{reason} (SQLSTATE {code})"));
        let verdict = match &code[..2] {
            "22" | "23" | "42" | "44" | "P0" | "0A" => Verdict::Reject { reason, category: ErrorCategory::Rejected },
            "28" => Verdict::Retry { after: None, reason: format!("auth: {reason}"), category: ErrorCategory::Auth },
            "08" => Verdict::Retry {
                after: None,
                reason: format!("unreachable: {reason}"),
                category: ErrorCategory::Unreachable,
            },
            _ if *db.code() == SqlState::TOO_MANY_CONNECTIONS => Verdict::Retry {
                after: None,
                reason: format!("throttled: {reason}"),
                category: ErrorCategory::Throttled,
            },
            _ => Verdict::Retry {
                after: None,
                reason: format!("database error: {reason}"),
                category: ErrorCategory::Server,
            },
        };
        Self { verdict, sqlstate: Some(code) }
    }

    /// No answer from the database.
    pub fn unreachable(message: String) -> Self {
        Self {
            verdict: Verdict::Retry {
                after: None,
                reason: format!("unreachable: {message}"),
                category: ErrorCategory::Unreachable,
            },
            sqlstate: None,
        }
    }

    /// Whether no retry will help: the record or the statement is at fault.
    pub fn is_business(&self) -> bool {
        matches!(self.verdict, Verdict::Reject { .. })
    }

    /// Whether it is a data exception (class 22): a value that does not fit its column.
    pub fn is_data_exception(&self) -> bool {
        self.sqlstate.as_deref().is_some_and(|c| c.starts_with("22"))
    }

    /// The message, for logs and status.
    pub fn reason(&self) -> &str {
        match &self.verdict {
            Verdict::Retry { reason, .. } | Verdict::Reject { reason, .. } => reason,
            Verdict::Delivered => "",
        }
    }

    /// The category, for metrics and status.
    pub fn category(&self) -> ErrorCategory {
        match &self.verdict {
            Verdict::Retry { category, .. } | Verdict::Reject { category, .. } => *category,
            Verdict::Delivered => ErrorCategory::Server,
        }
    }
}

/// An error without a database answer, with its causes (refused, reset, timed out). The
/// connection parameters are never part of it.
fn describe(error: &tokio_postgres::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constraint_s_detail_keeps_the_columns_not_the_values() {
        assert_eq!(without_values("Key (email)=(jane@example.com) already exists."), "Key (email)=(…) already exists.");
        assert_eq!(
            without_values("Key (customer_id)=(42) is not present in table \"customers\"."),
            "Key (customer_id)=(…) is not present in table \"customers\"."
        );
        assert_eq!(without_values("Failing row contains (1, Jane Doe, 12 Main St)."), "Failing row contains (…).");
        assert_eq!(without_values("Array value must start with \"{\"."), "Array value must start with \"{\".");
    }

    #[test]
    fn a_ca_secret_must_hold_pem_certificates() {
        assert!(ca_roots("hunter2").unwrap_err().contains("no PEM certificate"));
        let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(ca_roots(broken).is_err());
    }
}
