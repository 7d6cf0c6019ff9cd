//! What a Connector spec must satisfy beyond its schema before a runner can call the
//! system: URLs it can send to, header names HTTP accepts. The runner checks this when
//! it sets a Connector up; the operator checks the same to report it on the Connector.

use http::HeaderName;
use url::Url;

use crate::resource::{ConnectorAuth, ConnectorSpec, ConnectorType};

/// A Connector the schema accepts but a runner cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Connector {connector}: {field}: {message}")]
pub struct InvalidConnector {
    /// The Connector.
    pub connector: String,
    /// The field at fault, e.g. `spec.endpoint`.
    pub field: &'static str,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// Checks Connector `connector`'s spec; the first problem found is returned.
pub fn validate(connector: &str, spec: &ConnectorSpec) -> Result<(), InvalidConnector> {
    let invalid =
        |field: &'static str, message: String| InvalidConnector { connector: connector.into(), field, message };
    if spec.kind == ConnectorType::Postgres {
        return validate_postgres(spec).map_err(|(field, message)| invalid(field, message));
    }
    if spec.database.is_some() {
        return Err(invalid("spec.database", "database settings are for type postgres; remove them".into()));
    }
    if let Some(endpoint) = spec.endpoint.as_deref().filter(|e| !e.is_empty()) {
        reachable_url(endpoint, spec.allow_plain_http)
            .map_err(|why| invalid("spec.endpoint", format!("`{endpoint}` {why}")))?;
    }
    match &spec.auth {
        Some(ConnectorAuth::Header(header)) => {
            header_name(&header.name).map_err(|why| invalid("spec.auth.header.name", why))?;
        }
        Some(ConnectorAuth::OAuth2ClientCredentials(o)) => {
            reachable_url(&o.token_url, spec.allow_plain_http).map_err(|why| {
                invalid("spec.auth.oauth2ClientCredentials.tokenUrl", format!("`{}` {why}", o.token_url))
            })?;
        }
        Some(ConnectorAuth::Token { .. }) if spec.kind.token_header().is_none() => {
            return Err(invalid(
                "spec.auth.token",
                format!("type {:?} has no token header of its own; use auth.header and name the header", spec.kind),
            ));
        }
        Some(ConnectorAuth::Bearer { .. } | ConnectorAuth::Basic(_) | ConnectorAuth::Token { .. }) | None => {}
    }
    if let Some(name) = &spec.idempotency_header {
        header_name(name).map_err(|why| invalid("spec.idempotencyHeader", why))?;
    }
    if let Some(webhook) = &spec.webhook {
        use crate::resource::SignatureScheme::{ApiKey, HmacSha256};
        match (&webhook.header, webhook.signature) {
            (None, HmacSha256 | ApiKey) => {
                return Err(invalid(
                    "spec.webhook.header",
                    "signatures hmac-sha256 and api-key need the header the sender puts the signature or key in, e.g. X-Wms-Hmac-Sha256".into(),
                ));
            }
            (Some(name), _) => {
                header_name(name).map_err(|why| invalid("spec.webhook.header", why))?;
            }
            (None, _) => {}
        }
        if let Some(name) = &webhook.delivery_id_header {
            header_name(name).map_err(|why| invalid("spec.webhook.deliveryIdHeader", why))?;
        }
    }
    Ok(())
}

/// A database: a `postgres://` endpoint without credentials, and `auth.basic` if any.
fn validate_postgres(spec: &ConnectorSpec) -> Result<(), (&'static str, String)> {
    let endpoint = spec.endpoint.as_deref().unwrap_or_default();
    if endpoint.is_empty() {
        return Err((
            "spec.endpoint",
            "a postgres Connector needs its database, e.g. postgres://db.retail.svc:5432/commerce".into(),
        ));
    }
    super::postgres::parse_endpoint(endpoint).map_err(|why| {
        // An endpoint with credentials is not repeated: it may hold a password.
        let shown = if endpoint.contains('@') { "the endpoint".to_string() } else { format!("`{endpoint}`") };
        ("spec.endpoint", format!("{shown} {why}"))
    })?;
    match &spec.auth {
        None | Some(ConnectorAuth::Basic(_)) => Ok(()),
        Some(other) => Err((
            "spec.auth",
            format!(
                "a postgres Connector logs in with basic (usernameSecretRef and passwordSecretRef), not {}",
                other.scheme()
            ),
        )),
    }
}

/// An http(s) URL a Connector may send credentials to: not a link-local address (a
/// cloud's metadata service, `169.254.169.254`, hands out the node's credentials), and
/// plain http only to this machine unless `allow_plain_http`. A host name is checked as
/// written; what it resolves to is the egress policy's to limit (`docs/security.md`).
fn reachable_url(text: &str, allow_plain_http: bool) -> Result<Url, String> {
    let url = http_url(text)?;
    let host = url.host();
    let link_local = match &host {
        Some(url::Host::Ipv4(ip)) => ip.is_link_local(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_unicast_link_local() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("metadata.google.internal"),
        None => false,
    };
    if link_local {
        return Err("is a link-local address (a cloud metadata service lives there); name the system's own host".into());
    }
    let loopback = match &host {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if url.scheme() == "http" && !loopback && !allow_plain_http {
        return Err("is plain http to another machine: credentials and records would cross the network \
                    unencrypted; use https, or set spec.allowPlainHttp: true where the network already encrypts \
                    (a service mesh)"
            .into());
    }
    Ok(url)
}

/// An absolute http(s) URL with a host, or why not.
fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("is not a URL ({e}); write it like https://erp.example.com/api"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("uses {}: only http and https are supported", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host; write it like https://erp.example.com/api".into());
    }
    Ok(url)
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not an HTTP header name; use letters, digits and dashes, e.g. X-Api-Key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{HeaderAuth, SecretKeySelector};

    fn rest(endpoint: &str) -> ConnectorSpec {
        ConnectorSpec { endpoint: Some(endpoint.into()), ..ConnectorSpec::default() }
    }

    #[test]
    fn a_plain_rest_connector_is_valid() {
        assert_eq!(validate("erp", &rest("https://erp.example.com/api/v1/")), Ok(()));
        assert_eq!(validate("erp", &rest("http://127.0.0.1:8080")), Ok(()));
        assert_eq!(validate("erp", &rest("http://localhost:8080")), Ok(()));
        assert_eq!(validate("erp", &rest("http://[::1]:8080")), Ok(()));
        // A webhook-only source needs no endpoint.
        assert_eq!(validate("shop", &ConnectorSpec::default()), Ok(()));
        assert_eq!(validate("shop", &rest("")), Ok(()));
    }

    #[test]
    fn an_endpoint_must_be_an_http_url() {
        for bad in ["erp.example.com/api", "ftp://erp.example.com", "https://", "not a url"] {
            let err = validate("erp", &rest(bad)).unwrap_err();
            assert_eq!(err.field, "spec.endpoint", "{bad}");
            assert!(err.to_string().starts_with("Connector erp: spec.endpoint: "), "{err}");
            assert!(err.message.contains(bad), "{err}");
        }
    }

    #[test]
    fn plain_http_to_another_machine_needs_the_opt_in() {
        let err = validate("erp", &rest("http://erp.retail.svc:8080")).unwrap_err();
        assert_eq!(err.field, "spec.endpoint");
        assert!(err.message.contains("plain http") && err.message.contains("allowPlainHttp"), "{err}");
        let mesh = ConnectorSpec { allow_plain_http: true, ..rest("http://erp.retail.svc:8080") };
        assert_eq!(validate("erp", &mesh), Ok(()));
        let oauth = |token_url: &str, allow_plain_http: bool| -> ConnectorSpec {
            serde_json::from_value(serde_json::json!({
                "type": "rest",
                "endpoint": "https://erp.example.com",
                "allowPlainHttp": allow_plain_http,
                "auth": {"oauth2ClientCredentials": {
                    "tokenUrl": token_url,
                    "clientIdSecretRef": {"name": "s", "key": "id"},
                    "clientSecretSecretRef": {"name": "s", "key": "secret"},
                }},
            }))
            .unwrap()
        };
        let err = validate("erp", &oauth("http://login.example.com/token", false)).unwrap_err();
        assert_eq!(err.field, "spec.auth.oauth2ClientCredentials.tokenUrl", "{err}");
        assert_eq!(validate("erp", &oauth("http://login.example.com/token", true)), Ok(()));
    }

    #[test]
    fn a_link_local_address_is_refused_even_with_the_opt_in() {
        for bad in [
            "http://169.254.169.254/latest/meta-data",
            "https://169.254.10.1",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://metadata.google.internal/computeMetadata/v1",
        ] {
            let spec = ConnectorSpec { allow_plain_http: true, ..rest(bad) };
            let err = validate("erp", &spec).unwrap_err();
            assert!(err.message.contains("link-local"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_postgres_connector_names_its_database_and_logs_in_with_basic() {
        let db = |endpoint: &str| ConnectorSpec { kind: ConnectorType::Postgres, ..rest(endpoint) };
        assert_eq!(validate("wh", &db("postgres://db.retail.svc:5432/commerce")), Ok(()));
        assert_eq!(validate("wh", &db("postgresql://127.0.0.1/commerce")), Ok(()));
        for bad in ["https://db/commerce", "postgres://db", "postgres://db/c?sslmode=disable", ""] {
            let err = validate("wh", &db(bad)).unwrap_err();
            assert_eq!(err.field, "spec.endpoint", "{bad}: {err}");
        }
        let err = validate("wh", &db("postgres://app:hunter2@db/commerce")).unwrap_err();
        assert!(!err.to_string().contains("hunter2") && err.message.contains("auth.basic"), "{err}");
        // A postgres URL or database settings on an HTTP Connector are refused.
        assert_eq!(validate("erp", &rest("postgres://db/commerce")).unwrap_err().field, "spec.endpoint");
        let tls = ConnectorSpec { database: Some(Default::default()), ..rest("https://erp.example.com") };
        assert_eq!(validate("erp", &tls).unwrap_err().field, "spec.database");
        let key = SecretKeySelector { name: "s".into(), key: "k".into() };
        let bearer = ConnectorSpec { auth: Some(ConnectorAuth::Bearer { secret_ref: key }), ..db("postgres://db/c") };
        assert_eq!(validate("wh", &bearer).unwrap_err().field, "spec.auth");
    }

    #[test]
    fn header_names_must_be_http_tokens() {
        let key = SecretKeySelector { name: "s".into(), key: "k".into() };
        let spec = ConnectorSpec {
            auth: Some(ConnectorAuth::Header(HeaderAuth { name: "X Api Key".into(), secret_ref: key })),
            ..ConnectorSpec::default()
        };
        assert_eq!(validate("c", &spec).unwrap_err().field, "spec.auth.header.name");
        let spec = ConnectorSpec { idempotency_header: Some("Idem:Key".into()), ..ConnectorSpec::default() };
        assert_eq!(validate("c", &spec).unwrap_err().field, "spec.idempotencyHeader");
    }
}
