//! HTTP/1 serving for the webhook and admin ports. `axum::serve` runs hyper without a
//! timer, so a client that opens a connection and sends its headers a byte at a time
//! (or never) holds a connection and a task for as long as it likes: thousands of them
//! exhaust the webhook port without a single valid signature. Here each connection gets
//! a header-read timeout; what follows the headers is bounded by the routes themselves
//! (the webhook route's body limit and request timeout).

use std::{future::Future, time::Duration};

use axum::Router;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::net::TcpListener;
use tower_service::Service;
use tracing::{debug, warn};

/// How long a client may take to send a request's headers, from the moment the
/// connection waits for them: a webhook sender sends them at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting and
/// waits for the connections in flight to finish their request.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
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
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = service_fn(move |request| {
            let mut router = router.clone();
            async move { router.call(request).await }
        });
        let connection = connections.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;

    /// What the server sends on `stream` until it closes it; `None` if it keeps it open
    /// past a bound far longer than the timeout under test.
    async fn until_closed(stream: &mut TcpStream) -> Option<String> {
        let mut seen = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut seen)).await;
        read.ok().map(|_| String::from_utf8_lossy(&seen).into_owned())
    }

    #[tokio::test]
    async fn a_client_that_does_not_finish_its_headers_is_cut_off_and_others_are_served() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/healthz", get(|| async { "ok" }));
        let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, Duration::from_millis(300), async {
            let _ = stopping.await;
        }));

        // Headers begun and never finished.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /webhooks/orders HTTP/1.1\r\nhost: runner\r\nx-shopify-hmac-sha256: ").await.unwrap();
        // Connected, and silent.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // A prompt client is served meanwhile.
        let answer = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "ok");

        let slow_end = until_closed(&mut slow).await;
        assert!(slow_end.is_some(), "a connection with unfinished headers was kept open");
        assert!(until_closed(&mut silent).await.is_some(), "a connection that sent nothing was kept open");

        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
