use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One external system Entrepot talks to: a storefront, an ERP, a marketplace, a WMS.
///
/// A Connector holds what is true of the system whoever uses it: where it is, how to
/// authenticate, how its webhooks are signed. Credentials are Secret references; the
/// operator never reads their values, the runner pod receives them as environment.
//
// The CEL rules let the API server refuse at `kubectl apply` what the runner refuses
// when it sets the Connector up; keep the two in step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type == 'postgres' || !has(self.endpoint) || self.endpoint == '' || self.endpoint.matches('^https?://[^/?#]+')",
        "message": "endpoint must be an http or https URL with a host, e.g. https://erp.example.com/api/v1 (a postgres:// URL needs type: postgres)",
        "fieldPath": ".endpoint",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "!has(self.auth) || !has(self.auth.token) || self.type in ['shopify', 'bigcommerce']",
        "message": "auth.token is for types whose token header is known (shopify, bigcommerce); use auth.header and name the header",
        "fieldPath": ".auth.token",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "self.type != 'postgres' || (has(self.endpoint) && self.endpoint.matches('^postgres(ql)?://[^/?#@]+/[^/?#@]+$'))",
        "message": "a postgres Connector's endpoint is postgres://HOST[:PORT]/DATABASE, e.g. postgres://db.retail.svc:5432/commerce, without user, password or query: credentials come from auth.basic",
        "fieldPath": ".endpoint",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "self.type == 'postgres' || !has(self.database)",
        "message": "database settings (sslMode, caSecretRef) are for type postgres",
        "fieldPath": ".database",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "self.type != 'postgres' || !has(self.auth) || has(self.auth.basic)",
        "message": "a postgres Connector logs in with auth.basic (usernameSecretRef and passwordSecretRef)",
        "fieldPath": ".auth",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "!has(self.idempotencyHeader) || self.idempotencyHeader.matches('^[A-Za-z0-9!#$%&*+.^_|~-]+$')",
        "message": "idempotencyHeader must be an HTTP header name: letters, digits and dashes, e.g. Idempotency-Key",
        "fieldPath": ".idempotencyHeader",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct ConnectorSpec {
    /// The kind of system. It sets the protocol details (signature headers, the header
    /// that carries an idempotency key) so a manifest only says what differs.
    #[serde(rename = "type")]
    pub kind: ConnectorType,

    /// Base URL of the system's API, e.g. `https://erp.example.com/api/v1`. Target paths
    /// and poll paths are appended to it. Required when the Connector is a target or is
    /// polled. For type `postgres`: `postgres://HOST[:PORT]/DATABASE` (port 5432 by
    /// default), with no user or password in it: they come from `auth.basic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// How the runner authenticates its calls to this system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectorAuth>,

    /// How webhooks sent by this system are signed. Required when the Connector is the
    /// source of a SyncFlow with a webhook trigger: unsigned webhooks are never accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookVerification>,

    /// The quota this system grants Entrepot: every flow sending to it shares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ConnectorLimits>,

    /// For type `postgres`: how the connection to the database is secured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseOptions>,

    /// Name of the HTTP header that carries the idempotency key on every call to this
    /// system. Defaults to the one the connector type's API reads (`Idempotency-Key` for
    /// `rest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_header: Option<String>,

    /// Allows an `http://` endpoint or token URL on another machine. Without it, plain
    /// http is refused except to this machine (`127.0.0.1`, `::1`, `localhost`), since
    /// credentials and records would cross the network unencrypted. Set it only where the
    /// network already encrypts (a service mesh sidecar that upgrades to mTLS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plain_http: bool,
}

impl ConnectorSpec {
    /// The header that carries the idempotency key on calls to this system.
    pub fn idempotency_header(&self) -> &str {
        self.idempotency_header.as_deref().unwrap_or("Idempotency-Key")
    }
}

/// How a `postgres` Connector's connections are secured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseOptions {
    /// `verify-full` (the default): TLS, with the server's certificate checked against
    /// `caSecretRef` (else the system's roots) and the endpoint's host name. `disable`:
    /// no TLS, for a database reached over a network that is already private and
    /// encrypted (the same node, a sidecar proxy). Unverified TLS (libpq's `require`)
    /// is not offered: it does not stop a man in the middle.
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// The Secret key holding the PEM certificate(s) of the CA that signed the server's
    /// certificate (an internal CA, a cloud provider's bundle). Default: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeySelector>,
}

/// Whether a database connection uses TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS with the server's certificate and host name verified.
    #[default]
    VerifyFull,
}

