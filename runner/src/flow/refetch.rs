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
    connect::ConnectorClient,
    mapping::{CompileError, Program, parse_json},
    protocol::{Answer, Verdict, backoff},
    queue::{Attempt, DeadLetter, DeadLetterReason, Envelope, now_ms},
    quota::Quota,
    spec::{Refetch, RetrySpec},
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
        {
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
        loop {
            let slot = self.quota.slot(crate::spec::Priority::High).await;
            let permit = self.quota.admit(slot).await;
            let sent = self.client.send(|http| http.get(&url).header(ACCEPT, "application/json")).await;
            let answer = match sent {
                crate::connect::Sent::Response(response) if response.status().is_success() => {
                    let quota = crate::protocol::QuotaSignal::read(response.status(), response.headers(), None);
                    self.quota.observe(&quota);
                    drop(permit);
                    match response.bytes().await {
                        Ok(bytes) => return Refetched::Payload(bytes.to_vec()),
                        Err(e) => Answer::Transport(crate::protocol::describe_transport(&e)),
                    }
                }
                other => other.into_answer(self.client.system()).await,
            };
            if let Answer::Response { quota, .. } = &answer {
                self.quota.observe(quota);
            }
            let status = match &answer {
                Answer::Response { status, .. } => Some(status.as_u16()),
                _ => None,
            };
            let body = match &answer {
                Answer::Response { body, .. } => Some(body.clone()),
                _ => None,
            };
            let verdict = self.client.system().verdict(&answer);
            let outcome = match &verdict {
                Verdict::Delivered => "delivered".to_owned(),
                Verdict::Retry { reason, .. } | Verdict::Reject { reason, .. } => reason.clone(),
            };
            attempts.push(Attempt { at_ms: now_ms(), status, outcome: format!("refetch {}: {outcome}", self.path) });
            let attempt = attempts.len() as u32;
            match verdict {
                // A 2xx is handled above; anything read as delivered here (a 2xx whose
                // body could not be read) is retried.
                Verdict::Delivered => {}
                Verdict::Reject { reason, category } => {
                    let reason_kind = if category == crate::protocol::ErrorCategory::Auth {
                        DeadLetterReason::Auth
                    } else {
                        DeadLetterReason::Rejected
                    };
                    warn!(correlation_id = %envelope.correlation_id, id, status, "refetch refused; dead-lettered");
                    return dead(
                        reason_kind,
                        format!("refetch GET {}: {reason}", self.path.replace("{id}", &id)),
                        status,
                        body,
                        attempts,
                    );
                }
                Verdict::Retry { after, reason, .. } if attempt < self.retry.max_attempts => {
                    let delay = backoff(&self.retry, attempt, after);
                    info!(correlation_id = %envelope.correlation_id, id, attempt, delay_ms = delay.as_millis() as u64, reason, "refetch failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return Refetched::Interrupted,
                    }
                    continue;
                }
                Verdict::Retry { reason, .. } => {
                    let message = format!(
                        "refetch GET {}: {attempt} attempts failed, the last: {reason}",
                        self.path.replace("{id}", &id)
                    );
                    return dead(DeadLetterReason::RetriesExhausted, message, status, body, attempts);
                }
            }
            if attempt >= self.retry.max_attempts {
                return dead(
                    DeadLetterReason::RetriesExhausted,
                    format!("refetch GET {}: unreadable answers", self.path),
                    status,
                    body,
                    attempts,
                );
            }
        }
    }
}

fn urlencode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}
