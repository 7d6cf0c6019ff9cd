//! What every simulated API does the same way: serve an axum app on a bound listener from
//! its own task, stop gracefully on request or when dropped, and compare credentials in
//! constant time.

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running HTTP server; dropping it stops the server.
#[derive(Debug)]
pub(crate) struct Server {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Serves `app` on `listener` from a new task.
    pub(crate) fn spawn(listener: TcpListener, app: Router) -> std::io::Result<Self> {
        // Fails early, before the task, when the socket is unusable.
        listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Resolves on an explicit stop and when the server is dropped.
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self { stop: Some(stop), task: Some(task) })
    }

    /// Stops accepting connections, lets requests in flight finish, and waits.
    pub(crate) async fn shutdown(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|error| error.to_string())?.map_err(|error| error.to_string()),
            None => Ok(()),
        }
    }
}

/// Compares without returning early, so response time does not reveal how much of a
/// guessed credential was right.
pub(crate) fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_only_equal_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
