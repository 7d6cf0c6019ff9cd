//! A forwarder on loopback that carries each request of the dead-letter client to a
//! runner pod's admin port through the API server's pod proxy
//! (`/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy/...`), authenticated with the
//! user's kubeconfig by `kube::Client`. So the client of `entrepot deadletters` is reused
//! as it is, and no port-forward is needed. It lives as long as the command.

use std::{convert::Infallible, net::SocketAddr};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use kube::Client;
use tokio::{net::TcpListener, task::JoinHandle};

/// The forwarder: its address, and the task serving it (aborted when dropped).
pub struct Forwarder {
    /// `http://127.0.0.1:PORT`, the admin API's base for the client.
    pub base: String,
    task: JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The API server's path to `port` of `pod`, through its proxy subresource.
pub fn proxy_path(namespace: &str, pod: &str, port: i32) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy")
}

/// Starts forwarding `http://127.0.0.1:PORT/<path>` to `<prefix>/<path>` on the API server.
pub async fn start(client: Client, prefix: String) -> Result<Forwarder> {
    let listener =
        TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.context("cannot listen on loopback")?;
    let base = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (client, prefix) = (client.clone(), prefix.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request| forward(client.clone(), prefix.clone(), request));
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(Forwarder { base, task })
}

async fn forward(
    client: Client,
    prefix: String,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match send(&client, &prefix, request).await {
        Ok(response) => response,
        // Answered as the runner answers an error, so the client reports it as such.
        Err(e) => {
            let body = serde_json::json!({ "error": format!("through the Kubernetes API server: {e:#}") }).to_string();
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            response
        }
    })
}

async fn send(client: &Client, prefix: &str, request: Request<Incoming>) -> Result<Response<Full<Bytes>>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.context("reading the request")?.to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = Request::builder().method(parts.method).uri(format!("{prefix}{path}"));
    for (name, value) in &parts.headers {
        // The API server's own connection and authentication are kube's.
        if name != header::HOST && name != header::CONNECTION && name != header::AUTHORIZATION {
            outgoing = outgoing.header(name, value);
        }
    }
    let outgoing = outgoing.body(kube::client::Body::from(body.to_vec()))?;
    let response = client.send(outgoing).await?;
    let (mut parts, body) = response.into_parts();
    let mut body = body.collect().await.context("reading the answer")?.to_bytes();
    if let Some(refusal) = api_server_refusal(&body, prefix) {
        // The API server's own answer, not the runner's: said as such.
        body = Bytes::from(serde_json::json!({ "error": refusal }).to_string());
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// What the API server said when it answered itself (a `Status` object: the pod proxy
/// refused, RBAC forbade, the pod is gone), with what to do.
fn api_server_refusal(body: &[u8], prefix: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if value["kind"] != "Status" || value["status"] == "Success" {
        return None;
    }
    let message = value["message"].as_str().unwrap_or("no message");
    Some(format!(
        "the Kubernetes API server refused to proxy to {prefix}: {message} (your RBAC needs `get pods/proxy`; \
         where the API server cannot reach pod addresses, try --via direct from a machine that routes to them)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_servers_own_refusal_is_told_apart_from_the_runners_answer() {
        let status =
            br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"address not allowed","code":400}"#;
        let said = api_server_refusal(status, &proxy_path("retail", "orders-runner-0", 9090)).unwrap();
        assert!(
            said.contains("/api/v1/namespaces/retail/pods/orders-runner-0:9090/proxy: address not allowed"),
            "{said}"
        );
        assert_eq!(api_server_refusal(br#"{"error":"no dead letter 4"}"#, "/p"), None);
        assert_eq!(api_server_refusal(b"[]", "/p"), None);
    }
}