/// The quota a system grants: a token bucket (rate and burst) and a cap on requests in
/// flight (NetSuite and Business Central count concurrent requests, not a rate).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// kube-apiserver does not apply `minimum` to a number that is 0 (tried on v1.37: a
// requestsPerSecond of 0 is stored): the rule says it again.
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.requestsPerSecond) || self.requestsPerSecond >= 0.0001",
    "message": "requestsPerSecond must be at least 0.0001 (one request in under three hours); leave it out for no limit",
    "fieldPath": ".requestsPerSecond",
    "reason": "FieldValueInvalid"
}]))]
pub struct ConnectorLimits {
    /// Sustained requests per second (e.g. Shopify REST standard: 2; Amazon getOrders:
    /// 0.0167), across every flow sending to this Connector, and every runner of them when
    /// their queue is in JetStream (the runners share it). Unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0001))]
    pub requests_per_second: Option<f64>,
    /// Requests that may be sent at once after a quiet period (Shopify standard: 40).
    /// Default: one second's worth of `requestsPerSecond`, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub burst: Option<u32>,
    /// Requests in flight at once, across every flow using this Connector, and every runner
    /// of them when their queue is in JetStream (the runners share it). Default 4.
    /// For type `postgres`: the database connections each target opens (each writes one
    /// transaction at a time), and `requestsPerSecond` counts rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Systems that meter each API operation on its own (Amazon SP-API): one token bucket
    /// per operation, on top of the limits above, matched by method and path. For type
    /// `amazon-sp` the common SP-API operations have Amazon's published limits by default;
    /// an entry with the same `name` replaces the default. Each bucket also adapts to the
    /// rate the system names in its answers (`x-amzn-RateLimit-Limit`) and to its 429s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<OperationLimit>,
}

/// The quota of one API operation: a token bucket for the requests that match its method
/// and path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.path.startsWith('/')",
    "message": "path must start with /, e.g. /orders/v0/orders/{orderId}",
    "fieldPath": ".path",
    "reason": "FieldValueInvalid"
}, {
    "rule": "self.requestsPerSecond >= 0.0001",
    "message": "an operation's requestsPerSecond must be at least 0.0001, e.g. 0.0167 (one a minute)",
    "fieldPath": ".requestsPerSecond",
    "reason": "FieldValueInvalid"
}]))]
pub struct OperationLimit {
    /// The operation's name, e.g. `getOrders` (metrics and messages; replaces a default
    /// of the same name).
    pub name: String,
    /// HTTP method the operation uses, e.g. `GET`.
    pub method: String,
    /// Path the operation uses, the end of the request path; `{name}` matches any one
    /// segment, e.g. `/orders/v0/orders/{orderId}/orderItems`.
    pub path: String,
    /// Sustained requests per second, e.g. `0.0167` (one a minute).
    #[schemars(range(min = 0.0001))]
    pub requests_per_second: f64,
    /// Requests that may be sent at once after a quiet period, e.g. `20`.
    #[schemars(range(min = 1))]
    pub burst: u32,
}

/// The kinds of system Entrepot has a protocol preset for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorType {
    /// Shopify Admin API (REST and GraphQL) and Shopify webhooks.
    Shopify,
    /// BigCommerce REST API (v2/v3) and its webhooks.
    #[serde(rename = "bigcommerce")]
    BigCommerce,
    /// NetSuite SuiteTalk REST record API.
    #[serde(rename = "netsuite")]
    NetSuite,
    /// Microsoft Dynamics 365 (Business Central, Finance & Operations) OData v4 APIs.
    #[serde(rename = "dynamics365")]
    Dynamics365,
    /// SAP S/4HANA OData services.
    SapOdata,
    /// Amazon Selling Partner API.
    AmazonSp,
    /// Walmart Marketplace API.
    Walmart,
    /// Any JSON-over-HTTP API; everything is configured in the manifest.
    #[default]
    Rest,
    /// A PostgreSQL database, as a target (upserts by key) or a polled source.
    Postgres,
}

impl ConnectorType {
    /// The header `auth.token` is sent in, for a type whose API defines one (Shopify's
    /// `X-Shopify-Access-Token`, BigCommerce's `X-Auth-Token`).
    pub fn token_header(self) -> Option<&'static str> {
        match self {
            Self::Shopify => Some("X-Shopify-Access-Token"),
            Self::BigCommerce => Some("X-Auth-Token"),
            _ => None,
        }
    }
}

