//! The delivery worker of one target: outbox items in arrival order, each attempted
//! until the target has it, refuses it, or the retries run out.

use std::{sync::Arc, time::Duration};

use tracing::{info, warn};

use super::{Flow, Workers, wait};
use crate::{
    queue::{Attempt, DeadLetter, DeadLetterReason, DeliveryItem, now_ms},
    target::{Answer, ErrorCategory, Verdict, backoff, classify},
};

const BATCH: usize = 32;
const IDLE: Duration = Duration::from_secs(1);

/// Runs until shutdown.
pub async fn run_delivery(flow: Arc<Flow>, index: usize, mut w: Workers) {
    let name = flow.name().to_string();
    let target = &flow.targets[index];
    loop {
        let batch = {
            let (queue, name) = (w.queue.clone(), name.clone());
            tokio::task::spawn_blocking(move || queue.outbox(&name, index as u32, BATCH)).await.expect("queue read panicked")
        };
        match batch {
            Ok(batch) if !batch.is_empty() => {
                for (seq, item) in batch {
                    if !deliver_one(&flow, index, seq, &item, &mut w).await {
                        return;
                    }
                }
            }
            Ok(_) => {
                if !wait(&target.wake, &mut w.shutdown, IDLE).await {
                    return;
                }
            }
            Err(e) => {
                warn!(flow = %name, target = %target.http.connector, error = %e, "cannot read the outbox; retrying");
                if !wait(&target.wake, &mut w.shutdown, IDLE).await {
                    return;
                }
            }
        }
    }
}

/// Delivers one item; returns `false` on shutdown (the item stays queued).
async fn deliver_one(flow: &Flow, index: usize, seq: u64, item: &DeliveryItem, w: &mut Workers) -> bool {
    let name = flow.name();
    let target = &flow.targets[index];
    let connector = target.http.connector.as_str();
    let policy = &flow.config.spec.delivery.retry;
    let mut attempts = Vec::new();
    loop {
        let answer = target.http.send(item).await;
        let status = match &answer {
            Answer::Response { status, .. } => Some(status.as_u16()),
            Answer::Transport(_) | Answer::Credentials(_) => None,
        };
        let verdict = classify(&answer);
        attempts.push(Attempt {
            at_ms: now_ms(),
            status,
            outcome: match &verdict {
                Verdict::Delivered => "delivered".into(),
                Verdict::Retry { reason, .. } | Verdict::Reject { reason, .. } => reason.clone(),
            },
        });
        let (reason, message) = match verdict {
            Verdict::Delivered => {
                let (queue, flow_name) = (w.queue.clone(), name.to_string());
                let acked = tokio::task::spawn_blocking(move || queue.delivered(&flow_name, index as u32, seq))
                    .await
                    .expect("queue write panicked");
                if let Err(e) = acked {
                    // The target has it; if the removal is lost, the redelivery carries the
                    // same idempotency key.
                    warn!(flow = %name, target = connector, error = %e, "delivered but cannot remove from the outbox");
                }
                let latency = (now_ms() - item.envelope.received_at_ms).max(0) as f64 / 1000.0;
                w.metrics.delivered.with_label_values(&[name, connector]).inc();
                w.metrics.latency.with_label_values(&[name, connector]).observe(latency);
                *target.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                info!(flow = %name, target = connector, correlation_id = %item.envelope.correlation_id,
                      idempotency_key = %item.idempotency_key, attempts = attempts.len(), "delivered");
                return true;
            }
            Verdict::Reject { reason, category } => {
                target.http.client().health.failed(category, &reason);
                let dead = if category == ErrorCategory::Auth { DeadLetterReason::Auth } else { DeadLetterReason::Rejected };
                (dead, reason)
            }
            Verdict::Retry { after, reason, category } => {
                target.http.client().health.failed(category, &reason);
                *target.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
                if attempts.len() as u32 >= policy.max_attempts {
                    (DeadLetterReason::RetriesExhausted, format!("{} attempts failed; last: {reason}", attempts.len()))
                } else {
                    w.metrics.retries.with_label_values(&[name, connector]).inc();
                    let delay = backoff(policy, attempts.len() as u32, after);
                    warn!(flow = %name, target = connector, correlation_id = %item.envelope.correlation_id,
                          attempt = attempts.len(), retry_in_ms = delay.as_millis() as u64, reason = %reason, "delivery failed; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = w.shutdown.changed() => return false,
                    }
                }
            }
        };
        let dead = DeadLetter {
            envelope: item.envelope.clone(),
            target: Some(index as u32),
            reason,
            message: message.clone(),
            status,
            response_body: match &answer {
                Answer::Response { body, .. } if !body.is_empty() => Some(body.clone()),
                _ => None,
            },
            attempts,
            dead_lettered_at_ms: now_ms(),
        };
        let (queue, flow_name) = (w.queue.clone(), name.to_string());
        let stored = tokio::task::spawn_blocking(move || queue.dead_letter(&flow_name, index as u32, seq, &dead))
            .await
            .expect("queue write panicked");
        match stored {
            Ok(id) => {
                w.metrics.dead_lettered.with_label_values(&[name, reason.as_str()]).inc();
                warn!(flow = %name, target = connector, correlation_id = %item.envelope.correlation_id,
                      dead_letter = id, reason = reason.as_str(), message = %message, "record dead-lettered");
                return true;
            }
            Err(e) => {
                // Keep the item: it will be attempted again rather than lost.
                warn!(flow = %name, target = connector, error = %e, "cannot dead-letter; the record stays queued");
                return wait(&target.wake, &mut w.shutdown, IDLE).await;
            }
        }
    }
}
