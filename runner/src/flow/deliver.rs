//! The delivery worker of one target: outbox items go out in per-key lanes (same
//! ordering key: one at a time, in arrival order; different keys: concurrently, within
//! the target Connector's quota). A record waiting to retry holds back only its own key.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use tokio::{task::JoinSet, time::Instant};
use tracing::{Instrument, info, warn};

use super::{Flow, Workers, lanes::Lanes};
use crate::{
    queue::{Attempt, DeadLetter, DeadLetterReason, DeliveryItem, compare_versions, now_ms},
    target::{Answer, ErrorCategory, Verdict, backoff},
};

/// Items read from the outbox at a time.
const LOAD_BATCH: usize = 500;
/// Items held in memory per target; the rest wait on disk.
const MAX_HELD: usize = 5_000;
const IDLE: Duration = Duration::from_secs(1);

/// An item being delivered, with its attempts so far.
struct Head {
    key: String,
    item: DeliveryItem,
    attempts: Vec<Attempt>,
}

/// Runs until shutdown. Items in flight at shutdown stay in the outbox and go again
/// after a restart, with the same idempotency key.
pub async fn run_delivery(flow: Arc<Flow>, index: usize, mut w: Workers) {
    let mut worker = Worker {
        flow: flow.clone(),
        index,
        lanes: Lanes::default(),
        held: HashMap::new(),
        delivered: Vec::new(),
        loaded_up_to: 0,
    };
    let target = &flow.targets[index];
    let mut in_flight: JoinSet<(u64, Answer)> = JoinSet::new();
    let mut retries: BTreeMap<(Instant, u64), String> = BTreeMap::new();
    let mut refill = true;
    loop {
        if refill {
            refill = worker.load(&w).await;
        }
        let priority = flow.config.spec.delivery.priority;
        while let Some(slot) = worker.has_ready().then(|| target.quota.try_slot(priority)).flatten() {
            worker.dispatch(slot, &mut in_flight, &w).await;
        }
        let next_retry = retries.keys().next().map(|(due, _)| *due);
        tokio::select! {
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                // Settle every attempt that has finished, then acknowledge the delivered
                // ones together: one transaction for the lot.
                let mut finished = vec![joined.expect("a delivery attempt panicked")];
                while let Some(more) = in_flight.try_join_next() {
                    finished.push(more.expect("a delivery attempt panicked"));
                }
                for (seq, answer) in finished {
                    if let Some((due, key)) = worker.settle(seq, answer, &w).await {
                        retries.insert((due, seq), key);
                    }
                }
                worker.acknowledge(&w).await;
            }
            slot = target.quota.slot(priority), if worker.has_ready() => worker.dispatch(slot, &mut in_flight, &w).await,
            _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)), if next_retry.is_some() => {
                let now = Instant::now();
                while let Some(entry) = retries.first_entry().filter(|e| e.key().0 <= now) {
                    worker.lanes.release(&entry.remove());
                }
            }
            _ = target.wake.notified() => refill = true,
            _ = tokio::time::sleep(IDLE) => refill = true,
            _ = w.shutdown.changed() => return,
        }
    }
}

struct Worker {
    flow: Arc<Flow>,
    index: usize,
    lanes: Lanes,
    held: HashMap<u64, Head>,
    /// Delivered items not yet removed from the outbox.
    delivered: Vec<u64>,
    loaded_up_to: u64,
}

impl Worker {
    fn name(&self) -> &str {
        self.flow.name()
    }

    fn connector(&self) -> &str {
        self.flow.targets[self.index].sink.connector()
    }

    fn has_ready(&self) -> bool {
        self.lanes.has_ready()
    }

    /// Reads new outbox items into the lanes; returns whether more are waiting on disk.
    async fn load(&mut self, w: &Workers) -> bool {
        if self.lanes.len() >= MAX_HELD {
            return false;
        }
        let (name, target_name, after) =
            (self.name().to_string(), self.flow.targets[self.index].name.clone(), self.loaded_up_to);
        let batch = w.queue.off_thread(move |q| q.outbox_after(&name, &target_name, after, LOAD_BATCH)).await;
        match batch {
            Ok(batch) => {
                let full = batch.len() == LOAD_BATCH;
                for (seq, item) in batch {
                    // Without an ordering key every record is its own lane.
                    let key = item.ordering_key.clone().unwrap_or_else(|| format!("#{seq}"));
                    self.lanes.push(&key, seq);
                    self.held.insert(seq, Head { key, item, attempts: Vec::new() });
                    self.loaded_up_to = seq;
                }
                full
            }
            Err(e) => {
                warn!(flow = %self.name(), target = %self.connector(), error = %e, "cannot read the outbox; retrying");
                false
            }
        }
    }

