//! Which redirects a Connector's client follows: only those to the origin it was sent
//! to. reqwest strips `Authorization` and cookies on a cross-host redirect, but not the
//! other headers credentials travel in (`X-Shopify-Access-Token`, `x-amz-access-token`,
//! `WM_SEC.ACCESS_TOKEN`, a Connector's own header), and a 307 or 308 sends the body
//! again, with the OAuth client secret when the token request carries it. So a redirect
//! to another host, port or scheme (a downgrade to `http`, `169.254.169.254`) is an
//! error that names both origins, never a request.

use reqwest::{Url, redirect::Policy};

/// Redirects followed within one origin before giving up.
const MAX_HOPS: usize = 5;

/// Why a redirect was not followed.
#[derive(Debug, thiserror::Error)]
#[error("redirect from {from} to {to} not followed: a Connector's credentials go only to the origin of its endpoint")]
struct CrossOrigin {
    from: String,
    to: String,
}

/// The policy of every client that carries a Connector's credentials.
pub fn same_origin_only() -> Policy {
    Policy::custom(|attempt| {
        let first = attempt.previous().first().map(origin).unwrap_or_default();
        let next = origin(attempt.url());
        if next != first {
            attempt.error(CrossOrigin { from: first, to: next })
        } else if attempt.previous().len() > MAX_HOPS {
            attempt.error(format!("more than {MAX_HOPS} redirects within {next}"))
        } else {
            attempt.follow()
        }
    })
}

/// Scheme, host and port: no path or query, which may hold a token.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use axum::{
        Router,
        http::{HeaderMap, StatusCode, header::LOCATION},
        routing::get,
    };

    use super::*;

    /// Serves `/go` (redirecting to `to` with the given status) and `/landed`, which
    /// says which credential header reached it.
    async fn serve(to: String, status: StatusCode) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let redirect = move || {
            let to = to.clone();
            async move { (status, [(LOCATION, to)]) }
        };
        let landed = |headers: HeaderMap| async move {
            headers.get("x-shopify-access-token").map_or("no token".to_string(), |_| "token".into())
        };
        let app =
            Router::new().route("/go", get(redirect.clone()).post(redirect)).route("/landed", get(landed).post(landed));
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().redirect(same_origin_only()).build().unwrap()
    }

    #[tokio::test]
    async fn a_redirect_to_another_origin_is_an_error_and_sends_nothing_there() {
        // The other origin: the same server on another name ("localhost"), which would
        // answer if the redirect were followed.
        let other = serve(String::new(), StatusCode::FOUND).await;
        let other = other.replace("127.0.0.1", "localhost") + "/landed";
        let base = serve(other.clone(), StatusCode::TEMPORARY_REDIRECT).await;
        let err = client()
            .post(format!("{base}/go"))
            .header("x-shopify-access-token", "shpat_secret")
            .body("client_secret=s3cret")
            .send()
            .await
            .unwrap_err();
        let message = crate::protocol::describe_transport(&err);
        assert!(message.contains("not followed") && message.contains("localhost"), "{message}");
        assert!(!message.contains("s3cret") && !message.contains("shpat_secret"), "{message}");
        // What the default policy would have done: the token reaches the other host.
        let followed = reqwest::Client::new()
            .get(format!("{base}/go"))
            .header("x-shopify-access-token", "shpat_secret")
            .send()
            .await
            .unwrap();
        assert_eq!(followed.text().await.unwrap(), "token");
    }

    #[tokio::test]
    async fn a_redirect_within_the_origin_is_followed() {
        let base = serve("/landed".into(), StatusCode::MOVED_PERMANENTLY).await;
        let answer = client().get(format!("{base}/go")).header("x-shopify-access-token", "t").send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "token");
    }
}
