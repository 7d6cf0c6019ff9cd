//! People on the admin API, authenticated by Kubernetes: a caller may present its own
//! Kubernetes bearer token (the one in its kubeconfig) in [`KUBE_TOKEN_HEADER`]; the runner
//! asks the API server who that is (`SelfSubjectReview`) and whether they may do what the
//! request does to this flow (`SelfSubjectAccessReview`), both sent *with that token*. So
//! the runner needs no Kubernetes credentials of its own (its pods mount no service-account
//! token), RBAC decides, and the audit trail records the person, not a shared token.
//!
//! What a request needs, as an RBAC rule on the SyncFlow (API group `entrepot.io`):
//!
//! | request                                  | verb     | resource                 |
//! |------------------------------------------|----------|--------------------------|
//! | `GET /v1/deadletters...`                 | `get`    | `syncflows/deadletters`  |
//! | `POST /v1/deadletters/{replay,discard}`  | `update` | `syncflows/deadletters`  |
//! | `POST /v1/flows/{flow}/records`          | `create` | `syncflows/records`      |
//! | `GET /v1/audit`                          | `get`    | `syncflows/audit`        |
//!
//! The chart's `<release>-oncall` ClusterRole holds them. The token is never logged or
//! stored; the API server's CA is read from a file (in a pod, the `kube-root-ca.crt`
//! ConfigMap the operator mounts) whenever it changes.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::http::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The header that carries the caller's own Kubernetes bearer token (through the API
/// server's pod proxy, which keeps `Authorization` for itself).
pub const KUBE_TOKEN_HEADER: &str = "x-entrepot-kube-token";
/// The API group of the resources the RBAC rules name.
const GROUP: &str = "entrepot.io";
/// How long one review may take before the request is refused (503).
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how Kubernetes users are checked.
#[derive(Clone, Debug)]
pub struct KubeUsers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `https://host:port` of the API server; none known: every review is refused (503).
    api: Option<String>,
    ca_file: PathBuf,
    /// The SyncFlow's namespace: where RBAC is asked.
    namespace: String,
    /// The SyncFlow's name when the runner serves one flow (a pod does), so a Role may
    /// name it in `resourceNames`; otherwise the rule must cover every flow.
    flow: Option<String>,
    /// The HTTP client, built for the CA file's content it was made with.
    client: Mutex<Option<(Vec<u8>, reqwest::Client)>>,
}

/// What a request asks of RBAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// `get`, `update` or `create`.
    pub verb: &'static str,
    /// The subresource of `syncflows`.
    pub subresource: &'static str,
}

/// Who the API server says the token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeUser {
    /// The username (`jane@example.com`, `system:serviceaccount:ns:name`).
    pub username: String,
}

/// Why a Kubernetes user was not let through.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The API server does not know the token (401 to the caller).
    #[error("the Kubernetes API server did not accept the token in {KUBE_TOKEN_HEADER}: {0}")]
    Unauthenticated(String),
    /// RBAC says no (403 to the caller).
    #[error(
        "Kubernetes user {user} may not {verb} syncflows/{subresource} in namespace {namespace}{name}: \
         RBAC needs a rule for apiGroups [{GROUP}], resources [syncflows/{subresource}], verbs [{verb}] \
         (the chart's ClusterRole <release>-oncall has it, bound with a RoleBinding in that namespace)"
    )]
    Forbidden {
        /// The username.
        user: String,
        /// The verb asked.
        verb: &'static str,
        /// The subresource asked.
        subresource: &'static str,
        /// The flow's namespace.
        namespace: String,
        /// ` (SyncFlow NAME)` or nothing.
        name: String,
    },
    /// The API server could not be asked (503 to the caller).
    #[error("cannot ask the Kubernetes API server at {api} who the caller is: {reason}")]
    Unavailable {
        /// The API server.
        api: String,
        /// Why.
        reason: String,
    },
}

/// The Kubernetes user check cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum KubeUsersError {
    /// No API server address: neither given nor in the pod's environment.
    #[error(
        "no Kubernetes API server to authenticate users with: give --kube-api URL, or run in a pod \
         (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT)"
    )]
    NoApiServer,
    /// The CA file is unusable.
    #[error("the Kubernetes CA file {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl Access {
    /// What `method` on `path` (a guarded admin route) asks of RBAC.
    pub fn of(method: &Method, path: &str) -> Self {
        let subresource = if path.starts_with("/v1/flows/") {
            "records"
        } else if path.starts_with("/v1/audit") {
            "audit"
        } else {
            "deadletters"
        };
        let verb = match (*method == Method::GET || *method == Method::HEAD, subresource) {
            (true, _) => "get",
            (false, "records") => "create",
            (false, _) => "update",
        };
        Self { verb, subresource }
    }
}

/// The API server in a pod: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`
/// (an IPv6 host in brackets); none outside one.
pub fn in_cluster_api() -> Option<String> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok().filter(|h| !h.is_empty())?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").ok().filter(|p| !p.is_empty())?;
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    Some(format!("https://{host}:{port}"))
}

impl KubeUsers {
    /// Users of the API server `api` (else the pod's), trusted through the CA bundle in
    /// `ca_file`, asked about the SyncFlow `flow` (if one) in `namespace`. What cannot be
    /// used yet (no API server known, the CA file unreadable) is said by [`KubeUsers::check`]
    /// and refuses each review (503) until it can: the admin token keeps working.
    pub fn new(api: Option<String>, ca_file: &Path, namespace: String, flow: Option<String>) -> Self {
        let api = api.or_else(in_cluster_api).map(|a| a.trim_end_matches('/').to_string());
        let inner = Inner { api, ca_file: ca_file.to_path_buf(), namespace, flow, client: Mutex::new(None) };
        Self { inner: Arc::new(inner) }
    }