/// How the runner authenticates to a system. Exactly one scheme is set. The same
/// credentials are used whether the system is a flow's target or its polled source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ConnectorAuth {
    /// `Authorization: Bearer <token>`, the token read from a Secret key.
    Bearer {
        /// The Secret key that holds the token.
        #[serde(rename = "secretRef")]
        secret_ref: SecretKeySelector,
    },
    /// An API key sent in a header of the system's choosing (e.g. `X-Shopify-Access-Token`).
    Header(HeaderAuth),
    /// The system's API token, sent in the header the Connector's `type` uses:
    /// `X-Shopify-Access-Token` for `shopify`, `X-Auth-Token` for `bigcommerce`. Only for
    /// those types; other types use `header` and name it.
    Token {
        /// The Secret key that holds the token.
        #[serde(rename = "secretRef")]
        secret_ref: SecretKeySelector,
    },
    /// HTTP basic authentication (`Authorization: Basic ...`) with a user name and a
    /// password from Secret keys. For type `postgres`: the database user and password.
    Basic(BasicAuth),
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): the runner gets an access token from
    /// `tokenUrl`, sends it as `Authorization: Bearer <token>`, and gets a new one before
    /// it expires. A 401 from the system makes it get a new token and try once more.
    #[serde(rename = "oauth2ClientCredentials")]
    OAuth2ClientCredentials(OAuth2ClientCredentials),
}

impl ConnectorAuth {
    /// Every Secret key this scheme reads. The operator renders each into the runner pod.
    pub fn secret_refs(&self) -> Vec<&SecretKeySelector> {
        match self {
            Self::Bearer { secret_ref } | Self::Token { secret_ref } => vec![secret_ref],
            Self::Header(h) => vec![&h.secret_ref],
            Self::Basic(b) => vec![&b.username_secret_ref, &b.password_secret_ref],
            Self::OAuth2ClientCredentials(o) => {
                let mut refs = vec![&o.client_id_secret_ref, &o.client_secret_secret_ref];
                refs.extend(&o.refresh_token_secret_ref);
                refs
            }
        }
    }

    /// The scheme's field name under `spec.auth`, for messages.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Bearer { .. } => "bearer",
            Self::Header(_) => "header",
            Self::Token { .. } => "token",
            Self::Basic(_) => "basic",
            Self::OAuth2ClientCredentials(_) => "oauth2ClientCredentials",
        }
    }
}

/// An API key sent in a named header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.name.matches('^[A-Za-z0-9!#$%&*+.^_|~-]+$')",
    "message": "name must be an HTTP header name: letters, digits and dashes, e.g. X-Api-Key",
    "fieldPath": ".name",
    "reason": "FieldValueInvalid"
}]))]
pub struct HeaderAuth {
    /// Header name, e.g. `X-Shopify-Access-Token` or `X-Auth-Token`.
    pub name: String,
    /// The Secret key that holds the header's value.
    pub secret_ref: SecretKeySelector,
}

/// HTTP basic authentication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// The Secret key that holds the user name.
    pub username_secret_ref: SecretKeySelector,
    /// The Secret key that holds the password.
    pub password_secret_ref: SecretKeySelector,
}

/// OAuth 2.0 client credentials grant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.tokenUrl.matches('^https?://[^/?#]+')",
    "message": "tokenUrl must be an http or https URL with a host, e.g. https://login.example.com/oauth2/token",
    "fieldPath": ".tokenUrl",
    "reason": "FieldValueInvalid"
}]))]
pub struct OAuth2ClientCredentials {
    /// The authorization server's token endpoint, e.g.
    /// `https://login.example.com/oauth2/token`.
    pub token_url: String,
    /// The Secret key that holds the client id.
    pub client_id_secret_ref: SecretKeySelector,
    /// The Secret key that holds the client secret.
    pub client_secret_secret_ref: SecretKeySelector,
    /// Scopes requested, sent space-separated as `scope`. Empty: none is sent and the
    /// server grants its default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Sent as `audience` (Auth0, Okta and others name the API the token is for this way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Further form parameters of the token request, e.g. `{resource: https://erp.example.com}`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra_params: std::collections::BTreeMap<String, String>,
    /// How the client authenticates to the token endpoint: `basic` (HTTP basic, the
    /// default, as RFC 6749 recommends) or `body` (`client_id` and `client_secret` in the form).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// The Secret key holding a refresh token. When set, tokens are requested with the
    /// refresh-token grant (RFC 6749 §6, `grant_type=refresh_token`) instead of client
    /// credentials: Login with Amazon (type `amazon-sp`) works this way, with
    /// `clientAuth: body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_secret_ref: Option<SecretKeySelector>,
}

/// How an OAuth 2.0 client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClientAuth {
    /// `Authorization: Basic` with the client id and secret.
    #[default]
    Basic,
    /// `client_id` and `client_secret` as form parameters.
    Body,
}

