//! Sending deliveries the way Shopify's webhook service does.
//!
//! Shopify gives a receiver 1 s to connect and 5 s in total; anything but a 2xx (a 3xx
//! included), a transport error or a timeout fails the attempt, and the same delivery (same
//! webhook id, same original body) is tried again later with exponential backoff.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;

use super::StorefrontError;
use super::webhook::Delivery;

/// Something a [`WebhookSender`] can post: an id for messages, headers and a body.
pub trait Sendable {
    /// The delivery's id (for error messages and logs).
    fn id(&self) -> &str;
    /// Every header sent, the signature included.
    fn headers(&self) -> &HeaderMap;
    /// The exact bytes sent.
    fn body(&self) -> &Bytes;
}

impl Sendable for Delivery {
    fn id(&self) -> &str {
        &self.webhook_id
    }
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    fn body(&self) -> &Bytes {
        &self.body
    }
}

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one; Shopify makes 8.
    pub max_retries: u32,
    /// Wait before the first retry; each later wait doubles.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Shopify's schedule: 8 retries spread over about 4 hours (1 min, 2, 4 ... capped at
    /// 2 h: 4 h 7 min in total). Tests and demos scale `initial_backoff` down.
    fn default() -> Self {
        Self { max_retries: 8, initial_backoff: Duration::from_secs(60), max_backoff: Duration::from_secs(2 * 60 * 60) }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Why one attempt got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer within the total timeout (Shopify: 5 s).
    #[error("webhook {webhook_id} to {url}: no answer within the timeout; answer within 5 s and queue the work")]
    Timeout {
        /// The receiver.
        url: String,
        /// The delivery attempted.
        webhook_id: String,
    },
    /// No connection within the connect timeout (Shopify: 1 s), or a refused connection.
    #[error("webhook {webhook_id} to {url}: cannot connect: {source}")]
    Connect {
        /// The receiver.
        url: String,
        /// The delivery attempted.
        webhook_id: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// Any other transport failure (connection reset, malformed answer).
    #[error("webhook {webhook_id} to {url}: {source}")]
    Transport {
        /// The receiver.
        url: String,
        /// The delivery attempted.
        webhook_id: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
}

/// What became of a delivery after all its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryOutcome {
    /// HTTP requests made, the first included.
    pub attempts: u32,
    /// Status of the last answer, `None` if the last attempt got no answer.
    pub final_status: Option<u16>,
    /// The last attempt's transport error, if it had one.
    pub last_error: Option<String>,
}

impl DeliveryOutcome {
    /// Whether the receiver acknowledged the delivery with a 2xx.
    pub fn acknowledged(&self) -> bool {
        self.final_status.is_some_and(|status| (200..300).contains(&status))
    }
}

/// Posts deliveries to one receiver URL.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    target: reqwest::Url,
    retry: RetryPolicy,
}

impl WebhookSender {
    /// A sender posting to `target` with the given timeouts and retry policy.
    pub fn new(
        target: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, StorefrontError> {
        let invalid = |reason: String| StorefrontError::InvalidTarget { target: target.to_owned(), reason };
        let url = reqwest::Url::parse(target).map_err(|error| invalid(error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".to_owned()));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            // Shopify does not follow redirects: a 3xx is a failed delivery.
            .redirect(reqwest::redirect::Policy::none())
            // The receiver is a test or demo endpoint: environment proxies would only
            // get in the way of loopback addresses.
            .no_proxy()
            .build()
            .map_err(StorefrontError::Client)?;
        Ok(Self { client, target: url, retry })
    }

    /// The receiver URL.
    pub fn target(&self) -> &str {
        self.target.as_str()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// One attempt: posts the delivery and returns the receiver's status, whatever it is.
    pub async fn send(&self, delivery: &impl Sendable) -> Result<StatusCode, SendError> {
        let url = self.target.to_string();
        let classify = |source: reqwest::Error| {
            let webhook_id = delivery.id().to_owned();
            let url = url.clone();
            if source.is_timeout() {
                SendError::Timeout { url, webhook_id }
            } else if source.is_connect() {
                SendError::Connect { url, webhook_id, source }
            } else {
                SendError::Transport { url, webhook_id, source }
            }
        };
        let response = self
            .client
            .post(self.target.clone())
            .headers(delivery.headers().clone())
            .body(delivery.body().clone())
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        // Reading the answer lets the connection be reused; its content does not matter,
        // and an answer cut short after the status line still counts as that status.
        let _ = response.bytes().await;
        Ok(status)
    }

    /// Sends the delivery until it is acknowledged or the retries run out, waiting
    /// [`RetryPolicy::backoff`] between attempts. Every attempt sends the same bytes and
    /// headers (same webhook id), as Shopify does.
    pub async fn send_with_retries(&self, delivery: &impl Sendable) -> DeliveryOutcome {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (final_status, last_error) = match self.send(delivery).await {
                Ok(status) => (Some(status.as_u16()), None),
                Err(error) => (None, Some(error.to_string())),
            };
            let outcome = DeliveryOutcome { attempts, final_status, last_error };
            if outcome.acknowledged() || attempts > self.retry.max_retries {
                return outcome;
            }
            tracing::debug!(
                webhook_id = delivery.id(),
                attempt = attempts,
                status = outcome.final_status,
                error = outcome.last_error,
                "webhook delivery failed; retrying"
            );
            tokio::time::sleep(self.retry.backoff(attempts)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_retries: 8,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        };
        let waits: Vec<u128> = (1..=5).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 50, 50]);
    }

    #[test]
    fn the_default_schedule_spreads_eight_retries_over_about_four_hours() {
        let policy = RetryPolicy::default();
        let total: Duration = (1..=policy.max_retries).map(|a| policy.backoff(a)).sum();
        let hours = total.as_secs_f64() / 3600.0;
        assert!((3.5..=4.5).contains(&hours), "{hours} h");
    }

    #[test]
    fn only_http_urls_are_targets() {
        let build =
            |target| WebhookSender::new(target, Duration::from_secs(1), Duration::from_secs(5), RetryPolicy::default());
        assert!(build("http://127.0.0.1:8080/webhooks/shopify").is_ok());
        for bad in ["127.0.0.1:8080", "ftp://example.com/", "not a url"] {
            let refused = build(bad).unwrap_err();
            assert!(refused.to_string().contains(bad), "{refused}");
        }
    }
}
