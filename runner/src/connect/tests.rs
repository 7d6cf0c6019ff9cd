//! The 401 rule end to end: a Connector with OAuth2 against a token endpoint and an API
//! on loopback.

use super::*;
use crate::{
    protocol::{ErrorCategory, Verdict, classify},
    test_support::{Api, Reply, TokenEndpoint, oauth2_secrets, oauth2_spec},
};
use entrepot_api::resource::ConnectorAuth;

fn client(endpoint: &str, token_url: &str) -> ConnectorClient {
    let spec = ConnectorSpec {
        endpoint: Some(format!("{endpoint}/")),
        auth: Some(ConnectorAuth::OAuth2ClientCredentials(oauth2_spec(token_url))),
        ..ConnectorSpec::default()
    };
    ConnectorClient::new("erp", "retail", &spec, &oauth2_secrets()).unwrap()
}

async fn post_item(c: &ConnectorClient) -> Verdict {
    let url = format!("{}/items", c.endpoint());
    classify(&c.send(|http| http.post(&url).body("{}")).await.into_answer(c.system()).await)
}

fn authorizations(api: &Api) -> Vec<String> {
    api.seen().iter().map(|s| s.authorization().unwrap_or_default().to_string()).collect()
}

#[tokio::test]
async fn a_401_gets_one_new_token_and_one_more_try_then_is_a_business_error() {
    let tokens = TokenEndpoint::start(Some(3600)).await;
    let api = Api::start(|_, _| Reply::status(401, r#"{"message":"token revoked"}"#)).await;
    let c = client(&api.url, &tokens.url);
    let verdict = post_item(&c).await;
    assert!(
        matches!(&verdict, Verdict::Reject { category: ErrorCategory::Auth, reason } if reason.contains("token revoked")),
        "{verdict:?}"
    );
    assert_eq!(authorizations(&api), ["Bearer tok-1", "Bearer tok-2"]);
    assert_eq!(tokens.requests(), 2);
    assert_eq!(api.seen()[0].uri, "/items", "the endpoint's trailing slash is not doubled");
}

#[tokio::test]
async fn a_token_refused_once_is_replaced_and_kept() {
    let tokens = TokenEndpoint::start(Some(3600)).await;
    let api = Api::start(|_, n| if n == 0 { Reply::status(401, "expired") } else { Reply::status(204, "") }).await;
    let c = client(&api.url, &tokens.url);
    assert_eq!(post_item(&c).await, Verdict::Delivered);
    assert_eq!(post_item(&c).await, Verdict::Delivered);
    assert_eq!(authorizations(&api), ["Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]);
    assert_eq!(tokens.requests(), 2);
}

#[tokio::test]
async fn a_failing_token_endpoint_is_a_transient_auth_failure_and_nothing_is_sent() {
    let tokens = TokenEndpoint::start(Some(3600)).await;
    tokens.fail_with(503, "maintenance");
    let api = Api::start(|_, _| Reply::status(204, "")).await;
    let c = client(&api.url, &tokens.url);
    let verdict = post_item(&c).await;
    assert!(matches!(&verdict, Verdict::Retry { category: ErrorCategory::Auth, .. }), "{verdict:?}");
    assert!(api.seen().is_empty());
}

#[tokio::test]
async fn credentials_a_system_echoes_in_its_answer_are_not_kept() {
    use crate::{manifest::ObjectKey, protocol::Answer, test_support::Seen};
    use entrepot_api::resource::SecretKeySelector;
    const TOKEN: &str = "erp-token-s3cr3t-value";
    // A system that quotes the request's headers back in its error.
    let echo = |seen: &Seen, _| {
        let auth = seen.authorization().unwrap_or_default().to_string();
        Reply::status(
            400,
            &format!(r#"{{"error": "bad request", "headers": {{"authorization": "{auth}"}}, "token": "{TOKEN}"}}"#),
        )
    };
    let api = Api::start(echo).await;
    let spec = ConnectorSpec {
        endpoint: Some(format!("{}/", api.url)),
        allow_plain_http: true,
        auth: Some(ConnectorAuth::Bearer { secret_ref: SecretKeySelector { name: "erp".into(), key: "token".into() } }),
        ..ConnectorSpec::default()
    };
    let manifests = [(
        ObjectKey { namespace: "retail".into(), name: "erp".into() },
        [("token".to_string(), format!("{TOKEN}\n"))].into(),
    )];
    let client = ConnectorClient::new("erp", "retail", &spec, &Secrets::with_manifests(manifests.into())).unwrap();
    let url = format!("{}/items", client.endpoint());
    let answer = client.send(|http| http.post(&url).body("{}")).await.into_answer(client.system()).await;
    let Answer::Response { body, .. } = answer else { panic!("{answer:?}") };
    assert!(!body.contains(TOKEN), "{body}");
    assert!(
        body.contains(r#""authorization": "Bearer [redacted]""#) && body.contains(r#""token": "[redacted]""#),
        "{body}"
    );
    assert_eq!(authorizations(&api), [format!("Bearer {TOKEN}")], "what was sent is the token itself");
}
