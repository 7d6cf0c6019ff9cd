//! What the tests share: YAML fixtures and the in-memory API server.

pub mod fake_api;
pub mod fixtures;

/// Installs rustls' ring provider, as the binary does: kube links both ring and
/// aws-lc-rs, and rustls refuses to pick between them.
pub fn install_crypto_provider() {
    // Err only means another test in this process installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Polls `check` until it gives a value. The deadline only turns a hang into a failure
/// that says what was awaited; no test asserts how long anything takes.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
