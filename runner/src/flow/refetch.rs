//! Thin webhooks (`trigger.webhook.refetch`): before a delivery is mapped, the full record
//! it names is read from the source Connector (its credentials, its quota, its type's
//! answer rules). Transient failures are retried with `delivery.retry`, honouring the
//! source's `Retry-After` or window reset; a business refusal (a `404` for a record deleted
//! meanwhile, say) or exhausted retries dead-letter the delivery with the reason. The dead
//! letter keeps the thin payload, so a replay refetches.

use std::sync::Arc;

use reqwest::header::ACCEPT;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    attempt::{Failed, Outcome, refusal, with_retries, within_quota},
    connect::{ConnectorClient, Sent},
    protocol::{Answer, ErrorCategory, QuotaSignal, Verdict, describe_transport},
    queue::{Attempt, DeadLetter, DeadLetterReason, Envelope, now_ms},
    quota::Quota,
};

use entrepot_api::{
    mapping::{CompileError, Program, parse_json},
    resource::{Refetch, RetrySpec},
};

/// What became of a refetch.
#[derive(Debug)]
pub enum Refetched {
    /// The full record: map this instead of the thin payload.
    Payload(Vec<u8>),
    /// The delivery cannot be completed: dead-letter it.
    DeadLetter(Box<DeadLetter>),
    /// The runner is shutting down: leave the delivery in the inbox.
    Interrupted,
}

/// A compiled `refetch`, with the source Connector's client and quota.
#[derive(Debug)]
pub struct Refetcher {
    client: Arc<ConnectorClient>,
    quota: Arc<Quota>,
    path: String,
    id: Program,
    retry: RetrySpec,
}

impl Refetcher {
    /// Compiles `refetch`'s id expression; reads through `client`, within `quota`.
    pub fn new(
        refetch: &Refetch,
        client: Arc<ConnectorClient>,
        quota: Arc<Quota>,
        retry: RetrySpec,
    ) -> Result<Self, CompileError> {
        let id = Program::compile(&refetch.id, &Default::default())?;
        Ok(Self { client, quota, path: refetch.path.clone(), id, retry })
    }

    /// The full record named by `envelope`'s payload.
    pub async fn fetch(&self, envelope: &Envelope, shutdown: &mut watch::Receiver<bool>) -> Refetched {
        let dead = |reason, message: String, status, body, attempts| {
            Refetched::DeadLetter(Box::new(DeadLetter {
                envelope: envelope.clone(),
                target: None,
                reason,
                message,
                status,
                response_body: body,
                attempts,
                dead_lettered_at_ms: now_ms(),
            }))
        };
        let id = match parse_json(&envelope.payload)
            .map_err(|e| e.to_string())
            .and_then(|v| self.id.run_key(&v).map_err(|e| e.to_string()))
            .and_then(|id| match crate::protocol::is_dot_segment(&id) {
                true => Err(format!("`{id}` as a URL path segment would leave {}", self.path)),
                false => Ok(id),
            }) {
            Ok(id) => id,
            Err(e) => {
                return dead(
                    DeadLetterReason::InvalidRecord,
                    format!("refetch: no record id in the webhook payload: {e}"),
                    None,
                    None,
                    Vec::new(),
                );
            }
        };
        let url = format!("{}{}", self.client.endpoint(), self.path.replace("{id}", &urlencode(&id)));
        let mut attempts = Vec::new();
        let record = |tried: &Tried| Attempt {
            at_ms: tried.at_ms,
            status: tried.status,
            outcome: format!("refetch {}: {}", self.path, tried.outcome),
            throttled: tried.category == Some(ErrorCategory::Throttled),
        };
        let attempt = |_| self.attempt(&url);
        let outcome = with_retries(&self.retry, Some(shutdown), attempt, |tried, attempt, delay| {
            attempts.push(record(tried));
            info!(correlation_id = %envelope.correlation_id, id, attempt, delay_ms = delay.as_millis() as u64,
                  reason = tried.outcome, "refetch failed; retrying");
        })
        .await;
        let (reason, message, last) = match outcome {
            Outcome::Done(payload) => return Refetched::Payload(payload),
            Outcome::Interrupted => return Refetched::Interrupted,
            Outcome::Refused { last, .. } => {
                warn!(correlation_id = %envelope.correlation_id, id, status = last.status, "refetch refused; dead-lettered");
                let reason = refusal(last.category.unwrap_or(ErrorCategory::Rejected));
                (reason, format!("refetch GET {}: {}", self.path.replace("{id}", &id), last.outcome), last)
            }
            Outcome::Exhausted { last, attempts } => {
                let message = format!(
                    "refetch GET {}: {attempts} attempts failed, the last: {}",
                    self.path.replace("{id}", &id),
                    last.outcome
                );
                (DeadLetterReason::RetriesExhausted, message, last)
            }
            Outcome::ThrottledTooLong { last, attempts } => {
                let message = format!(
                    "refetch GET {}: throttled for longer than delivery.retry.maxThrottledFor ({attempts} attempts), the last: {}",
                    self.path.replace("{id}", &id),
                    last.outcome
                );
                (DeadLetterReason::ThrottledTooLong, message, last)
            }
        };
        attempts.push(record(&last));
        dead(reason, message, last.status, last.body, attempts)
    }

    /// One GET of the full record within the source's quota.
    async fn attempt(&self, url: &str) -> Result<Vec<u8>, Failed<Tried>> {
        let slot = self.quota.slot(entrepot_api::resource::Priority::High).await;
        let fetched = within_quota(
            &self.quota,
            slot,
            async {
                let sent = self.client.send(|http| http.get(url).header(ACCEPT, "application/json")).await;
                match sent {
                    Sent::Response(response, _) if response.status().is_success() => {
                        let quota = QuotaSignal::read(response.status(), response.headers(), None);
                        self.quota.observe(&quota);
                        response
                            .bytes()
                            .await
                            .map(|b| b.to_vec())
                            .map_err(|e| Answer::Transport(describe_transport(&e)))
                    }
                    other => Err(other.into_answer(self.client.system()).await),
                }
            },
            |fetched| fetched.as_ref().err(),
        )
        .await;
        let answer = match fetched {
            Ok(payload) => return Ok(payload),
            Err(answer) => answer,
        };
        let verdict = self.client.system().verdict(&answer);
        let (status, body) = match &answer {
            Answer::Response { status, body, .. } => (Some(status.as_u16()), Some(body.clone())),
            _ => (None, None),
        };
        let (outcome, category) = match &verdict {
            // A 2xx is handled above; anything read as delivered here (a 2xx whose body
            // could not be read) is retried.
            Verdict::Delivered => ("delivered".to_owned(), None),
            Verdict::Retry { reason, category, .. } | Verdict::Reject { reason, category } => {
                (reason.clone(), Some(*category))
            }
        };
        Err(Failed { verdict, detail: Tried { at_ms: now_ms(), status, body, outcome, category } })
    }
}

/// One failed refetch attempt, as the dead letter's history keeps it.
#[derive(Debug)]
struct Tried {
    at_ms: i64,
    status: Option<u16>,
    body: Option<String>,
    outcome: String,
    category: Option<ErrorCategory>,
}

fn urlencode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}
