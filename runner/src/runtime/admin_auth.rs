//! Who may use the admin API's routes that read payloads or change state (dead letters,
//! record injection): a caller presenting `Authorization: Bearer <token>`, where the
//! token is the current content of a file. In a cluster the operator creates the token
//! in a Secret per SyncFlow (`<runner>-admin-token`, key `token`) and mounts it; the file
//! is read on every request, so a rotated Secret applies without a restart. The probes,
//! `/metrics` and `/v1/status` (counts and health, no payload, no secret) stay open.
//!
//! Also the one place the caller's `x-entrepot-requested-by` enters: bounded before it
//! is logged or copied into queued records.

use std::path::{Path, PathBuf};

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tracing::warn;

use super::kube_users::{Access, KUBE_TOKEN_HEADER, KubeUsers, Refusal};

/// The header that carries the admin token where `Authorization` cannot: through the
/// Kubernetes API server's proxy (`kubectl entrepot deadletters`), which authenticates
/// the user with `Authorization` and removes it before proxying.
pub const ADMIN_TOKEN_HEADER: &str = "x-entrepot-admin-token";
/// The header a client (the CLI) names itself in, for the audit log.
pub const REQUESTED_BY_HEADER: &str = "x-entrepot-requested-by";
/// The most characters of `x-entrepot-requested-by` kept; the rest is cut.
pub const REQUESTED_BY_MAX_CHARS: usize = 100;
/// Where a runner pod finds its admin token (the operator mounts the flow's
/// `<runner>-admin-token` Secret here).
pub const POD_ADMIN_TOKEN_FILE: &str = "/var/run/secrets/entrepot-admin/token";

/// Who the guard let through, as a request extension of the protected routes: what the
/// audit trail records as the caller's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated(pub String);

/// The identity an open admin API (no token, loopback only) records.
pub const OPEN_IDENTITY: &str = "open admin API (loopback, no token)";

/// The identity of a caller that presented `token`: a fingerprint of it (the first 8
/// bytes of its SHA-256), never the token, so the trail tells which token was used (a
/// rotation changes it) without a way back to it.
pub fn token_identity(token: &str) -> String {
    use sha2::Digest as _;
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("admin token sha256:{hex}")
}

/// How the admin API's protected routes are guarded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdminAuth {
    /// No token: only for an admin server on a loopback address (local mode, tests).
    #[default]
    Open,
    /// `Authorization: Bearer` must match this file's current content.
    TokenFile(PathBuf),
}

/// What the guarded routes' middleware holds: the admin token's guard and, when the
/// runner authenticates Kubernetes users, how (`kube_users.rs`).
#[derive(Clone, Debug, Default)]
pub(super) struct Guard {
    pub auth: AdminAuth,
    pub kube: Option<KubeUsers>,
}

/// The admin token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// The file cannot be read.
    #[error(
        "cannot read the admin token file {path}: {source}; give a readable file with --admin-token-file (ENTREPOT_ADMIN_TOKEN_FILE)"
    )]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds nothing but whitespace: every caller would be refused.
    #[error("the admin token file {path} is empty; write a random token into it (e.g. `openssl rand -hex 32`)")]
    Empty {
        /// The file.
        path: String,
    },
}

/// The token in `path`, without surrounding whitespace (a trailing newline is common
/// in a file written by hand).
pub fn read_token(path: &Path) -> Result<String, AdminTokenError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| AdminTokenError::Unreadable { path: path.display().to_string(), source })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(AdminTokenError::Empty { path: path.display().to_string() });
    }
    Ok(token.to_string())
}

/// Whether `presented` equals `expected`, in time independent of where they differ and
/// of their lengths: both are keyed into an HMAC, and the tags compared in constant time.
fn same_token(expected: &str, presented: &str) -> bool {
    const LABEL: &[u8] = b"entrepot admin token";
    let tag = |key: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
        mac.update(LABEL);
        mac
    };
    let expected = tag(expected).finalize().into_bytes();
    tag(presented).verify_slice(&expected).is_ok()
}

/// The token `headers` present: the bearer token of `Authorization` (the scheme is
/// case-insensitive), else [`ADMIN_TOKEN_HEADER`].
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| Some(headers.get(ADMIN_TOKEN_HEADER)?.to_str().ok()?.trim()))
}

/// The bearer token of `headers`, if any (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn refuse(status: StatusCode, message: String) -> Response {
    let mut response = (status, Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"entrepot-admin\""));
    }
    response
}