    /// Whether reviews can be made now: an API server is known and the CA file holds
    /// certificates.
    pub fn check(&self) -> Result<(), KubeUsersError> {
        self.inner.client().map(drop)
    }

    /// Who holds `token`, if they may have `access` to this flow.
    pub async fn review(&self, token: &str, access: Access) -> Result<KubeUser, Refusal> {
        let inner = &self.inner;
        let (api, client) = inner.client().map_err(|e| Refusal::Unavailable {
            api: inner.api.clone().unwrap_or_else(|| "(none)".into()),
            reason: e.to_string(),
        })?;
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
        let answer = post(&client, api, token, "/apis/authentication.k8s.io/v1/selfsubjectreviews", review).await?;
        let Some(username) = answer["status"]["userInfo"]["username"].as_str().filter(|u| !u.is_empty()) else {
            return Err(Refusal::Unavailable { api: api.into(), reason: "its SelfSubjectReview named no user".into() });
        };
        let user = KubeUser { username: username.to_string() };
        let mut attributes = json!({
            "namespace": inner.namespace, "verb": access.verb, "group": GROUP,
            "resource": "syncflows", "subresource": access.subresource,
        });
        if let Some(flow) = &inner.flow {
            attributes["name"] = json!(flow);
        }
        let check = json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        });
        let answer = post(&client, api, token, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", check).await?;
        if answer["status"]["allowed"] == true {
            return Ok(user);
        }
        Err(Refusal::Forbidden {
            user: user.username,
            verb: access.verb,
            subresource: access.subresource,
            namespace: inner.namespace.clone(),
            name: inner.flow.as_ref().map(|f| format!(" (SyncFlow {f})")).unwrap_or_default(),
        })
    }
}

impl Inner {
    /// The API server, and the client for the CA file's current content: rebuilt when the
    /// file changed (a rotated cluster CA needs no restart).
    fn client(&self) -> Result<(&str, reqwest::Client), KubeUsersError> {
        let api = self.api.as_deref().ok_or(KubeUsersError::NoApiServer)?;
        let ca_error = |reason: String| KubeUsersError::Ca { path: self.ca_file.display().to_string(), reason };
        let pem = std::fs::read(&self.ca_file).map_err(|e| ca_error(e.to_string()))?;
        let mut cached = self.client.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, client)) = cached.as_ref()
            && *seen == pem
        {
            return Ok((api, client.clone()));
        }
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error("holds no PEM certificate".into()));
        }
        let client = reqwest::Client::builder()
            .tls_certs_only(certs)
            .timeout(REVIEW_TIMEOUT)
            .build()
            .map_err(|e| ca_error(e.to_string()))?;
        *cached = Some((pem, client.clone()));
        Ok((api, client))
    }
}

/// POSTs `body` to `path` of `api` as the holder of `token`; the answer's JSON.
async fn post(client: &reqwest::Client, api: &str, token: &str, path: &str, body: Value) -> Result<Value, Refusal> {
    let unavailable = |reason: String| Refusal::Unavailable { api: api.into(), reason };
    let response = client
        .post(format!("{api}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| unavailable(format!("{e:#}")))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let message = answer["message"].as_str().unwrap_or("no message").to_string();
    match status {
        s if s.is_success() => Ok(answer),
        StatusCode::UNAUTHORIZED => Err(Refusal::Unauthenticated(message)),
        // A token without even the self-review rights every authenticated user has.
        StatusCode::FORBIDDEN => Err(Refusal::Unauthenticated(message)),
        s => Err(unavailable(format!("{path} answered {s}: {message}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_guarded_route_asks_its_own_verb_and_subresource() {
        let of = |method: Method, path: &str| {
            let a = Access::of(&method, path);
            (a.verb, a.subresource)
        };
        assert_eq!(of(Method::GET, "/v1/deadletters"), ("get", "deadletters"));
        assert_eq!(of(Method::GET, "/v1/deadletters/7"), ("get", "deadletters"));
        assert_eq!(of(Method::POST, "/v1/deadletters/replay"), ("update", "deadletters"));
        assert_eq!(of(Method::POST, "/v1/deadletters/discard"), ("update", "deadletters"));
        assert_eq!(of(Method::POST, "/v1/flows/orders/records"), ("create", "records"));
        assert_eq!(of(Method::GET, "/v1/audit"), ("get", "audit"));
    }

    #[tokio::test]
    async fn a_missing_or_empty_ca_file_or_no_api_server_refuses_reviews_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        let api = Some("https://127.0.0.1:6443".to_string());
        let users = KubeUsers::new(api.clone(), &ca, "retail".into(), None);
        let e = users.check().unwrap_err();
        assert!(e.to_string().starts_with(&format!("the Kubernetes CA file {}", ca.display())), "{e}");
        let refused = users.review("t", Access::of(&Method::GET, "/v1/deadletters")).await.unwrap_err();
        assert!(matches!(refused, Refusal::Unavailable { .. }), "{refused}");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let e = KubeUsers::new(api, &ca, "retail".into(), None).check().unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        let inner = Inner { api: None, ca_file: ca, namespace: "retail".into(), flow: None, client: Mutex::new(None) };
        let users = KubeUsers { inner: Arc::new(inner) };
        assert!(matches!(users.check(), Err(KubeUsersError::NoApiServer)));
    }
}
