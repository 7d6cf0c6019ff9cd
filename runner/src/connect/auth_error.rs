//! Why a Connector's credentials cannot be set up or obtained: shared by the static
//! schemes (`auth`) and OAuth2 (`oauth2`), so neither imports the other for it.

use crate::secrets::MissingSecret;

/// Credentials cannot be set up or obtained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// A Secret key is not available.
    #[error("Connector {connector}: spec.auth: {source}")]
    Secret {
        /// The Connector.
        connector: String,
        /// Which key, and where it was looked for.
        source: Box<MissingSecret>,
    },
    /// `spec.auth.header.name` is not an HTTP header name.
    #[error("Connector {connector}: spec.auth.header.name `{name}` is not a valid HTTP header name")]
    HeaderName {
        /// The Connector.
        connector: String,
        /// The name as written.
        name: String,
    },
    /// A Secret's value cannot be sent in a header (a line break inside, say). The
    /// value itself is never part of the message.
    #[error(
        "Connector {connector}: the value of {selector} cannot be sent in an HTTP header; remove line breaks and control characters from it"
    )]
    HeaderValue {
        /// The Connector.
        connector: String,
        /// Which Secret key.
        selector: String,
    },
    /// `spec.auth.oauth2ClientCredentials.tokenUrl` is not an absolute http(s) URL.
    #[error(
        "Connector {connector}: spec.auth.oauth2ClientCredentials.tokenUrl `{url}` is not an http(s) URL: {reason}"
    )]
    TokenUrl {
        /// The Connector.
        connector: String,
        /// The URL as written.
        url: String,
        /// Why.
        reason: String,
    },
    /// The token endpoint did not give a token.
    #[error("Connector {connector}: no access token from {url}: {reason}")]
    Token {
        /// The Connector.
        connector: String,
        /// The token endpoint.
        url: String,
        /// What it answered, or why there was no answer.
        reason: String,
    },
}