/// Middleware of the protected admin routes: passes the request on when `auth` allows it.
pub(super) async fn require_token(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    if let Some(token) = request.headers().get(KUBE_TOKEN_HEADER) {
        let token = token.to_str().unwrap_or_default().trim().to_string();
        let access = Access::of(request.method(), request.uri().path());
        return match kube_user(guard.kube.as_ref(), &token, access).await {
            Ok(identity) => {
                request.extensions_mut().insert(Authenticated(identity));
                next.run(request).await
            }
            Err((status, message)) => {
                warn!(path = %request.uri().path(), status = status.as_u16(), "admin request of a Kubernetes user refused");
                refuse(status, message)
            }
        };
    }
    let AdminAuth::TokenFile(path) = &guard.auth else {
        request.extensions_mut().insert(Authenticated(OPEN_IDENTITY.into()));
        return next.run(request).await;
    };
    let expected = match read_token(path) {
        Ok(token) => token,
        Err(e) => {
            // Fail closed: a missing mount must not open the API.
            warn!(error = %e, "admin request refused: no usable admin token");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    };
    match presented_token(request.headers()) {
        Some(presented) if same_token(&expected, presented) => {
            let identity = Authenticated(token_identity(presented));
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        presented => {
            warn!(path = %request.uri().path(), token_given = presented.is_some(), "admin request refused: bad or missing token");
            refuse(
                StatusCode::UNAUTHORIZED,
                format!(
                    "this admin route needs the header `Authorization: Bearer <token>` (or `{ADMIN_TOKEN_HEADER}: <token>`); the token is in {} on the runner \
                     (in a cluster, the Secret <flow>-runner-admin-token, key `token`; the CLI sends it with \
                     --admin-token-file or ENTREPOT_ADMIN_TOKEN_FILE)",
                    path.display()
                ),
            )
        }
    }
}

/// The identity of the Kubernetes user holding `token`, if RBAC grants them `access`;
/// else the status and message to refuse it with.
async fn kube_user(kube: Option<&KubeUsers>, token: &str, access: Access) -> Result<String, (StatusCode, String)> {
    let Some(kube) = kube else {
        let message = format!(
            "this runner does not authenticate Kubernetes users (no --kube-users-ca), so {KUBE_TOKEN_HEADER} is refused; \
             send the admin token instead"
        );
        return Err((StatusCode::UNAUTHORIZED, message));
    };
    if token.is_empty() {
        return Err((StatusCode::UNAUTHORIZED, format!("{KUBE_TOKEN_HEADER} is empty")));
    }
    match kube.review(token, access).await {
        Ok(user) => Ok(format!("kubernetes user {}", user.username)),
        Err(e @ Refusal::Unauthenticated(_)) => Err((StatusCode::UNAUTHORIZED, e.to_string())),
        Err(e @ Refusal::Forbidden { .. }) => Err((StatusCode::FORBIDDEN, e.to_string())),
        Err(e @ Refusal::Unavailable { .. }) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// Who asked, for the audit log: the client's own name from `x-entrepot-requested-by`,
/// trimmed, control characters dropped and cut to [`REQUESTED_BY_MAX_CHARS`] (it is
/// copied into every record a request queues, so it must stay small); `None` when absent.
pub fn requested_by(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(REQUESTED_BY_HEADER)?.to_str().ok()?;
    let bounded: String = value.trim().chars().filter(|c| !c.is_control()).take(REQUESTED_BY_MAX_CHARS).collect();
    Some(bounded.trim_end().to_string()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_recorded_by_a_fingerprint_that_differs_per_token() {
        let id = token_identity("s3cret-token");
        assert!(id.starts_with("admin token sha256:") && id.len() == "admin token sha256:".len() + 16, "{id}");
        assert!(!id.contains("s3cret"));
        assert_ne!(id, token_identity("s3cret-tokeN"));
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_token("s3cret-token", "s3cret-token"));
        assert!(!same_token("s3cret-token", "s3cret-tokeN"));
        assert!(!same_token("s3cret-token", "s3cret-token-and-more"));
        assert!(!same_token("s3cret-token", ""));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_others_are_not_taken() {
        let with = |value: &str| HeaderMap::from_iter([(header::AUTHORIZATION, value.parse().unwrap())]);
        assert_eq!(bearer(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&with("Basic abc")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn the_token_header_is_taken_when_no_bearer_token_is_given() {
        let token = HeaderMap::from_iter([(ADMIN_TOKEN_HEADER.parse().unwrap(), " abc ".parse().unwrap())]);
        assert_eq!(presented_token(&token), Some("abc"));
        let mut both = token.clone();
        both.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(presented_token(&both), Some("xyz"));
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }

    #[test]
    fn requested_by_is_cut_and_stripped_of_control_characters() {
        let with = |value: &str| HeaderMap::from_iter([(REQUESTED_BY_HEADER.parse().unwrap(), value.parse().unwrap())]);
        assert_eq!(requested_by(&with(&"x".repeat(100_000))).unwrap().len(), REQUESTED_BY_MAX_CHARS);
        assert_eq!(requested_by(&with(" cli (ana)\t ")).as_deref(), Some("cli (ana)"));
        assert_eq!(requested_by(&with("a\tb")).as_deref(), Some("ab"));
        assert_eq!(requested_by(&with("   ")), None);
        assert_eq!(requested_by(&HeaderMap::new()), None);
    }

    #[test]
    fn an_empty_or_missing_token_file_is_refused_and_a_newline_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        assert!(matches!(read_token(&file), Err(AdminTokenError::Unreadable { .. })));
        std::fs::write(&file, " \n").unwrap();
        assert!(read_token(&file).unwrap_err().to_string().contains("is empty"));
        std::fs::write(&file, "abc\n").unwrap();
        assert_eq!(read_token(&file).unwrap(), "abc");
    }
}
