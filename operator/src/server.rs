//! The operator's own HTTP endpoints: `/healthz`, `/readyz` and `/metrics`, on hyper's
//! HTTP/1 server (already in the tree through kube) rather than a web framework: three
//! fixed paths need no router.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// What the endpoints report on.
#[derive(Clone)]
pub struct Health {
    /// Rendered on `/metrics`.
    pub metrics: Metrics,
    /// `/readyz` answers 200 once set (the controllers' caches are filled).
    pub ready: Arc<AtomicBool>,
}

impl Health {
    /// The answer to `method path`. `/readyz` answers 503 until `ready` is set,
    /// `/healthz` answers 200 while the process serves at all.
    pub fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here".into());
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok".into()),
            "/readyz" if self.ready.load(Ordering::Relaxed) => text(StatusCode::OK, "ready".into()),
            "/readyz" => {
                text(StatusCode::SERVICE_UNAVAILABLE, "starting: the controller's cache is not filled yet".into())
            }
            "/metrics" => {
                let mut response = text(StatusCode::OK, self.metrics.render());
                response.headers_mut().insert(CONTENT_TYPE, "text/plain; version=0.0.4".parse().expect("valid"));
                response
            }
            _ => text(StatusCode::NOT_FOUND, "not found: the operator serves /healthz, /readyz and /metrics".into()),
        }
    }
}

/// A plain-text response.
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("valid"));
    response
}

/// Serves the endpoints on `addr` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    let health = Health { metrics, ready };
    serve_on(listener, move |request| health.answer(request.method(), request.uri().path()), shutdown).await;
    Ok(())
}

/// Serves HTTP/1 on `listener`, answering every request with `answer`, until `shutdown`
/// completes; then waits for the connections in flight to finish their request.
pub(crate) async fn serve_on<F>(listener: TcpListener, answer: F, shutdown: impl Future<Output = ()>)
where
    F: Fn(&Request<hyper::body::Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let answer = answer.clone();
        let service = service_fn(move |request| {
            let response = answer(&request);
            async move { Ok::<_, Infallible>(response) }
        });
        // A timer, so hyper's header-read timeout (30 s) holds: without one a client
        // that never finishes its headers keeps its connection forever.
        let connection = connections
            .watch(http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let code = response[9..12].parse().unwrap();
        (code, response)
    }

    #[tokio::test]
    async fn readiness_follows_the_flag_and_metrics_are_served() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let metrics = Metrics::new();
        metrics.reconciled("syncflow", std::time::Duration::ZERO, None);
        let health = Health { metrics, ready: ready.clone() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(
            listener,
            move |request| health.answer(request.method(), request.uri().path()),
            async move {
                let _ = stopped.await;
            },
        ));

        assert_eq!(get_text(addr, "/healthz").await.0, 200);
        assert_eq!(get_text(addr, "/readyz").await.0, 503);
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get_text(addr, "/readyz").await.0, 200);
        let (code, body) = get_text(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("content-type: text/plain; version=0.0.4"), "{body}");
        assert!(body.contains("entrepot_operator_reconciles_total"), "{body}");
        assert_eq!(get_text(addr, "/nowhere").await.0, 404);
        // Shutting down ends the server.
        stop.send(()).unwrap();
        server.await.unwrap();
    }
}
