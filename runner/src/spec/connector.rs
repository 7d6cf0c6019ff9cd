use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One external system Entrepot talks to: a storefront, an ERP, a marketplace, a WMS.
///
/// A Connector holds what is true of the system whoever uses it: where it is, how to
/// authenticate, how its webhooks are signed. Credentials are Secret references; the
/// operator never reads their values, the runner pod receives them as environment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectorSpec {
    /// The kind of system. It sets the protocol details (signature headers, the header
    /// that carries an idempotency key) so a manifest only says what differs.
    #[serde(rename = "type")]
    pub kind: ConnectorType,

    /// Base URL of the system's API, e.g. `https://erp.example.com/api/v1`. Target paths
    /// are appended to it. Required when the Connector is used as a target.
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

    /// Name of the HTTP header that carries the idempotency key on every call to this
    /// system. Defaults to the one the connector type's API reads (`Idempotency-Key` for
    /// `rest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_header: Option<String>,
}

impl ConnectorSpec {
    /// The header that carries the idempotency key on calls to this system.
    pub fn idempotency_header(&self) -> &str {
        self.idempotency_header.as_deref().unwrap_or(match self.kind {
            ConnectorType::Shopify | ConnectorType::Rest => "Idempotency-Key",
        })
    }
}

/// The quota a system grants: a token bucket (rate and burst) and a cap on requests in
/// flight (NetSuite and Business Central count concurrent requests, not a rate).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectorLimits {
    /// Sustained requests per second (e.g. Shopify REST standard: 2; Amazon getOrders:
    /// 0.0167). Unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0001))]
    pub requests_per_second: Option<f64>,
    /// Requests that may be sent at once after a quiet period (Shopify standard: 40).
    /// Default: one second's worth of `requestsPerSecond`, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub burst: Option<u32>,
    /// Requests in flight at once, across every flow using this Connector. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
}

/// The kinds of system Entrepot has a protocol preset for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorType {
    /// Shopify Admin API and Shopify webhooks.
    Shopify,
    /// Any JSON-over-HTTP API; everything is configured in the manifest.
    #[default]
    Rest,
}

/// How the runner authenticates to a system. Exactly one scheme is set.
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
}

/// An API key sent in a named header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderAuth {
    /// Header name, e.g. `X-Shopify-Access-Token` or `X-Auth-Token`.
    pub name: String,
    /// The Secret key that holds the header's value.
    pub secret_ref: SecretKeySelector,
}

/// How a system signs the webhooks it sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookVerification {
    /// The signature scheme.
    pub signature: SignatureScheme,
    /// The Secret key that holds the signing secret (Shopify: the app's client secret).
    pub secret_ref: SecretKeySelector,
}

/// Webhook signature schemes. Signatures are always checked over the raw body, in
/// constant time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    /// `X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body keyed with the secret.
    ShopifyHmacSha256,
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

impl SecretKeySelector {
    /// The environment variable through which the runner receives this Secret key:
    /// `ENTREPOT_SECRET_<NAME>_<KEY>`, upper-cased, anything but letters and digits as `_`.
    /// The operator renders exactly this name into the runner pod.
    pub fn env_var(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
                .collect()
        };
        format!("ENTREPOT_SECRET_{}_{}", clean(&self.name), clean(&self.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_env_var_names_are_valid_and_stable() {
        let s = SecretKeySelector { name: "shopify-eu.creds".into(), key: "client-secret".into() };
        assert_eq!(s.env_var(), "ENTREPOT_SECRET_SHOPIFY_EU_CREDS_CLIENT_SECRET");
    }
}
