//! The admin port, bound before the queue opens: opening can take a while (redb repairs
//! a file that was not closed cleanly, which is long on a large queue), and a port that
//! does not answer meanwhile gets the pod killed by its liveness probe, again and again.
//! Until the runtime's router is handed over, `/healthz` (the startupProbe's path) and
//! `/readyz` answer 503 "opening the queue", and so does everything else.

use std::sync::{Arc, OnceLock};

use axum::{
    Router,
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tower_service::Service;

/// The admin HTTP server, serving a placeholder until [`AdminServer::open`].
pub struct AdminServer {
    opened: Arc<OnceLock<Router>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Serves `listener` now, answering 503 until [`AdminServer::open`].
    pub fn start(listener: TcpListener) -> Self {
        let opened: Arc<OnceLock<Router>> = Arc::default();
        let router = opened.clone();
        let app = Router::new().fallback(move |request: Request| {
            let router = router.get().cloned();
            async move {
                match router {
                    Some(mut router) => match router.call(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    None => opening(),
                }
            }
        });
        let (stop, mut stopping) = watch::channel(false);
        let until = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let task =
            tokio::spawn(super::http_server::serve(listener, app, super::http_server::HEADER_READ_TIMEOUT, until));
        Self { opened, stop, task }
    }

    /// From now on, requests go to `router` (the runtime's admin router).
    pub fn open(&self, router: Router) {
        let _ = self.opened.set(router);
    }

    /// Stops accepting, lets requests in flight finish.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.map_err(std::io::Error::other)?
    }
}

fn opening() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "opening the queue").into_response()
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    #[tokio::test]
    async fn the_port_answers_opening_the_queue_until_the_runtime_router_is_handed_over() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = AdminServer::start(listener);
        let fetch = |path: &str| {
            let url = format!("{url}{path}");
            async move {
                let response = reqwest::get(url).await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        assert_eq!(fetch("/healthz").await, (503, "opening the queue".to_string()));
        assert_eq!(fetch("/readyz").await.0, 503);
        server.open(Router::new().route("/healthz", get(|| async { "ok" })));
        assert_eq!(fetch("/healthz").await, (200, "ok".to_string()));
        server.stop().await.unwrap();
    }
}