    /// Removes the delivered items from the outbox in one transaction and frees their
    /// lanes. If the store fails the items stay in the outbox: after a restart they go
    /// again, with the same idempotency key.
    async fn acknowledge(&mut self, w: &Workers) {
        if self.delivered.is_empty() {
            return;
        }
        let seqs = std::mem::take(&mut self.delivered);
        let items: Vec<(u64, Option<(String, String)>)> = seqs
            .iter()
            .map(|seq| {
                let item = &self.held[seq].item;
                (*seq, item.ordering_key.clone().zip(item.version.clone()))
            })
            .collect();
        let (name, target_name) = (self.name().to_string(), self.flow.targets[self.index].name.clone());
        let acked = w
            .queue
            .off_thread(move |q| {
                let batch: Vec<(u64, Option<(&str, &str)>)> =
                    items.iter().map(|(seq, v)| (*seq, v.as_ref().map(|(k, v)| (k.as_str(), v.as_str())))).collect();
                q.delivered_batch(&name, &target_name, &batch)
            })
            .await;
        if let Err(e) = acked {
            warn!(flow = %self.name(), target = %self.connector(), records = seqs.len(), error = %e,
                  "delivered but cannot remove from the outbox");
        }
        for seq in seqs {
            if let Some(head) = self.held.remove(&seq) {
                self.lanes.finish(&head.key);
            }
        }
    }

    /// Sends the next ready lane's head, unless it is stale.
    async fn dispatch(
        &mut self,
        slot: crate::target::quota::Slot,
        in_flight: &mut JoinSet<(u64, Answer)>,
        w: &Workers,
    ) {
        let Some((key, seq)) = self.lanes.next() else { return };
        if self.is_stale(seq, w).await {
            let (name, target_name) = (self.name().to_string(), self.flow.targets[self.index].name.clone());
            let dropped = w.queue.off_thread(move |q| q.drop_stale(&name, &target_name, seq)).await;
            if let Err(e) = dropped {
                warn!(flow = %self.name(), error = %e, "cannot drop a stale record; will try again");
                self.lanes.release(&key);
                return;
            }
            w.metrics.stale.with_label_values(&[self.name(), self.connector()]).inc();
            let head = self.held.remove(&seq).expect("a lane head is held");
            info!(flow = %self.name(), target = %self.connector(), correlation_id = %head.item.envelope.correlation_id,
                  ordering_key = %key, version = head.item.version.as_deref().unwrap_or(""), "stale record not delivered");
            self.lanes.finish(&key);
            return;
        }
        let item = self.held[&seq].item.clone();
        let (flow, index) = (self.flow.clone(), self.index);
        // The span carries the correlation id into every log line of the attempt
        // (auth refreshes, transport errors) as well as the worker's own.
        let span = tracing::info_span!("deliver", flow = %self.name(), target = %self.connector(),
                                       correlation_id = %item.envelope.correlation_id, seq);
        in_flight.spawn(
            async move {
                let target = &flow.targets[index];
                let _permit = target.quota.admit(slot).await;
                (seq, target.sink.send(&item).await)
            }
            .instrument(span),
        );
    }

    /// Whether the item is older than the version its target already has for its key,
    /// or (with `delivery.conflate`) than a newer one queued behind it.
    async fn is_stale(&self, seq: u64, w: &Workers) -> bool {
        let item = &self.held[&seq].item;
        let (Some(version), Some(key)) = (item.version.clone(), item.ordering_key.clone()) else { return false };
        if self.flow.config.spec.delivery.conflate
            && let Some(newest) = self.lanes.newest_behind(&key).and_then(|n| self.held.get(&n))
            && newest.item.version.as_deref().is_some_and(|v| compare_versions(v, &version) != std::cmp::Ordering::Less)
        {
            return true;
        }
        let (name, target_name) = (self.name().to_string(), self.flow.targets[self.index].name.clone());
        let last = w.queue.off_thread(move |q| q.last_version(&name, &target_name, &key)).await;
        matches!(last, Ok(Some(last)) if compare_versions(&version, &last) == std::cmp::Ordering::Less)
    }