/// How a system signs the webhooks it sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(self.signature in ['hmac-sha256', 'api-key']) || has(self.header)",
        "message": "signatures hmac-sha256 and api-key need header: the HTTP header the sender puts the signature or key in, e.g. X-Wms-Hmac-Sha256",
        "fieldPath": ".header",
        "reason": "FieldValueRequired"
    },
    {
        "rule": "!has(self.header) || self.header.matches('^[A-Za-z0-9!#$%&*+.^_|~-]+$')",
        "message": "header must be an HTTP header name: letters, digits and dashes, e.g. X-Api-Key",
        "fieldPath": ".header",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct WebhookVerification {
    /// The signature scheme.
    pub signature: SignatureScheme,
    /// The Secret key that holds the signing secret (Shopify and BigCommerce: the app's
    /// client secret). Read at each delivery: a rotated Secret verifies the next
    /// deliveries without a restart.
    pub secret_ref: SecretKeySelector,
    /// The signing secret before a rotation, still accepted for one hour from when a
    /// runner first reads it (kept on the queue volume, so a restart does not extend it),
    /// so deliveries signed before the rotation, and their retries, are not refused.
    /// Remove it after the hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_ref: Option<SecretKeySelector>,
    /// How long a signature is accepted after its timestamp, for schemes that sign one
    /// (`standard-webhooks`), e.g. `5m` (the default). Older deliveries are refused as
    /// replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<super::Duration>,
    /// For `hmac-sha256` and `api-key` (required there): the header the sender puts the
    /// signature or the key in, e.g. `X-Wms-Hmac-Sha256` or `X-Api-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// For `hmac-sha256` and `api-key`: the header carrying each delivery's unique id,
    /// which deduplicates redeliveries, e.g. `X-Wms-Event-Id`. Without it, duplicates are
    /// dropped by the flow's idempotency key only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id_header: Option<String>,
}

/// Webhook signature schemes. Signatures are always checked over the raw body, in
/// constant time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    /// `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body keyed with the secret.
    ShopifyHmacSha256,
    /// Standard Webhooks (BigCommerce): `webhook-signature: v1,<base64 HMAC-SHA256 of
    /// "<webhook-id>.<webhook-timestamp>.<body>">`, keyed with the client secret; several
    /// space-separated signatures may be sent; `webhook-timestamp` must be within
    /// `tolerance` of now.
    StandardWebhooks,
    /// Any sender that signs like Shopify under a header of its own (a WMS, an in-house
    /// system): `header` holds the base64 HMAC-SHA256 of the raw body keyed with the secret.
    HmacSha256,
    /// A shared key sent as is in `header` (an Amazon EventBridge API destination's API-key
    /// connection), compared in constant time. It authenticates the sender but does not
    /// sign the body: use it over TLS only.
    ApiKey,
}

/// A key of a Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

impl std::fmt::Display for SecretKeySelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "secret {} key {}", self.name, self.key)
    }
}

impl SecretKeySelector {
    /// The environment variable through which the runner receives this Secret key:
    /// `ENTREPOT_SECRET_<NAME>_<KEY>`, upper-cased, anything but letters and digits as `_`.
    /// The operator renders exactly this name into the runner pod.
    pub fn env_var(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
        };
        format!("ENTREPOT_SECRET_{}_{}", clean(&self.name), clean(&self.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_auth_scheme_reads_from_yaml_and_names_its_secret_keys() {
        let yaml = r#"
- bearer: {secretRef: {name: erp, key: token}}
- header: {name: X-Auth-Token, secretRef: {name: bc, key: token}}
- basic:
    usernameSecretRef: {name: sap, key: user}
    passwordSecretRef: {name: sap, key: password}
- oauth2ClientCredentials:
    tokenUrl: https://login.example.com/token
    clientIdSecretRef: {name: ns, key: id}
    clientSecretSecretRef: {name: ns, key: secret}
    scopes: [items.read, orders.write]
    audience: https://erp.example.com
    extraParams: {resource: erp}
    clientAuth: body
"#;
        let schemes: Vec<ConnectorAuth> = serde_saphyr::from_str(yaml).unwrap();
        let names: Vec<&str> = schemes.iter().map(ConnectorAuth::scheme).collect();
        assert_eq!(names, ["bearer", "header", "basic", "oauth2ClientCredentials"]);
        let keys: Vec<String> = schemes.iter().flat_map(|s| s.secret_refs()).map(ToString::to_string).collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(keys[2], "secret sap key user");
        let ConnectorAuth::OAuth2ClientCredentials(o) = &schemes[3] else { panic!("{:?}", schemes[3]) };
        assert_eq!((o.client_auth, o.scopes.len(), o.extra_params["resource"].as_str()), (ClientAuth::Body, 2, "erp"));
        // Two schemes at once are refused.
        let both = "{bearer: {secretRef: {name: a, key: b}}, header: {name: X, secretRef: {name: a, key: b}}}";
        assert!(serde_saphyr::from_str::<ConnectorAuth>(both).is_err());
    }

    #[test]
    fn secret_env_var_names_are_valid_and_stable() {
        let s = SecretKeySelector { name: "shopify-eu.creds".into(), key: "client-secret".into() };
        assert_eq!(s.env_var(), "ENTREPOT_SECRET_SHOPIFY_EU_CREDS_CLIENT_SECRET");
    }
}