    /// Acts on an attempt's answer; returns when to try again if it should be.
    async fn settle(&mut self, seq: u64, answer: Answer, w: &Workers) -> Option<(Instant, String)> {
        let (name, connector) = (self.name().to_string(), self.connector().to_string());
        let target = &self.flow.targets[self.index];
        let policy = &self.flow.config.spec.delivery.retry;
        if let Answer::Response { quota, .. } = &answer {
            target.quota.observe(quota);
            if quota.throttled {
                w.metrics.throttled.with_label_values(&[&name, &connector]).inc();
            }
        }
        let verdict = target.sink.verdict(&answer);
        let status = match &answer {
            Answer::Response { status, .. } => Some(status.as_u16()),
            Answer::Transport(_) | Answer::Credentials(_) | Answer::Database(_) => None,
        };
        let head = self.held.get_mut(&seq).expect("an item in flight is held");
        head.attempts.push(Attempt {
            at_ms: now_ms(),
            status,
            outcome: match &verdict {
                Verdict::Delivered => "delivered".into(),
                Verdict::Retry { reason, .. } | Verdict::Reject { reason, .. } => reason.clone(),
            },
        });
        let (reason, message) = match verdict {
            Verdict::Delivered => {
                let item = &head.item;
                // Its lane stays busy until `acknowledge` has recorded it (and its version,
                // which the stale guard of the lane's next item reads).
                self.delivered.push(seq);
                let latency = (now_ms() - item.envelope.received_at_ms).max(0) as f64 / 1000.0;
                w.metrics.delivered.with_label_values(&[&name, &connector]).inc();
                w.metrics.latency.with_label_values(&[&name, &connector]).observe(latency);
                *target.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                target.sink.health().succeeded();
                *target.last_delivered_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(jiff::Timestamp::now());
                // Where the target put it (a `Location`), so the log line finds the record there.
                let location = match &answer {
                    Answer::Response { location, .. } => location.as_deref(),
                    _ => None,
                };
                info!(flow = %name, target = %connector, correlation_id = %item.envelope.correlation_id,
                      idempotency_key = %item.idempotency_key, attempts = head.attempts.len(), location, "delivered");
                return None;
            }
            Verdict::Reject { reason, category } => {
                target.sink.health().failed(category, &reason);
                let dead =
                    if category == ErrorCategory::Auth { DeadLetterReason::Auth } else { DeadLetterReason::Rejected };
                (dead, reason)
            }
            Verdict::Retry { after, reason, category } => {
                target.sink.health().failed(category, &reason);
                *target.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
                let attempts = head.attempts.len() as u32;
                if attempts >= policy.max_attempts {
                    (DeadLetterReason::RetriesExhausted, format!("{attempts} attempts failed; last: {reason}"))
                } else {
                    w.metrics.retries.with_label_values(&[&name, &connector]).inc();
                    let delay = backoff(policy, attempts, after);
                    warn!(flow = %name, target = %connector, correlation_id = %head.item.envelope.correlation_id,
                          attempt = attempts, retry_in_ms = delay.as_millis() as u64, reason = %reason, "delivery failed; will retry");
                    return Some((Instant::now() + delay, head.key.clone()));
                }
            }
        };
        let dead = DeadLetter {
            envelope: head.item.envelope.clone(),
            target: Some(self.flow.targets[self.index].name.clone()),
            reason,
            message: message.clone(),
            status,
            response_body: match &answer {
                Answer::Response { body, .. } if !body.is_empty() => Some(body.clone()),
                _ => None,
            },
            attempts: head.attempts.clone(),
            dead_lettered_at_ms: now_ms(),
        };
        let correlation_id = head.item.envelope.correlation_id.clone();
        let key = head.key.clone();
        let (flow_name, target_name) = (name.clone(), self.flow.targets[self.index].name.clone());
        let stored = w.queue.off_thread(move |q| q.dead_letter(&flow_name, &target_name, seq, &dead)).await;
        match stored {
            Ok(id) => {
                w.metrics.dead_lettered.with_label_values(&[&name, reason.as_str()]).inc();
                warn!(flow = %name, target = %connector, correlation_id = %correlation_id,
                      dead_letter = id, reason = reason.as_str(), message = %message, "record dead-lettered");
                self.held.remove(&seq);
                self.lanes.finish(&key);
                None
            }
            Err(e) => {
                // Keep the item: it is attempted again rather than lost.
                warn!(flow = %name, target = %connector, error = %e, "cannot dead-letter; the record stays queued");
                Some((Instant::now() + IDLE, key))
            }
        }
    }
}
