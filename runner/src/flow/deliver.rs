//! The delivery worker of one target: outbox items go out in per-key lanes (same
//! ordering key: one at a time, in arrival order; different keys: concurrently, within
//! the target Connector's quota). A record waiting to retry holds back only its own key.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use tokio::{task::JoinSet, time::Instant};
use tracing::{Instrument, debug, info, warn};

use super::{Flow, Workers, lanes::Lanes};
use crate::{
    attempt::{self, Next, Tally, refusal, whole_answer, within_quota},
    metrics::TargetLabels,
    protocol::{Answer, ErrorCategory, Verdict},
    queue::{Attempt, DeadLetter, DeadLetterReason, DeliveryItem, Take, compare_versions, now_ms},
    quota::Slot,
};
use entrepot_api::resource::RetrySpec;

/// Items read from the outbox at a time.
const LOAD_BATCH: usize = 500;
/// Items held in memory per target; the rest wait on disk. Bytes are bounded too, by
/// `spec.runner.queue.maxHeldBytes`.
const MAX_HELD: usize = 5_000;
const IDLE: Duration = Duration::from_secs(1);
/// How long a stopping runner waits for its attempts in flight.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);
/// Target-wide failures in a row (5xx, no answer) after which the next success means the
/// target is back: every retry waiting out its backoff goes at once, within the quota,
/// so an outage's backlog drains at the rate the target grants, not at the backoff's.
const OUTAGE_STREAK: u32 = 3;

/// An item being delivered, with its attempts so far.
struct Head {
    key: String,
    /// Shared with the attempt in flight, not copied.
    item: Arc<DeliveryItem>,
    /// [`DeliveryItem::size`], counted in [`Worker::held_bytes`].
    size: usize,
    attempts: Vec<Attempt>,
    /// The last version delivered for its key when it was loaded (read with the batch,
    /// so the stale guard costs no queue read per item).
    last_delivered: Option<String>,
}

/// Runs until shutdown. Items in flight at shutdown stay in the outbox and go again
/// after a restart, with the same idempotency key.
pub async fn run_delivery(flow: Arc<Flow>, index: usize, mut w: Workers) {
    let mut worker = Worker {
        flow: flow.clone(),
        index,
        lanes: Lanes::default(),
        held: HashMap::new(),
        held_bytes: 0,
        delivered: Vec::new(),
        acked_versions: HashMap::new(),
        loaded_up_to: 0,
        claims: 0,
        failing: 0,
        recovered: false,
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
                if std::mem::take(&mut worker.recovered) && !retries.is_empty() {
                    info!(flow = %worker.name(), target = %worker.connector(), waiting = retries.len(),
                          "target answers again after an outage; waiting retries go now");
                    for key in std::mem::take(&mut retries).into_values() {
                        worker.lanes.release(&key);
                    }
                }
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
            _ = w.shutdown.changed() => {
                worker.drain(&mut in_flight, &w).await;
                return;
            }
        }
    }
}

struct Worker {
    flow: Arc<Flow>,
    index: usize,
    lanes: Lanes,
    held: HashMap<u64, Head>,
    /// What the held items hold ([`Head::size`]), kept within the flow's
    /// `runner.queue.maxHeldBytes`: a backlog of large orders after an outage waits on
    /// disk, not in memory.
    held_bytes: usize,
    /// Delivered items not yet removed from the outbox.
    delivered: Vec<u64>,
    /// The versions this worker recorded as delivered since it loaded the items still
    /// held with the same key: with [`Head::last_delivered`], what the queue holds.
    acked_versions: HashMap<String, String>,
    loaded_up_to: u64,
    /// The queue's [`crate::queue::QueueBackend::claims`] when this worker last loaded:
    /// when it changes (a shared queue gave this runner other partitions), loading starts
    /// again from the beginning.
    claims: u64,
    /// Target-wide failures (5xx, no answer) since the last success.
    failing: u32,
    /// A success ended an outage (`OUTAGE_STREAK` failures in a row): release the retries.
    recovered: bool,
}

impl Worker {
    fn name(&self) -> &str {
        self.flow.name()
    }

    fn connector(&self) -> &str {
        self.flow.targets[self.index].sink.connector()
    }

    /// The labels of this target's metrics.
    fn labels(&self) -> TargetLabels<'_> {
        TargetLabels { flow: self.name(), target: &self.flow.targets[self.index].name, connector: self.connector() }
    }

    fn has_ready(&self) -> bool {
        self.lanes.has_ready()
    }

    /// Reads new outbox items into the lanes, as many as the count and byte budgets
    /// leave room for; returns whether more may be waiting on disk (then the worker
    /// loads again as soon as there is room).
    async fn load(&mut self, w: &Workers) -> bool {
        let budget = usize::try_from(self.flow.config.spec.runner.queue.max_held_bytes).unwrap_or(usize::MAX);
        if self.lanes.len() >= MAX_HELD || self.held_bytes >= budget {
            return true;
        }
        let take = Take { items: LOAD_BATCH.min(MAX_HELD - self.lanes.len()), bytes: budget - self.held_bytes };
        let lanes = &self.lanes;
        self.acked_versions.retain(|key, _| lanes.holds(key));
        let claims = w.queue.claims(self.name());
        if claims != self.claims {
            self.claims = claims;
            self.loaded_up_to = 0;
        }
        let (name, target_name, after) =
            (self.name().to_string(), self.flow.targets[self.index].name.clone(), self.loaded_up_to);
        // The items and, in the same blocking call, the last version delivered for each
        // versioned item's key.
        let batch = w
            .queue
            .off_thread(move |q| {
                let items = q.outbox_after(&name, &target_name, after, take)?;
                items
                    .into_iter()
                    .map(|(seq, item)| {
                        let last = match (&item.ordering_key, &item.version) {
                            (Some(key), Some(_)) => q.last_version(&name, &target_name, key)?,
                            _ => None,
                        };
                        Ok((seq, item, last))
                    })
                    .collect::<Result<Vec<_>, crate::queue::QueueError>>()
            })
            .await;
        match batch {
            Ok(batch) => {
                let full = batch.len() == take.items
                    || batch.iter().map(|(_, item, _)| item.size()).sum::<usize>() >= take.bytes;
                for (seq, item, last_delivered) in batch {
                    self.loaded_up_to = seq;
                    if self.held.contains_key(&seq) {
                        // Read again after a change of partitions: already here.
                        continue;
                    }
                    // Without an ordering key every record is its own lane.
                    let key = item.ordering_key.clone().unwrap_or_else(|| format!("#{seq}"));
                    self.lanes.push(&key, seq);
                    let size = item.size();
                    self.held_bytes += size;
                    self.held
                        .insert(seq, Head { key, item: Arc::new(item), size, attempts: Vec::new(), last_delivered });
                }
                self.show_held(w);
                full
            }
            Err(e) => {
                warn!(flow = %self.name(), target = %self.connector(), error = %e, "cannot read the outbox; retrying");
                false
            }
        }
    }

    /// At shutdown: waits (at most [`SHUTDOWN_DRAIN`]) for the attempts in flight, settles
    /// them and removes what was delivered, so what the target took is not sent again
    /// (by this runner after a restart, or by another that takes its partitions over).
    async fn drain(&mut self, in_flight: &mut JoinSet<(u64, Answer)>, w: &Workers) {
        let settled = tokio::time::timeout(SHUTDOWN_DRAIN, async {
            while let Some(joined) = in_flight.join_next().await {
                let (seq, answer) = joined.expect("a delivery attempt panicked");
                self.settle(seq, answer, w).await;
            }
        })
        .await;
        if settled.is_err() {
            warn!(flow = %self.name(), target = %self.connector(), in_flight = in_flight.len(),
                  "attempts still in flight at shutdown; they go again, with the same idempotency keys");
        }
        self.acknowledge(w).await;
    }

    /// Removes the delivered items from the outbox in one transaction and frees their
    /// lanes. If the store fails the items stay in the outbox and go again, with the same
    /// idempotency key.
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
                q.delivered_batch(&name, &target_name, &batch).map(|()| items)
            })
            .await;
        match acked {
            Ok(items) => {
                for (_, version) in items {
                    if let Some((key, version)) = version {
                        let newer = self
                            .acked_versions
                            .get(&key)
                            .is_none_or(|last| compare_versions(&version, last) == std::cmp::Ordering::Greater);
                        if newer {
                            self.acked_versions.insert(key, version);
                        }
                    }
                }
            }
            Err(e) => {
                warn!(flow = %self.name(), target = %self.connector(), records = seqs.len(), error = %e,
                      "delivered but cannot remove from the outbox; they go again, with the same idempotency keys");
                // Read the outbox again from its start, so they are not left behind the
                // worker's place (a shared queue does not restart to find them).
                self.loaded_up_to = 0;
            }
        }
        for seq in seqs {
            self.finish(seq);
        }
        self.show_held(w);
    }

    /// The item is done with (delivered, stale or dead-lettered): frees its memory and
    /// its lane.
    fn finish(&mut self, seq: u64) {
        if let Some(head) = self.held.remove(&seq) {
            self.held_bytes -= head.size;
            self.lanes.finish(&head.key);
        }
    }

    fn show_held(&self, w: &Workers) {
        w.metrics.delivery.held(self.labels(), self.held_bytes);
    }

    /// Sends the next ready lane's head, unless it is stale.
    async fn dispatch(&mut self, slot: Slot, in_flight: &mut JoinSet<(u64, Answer)>, w: &Workers) {
        let Some((key, seq)) = self.lanes.next() else { return };
        if !w.queue.holds(self.name(), seq) {
            // Its partition went to another runner, which delivers it: forget it here.
            debug!(flow = %self.name(), target = %self.connector(), seq, "item left to the runner that holds it now");
            self.finish(seq);
            self.show_held(w);
            return;
        }
        if self.is_stale(seq) {
            let (name, target_name) = (self.name().to_string(), self.flow.targets[self.index].name.clone());
            let dropped = w.queue.off_thread(move |q| q.drop_stale(&name, &target_name, seq)).await;
            if let Err(e) = dropped {
                warn!(flow = %self.name(), error = %e, "cannot drop a stale record; will try again");
                self.lanes.release(&key);
                return;
            }
            w.metrics.delivery.stale(self.labels());
            self.flow.targets[self.index].counters.stale();
            let head = &self.held[&seq];
            info!(flow = %self.name(), target = %self.connector(), correlation_id = %head.item.envelope.correlation_id,
                  ordering_key = %key, version = head.item.version.as_deref().unwrap_or(""), "stale record not delivered");
            self.finish(seq);
            self.show_held(w);
            return;
        }
        let item = self.held[&seq].item.clone();
        let (flow, index) = (self.flow.clone(), self.index);
        // The span carries the correlation id into every log line of the attempt
        // (auth refreshes, transport errors) as well as the worker's own. One span per
        // attempt, in the record's trace: a retry is a sibling of the first try.
        let span = tracing::info_span!("deliver", flow = %self.name(), target = %self.connector(),
                                       correlation_id = %item.envelope.correlation_id, seq);
        crate::telemetry::continue_trace(&span, item.envelope.trace_parent.as_deref());
        in_flight.spawn(
            async move {
                let target = &flow.targets[index];
                (seq, within_quota(&target.quota, slot, target.sink.send(&item), whole_answer).await)
            }
            .instrument(span),
        );
    }

    /// Whether the item is older than the version its target already has for its key,
    /// or (with `delivery.conflate`) than a newer one queued behind it.
    fn is_stale(&self, seq: u64) -> bool {
        let head = &self.held[&seq];
        let (Some(version), Some(key)) = (&head.item.version, &head.item.ordering_key) else { return false };
        if self.flow.config.spec.delivery.conflate
            && let Some(newest) = self.lanes.newest_behind(key).and_then(|n| self.held.get(&n))
            && newest.item.version.as_deref().is_some_and(|v| compare_versions(v, version) != std::cmp::Ordering::Less)
        {
            return true;
        }
        // What the queue holds for the key: read when the item was loaded, or recorded
        // by this worker since.
        let older = |last: &String| compare_versions(version, last) == std::cmp::Ordering::Less;
        head.last_delivered.as_ref().is_some_and(older) || self.acked_versions.get(key).is_some_and(older)
    }

    /// Acts on an attempt's answer; returns when to try again if it should be.
    async fn settle(&mut self, seq: u64, answer: Answer, w: &Workers) -> Option<(Instant, String)> {
        let target = &self.flow.targets[self.index];
        let verdict = target.sink.verdict(&answer);
        let head = self.held.get_mut(&seq).expect("an item in flight is held");
        head.attempts.push(Attempt {
            at_ms: now_ms(),
            status: match &answer {
                Answer::Response { status, .. } => Some(status.as_u16()),
                Answer::Transport(_) | Answer::Credentials(_) | Answer::Database(_) => None,
            },
            outcome: match &verdict {
                Verdict::Delivered => "delivered".into(),
                Verdict::Retry { reason, .. } | Verdict::Reject { reason, .. } => reason.clone(),
            },
            throttled: verdict.throttled(),
        });
        let tally = Tally::of(&head.attempts, now_ms());
        let settlement = decide(&verdict, tally, &self.flow.config.spec.delivery.retry, Instant::now());
        self.apply(seq, &answer, verdict, settlement, w).await
    }

    /// The one effect step of a settled attempt (its history recorded): the Connector's
    /// health, the target's counters and metrics, and the queue write the settlement
    /// calls for.
    async fn apply(
        &mut self,
        seq: u64,
        answer: &Answer,
        verdict: Verdict,
        settlement: Settlement,
        w: &Workers,
    ) -> Option<(Instant, String)> {
        let (name, connector) = (self.name().to_string(), self.connector().to_string());
        let target = &self.flow.targets[self.index];
        let labels = TargetLabels { flow: &name, target: &target.name, connector: &connector };
        w.metrics.delivery.attempted(labels, &verdict);
        if let Answer::Response { quota, .. } = answer
            && quota.throttled
        {
            w.metrics.delivery.throttled(labels);
            target.counters.throttled();
        }
        let head = self.held.get_mut(&seq).expect("an item in flight is held");
        let status = head.attempts.last().and_then(|a| a.status);
        match &verdict {
            Verdict::Delivered => {
                target.sink.health().succeeded();
                self.recovered |= self.failing >= OUTAGE_STREAK;
                self.failing = 0;
            }
            Verdict::Retry { reason, category, .. } => {
                target.sink.health().failed(*category, reason);
                target.counters.failed(reason);
                if matches!(category, ErrorCategory::Server | ErrorCategory::Unreachable) {
                    self.failing += 1;
                }
            }
            Verdict::Reject { reason, category } => target.sink.health().failed(*category, reason),
        }
        let give_up = match settlement {
            Settlement::Ack => {
                let item = &head.item;
                // Its lane stays busy until `acknowledge` has recorded it (and its version,
                // which the stale guard of the lane's next item reads).
                self.delivered.push(seq);
                w.metrics.delivery.delivered(labels, item.envelope.received_at_ms, now_ms(), self.flow.is_inventory());
                target.counters.delivered();
                // Where the target put it (a `Location`), so the log line finds the record there.
                let location = match answer {
                    Answer::Response { location, .. } => location.as_deref(),
                    _ => None,
                };
                info!(flow = %name, target = %connector, correlation_id = %item.envelope.correlation_id,
                      idempotency_key = %item.idempotency_key, attempts = head.attempts.len(), location, "delivered");
                return None;
            }
            Settlement::RetryAt(when) => {
                w.metrics.delivery.retried(labels);
                target.counters.retried();
                let delay = when.saturating_duration_since(Instant::now());
                let reason = head.attempts.last().map(|a| a.outcome.as_str()).unwrap_or_default();
                warn!(flow = %name, target = %connector, correlation_id = %head.item.envelope.correlation_id,
                      attempt = head.attempts.len(), retry_in_ms = delay.as_millis() as u64, reason = %reason, "delivery failed; will retry");
                return Some((when, head.key.clone()));
            }
            Settlement::DeadLetter(give_up) => give_up,
        };
        let dead = dead_letter(head, target.name.clone(), give_up.clone(), status, answer);
        let target_name = target.name.clone();
        let correlation_id = head.item.envelope.correlation_id.clone();
        let key = head.key.clone();
        let (flow_name, dead_target) = (name.clone(), target_name.clone());
        let stored = w.queue.off_thread(move |q| q.dead_letter(&flow_name, &dead_target, seq, &dead)).await;
        match stored {
            Ok(id) => {
                let labels = TargetLabels { flow: &name, target: &target_name, connector: &connector };
                w.metrics.count_dead_lettered(&name, Some(labels), give_up.reason, 1);
                warn!(flow = %name, target = %connector, correlation_id = %correlation_id,
                      dead_letter = id, reason = give_up.reason.as_str(), message = %give_up.message, "record dead-lettered");
                self.finish(seq);
                self.show_held(w);
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

/// What becomes of an item after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Settlement {
    /// The target has it: acknowledge it.
    Ack,
    /// Try again at this time.
    RetryAt(Instant),
    /// Give up on it: dead-letter it.
    DeadLetter(GiveUp),
}

/// Why an item is dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq)]
struct GiveUp {
    reason: DeadLetterReason,
    message: String,
}

/// The settlement of an attempt whose answer meant `verdict`, the item's attempts so far
/// (this one included) being `tally`, under the flow's retry `policy`, decided at `now`.
/// Pure: the effects follow in `Worker::apply`.
fn decide(verdict: &Verdict, tally: Tally, policy: &RetrySpec, now: Instant) -> Settlement {
    match (attempt::decide(policy, tally, verdict), verdict) {
        (Next::Done, _) => Settlement::Ack,
        (Next::RetryIn(delay), _) => Settlement::RetryAt(now + delay),
        (Next::Refused, Verdict::Reject { reason, category }) => {
            Settlement::DeadLetter(GiveUp { reason: refusal(*category), message: reason.clone() })
        }
        (Next::Exhausted, Verdict::Retry { reason, .. }) => Settlement::DeadLetter(GiveUp {
            reason: DeadLetterReason::RetriesExhausted,
            message: match tally.throttles {
                0 => format!("{} attempts failed; last: {reason}", tally.failures),
                n => format!("{} attempts failed (and {n} throttled); last: {reason}", tally.failures),
            },
        }),
        (Next::ThrottledTooLong, Verdict::Retry { reason, .. }) => Settlement::DeadLetter(GiveUp {
            reason: DeadLetterReason::ThrottledTooLong,
            message: format!(
                "throttled for {} ({} throttled attempts, past delivery.retry.maxThrottledFor); last: {reason}",
                entrepot_api::resource::Duration::from_secs(tally.throttled_for.as_secs()),
                tally.throttles
            ),
        }),
        // `attempt::decide` refuses only a rejection and gives up only on a retry.
        (Next::Refused | Next::Exhausted | Next::ThrottledTooLong, _) => unreachable!("{verdict:?}"),
    }
}

/// The dead letter of the item `head` of the target named `target`, given up on as
/// `give_up` after an answer with `status` (its body kept when it has one).
fn dead_letter(head: &Head, target: String, give_up: GiveUp, status: Option<u16>, answer: &Answer) -> DeadLetter {
    DeadLetter {
        envelope: head.item.envelope.clone(),
        target: Some(target),
        reason: give_up.reason,
        message: give_up.message,
        status,
        response_body: match answer {
            Answer::Response { body, .. } if !body.is_empty() => Some(body.clone()),
            _ => None,
        },
        attempts: head.attempts.clone(),
        dead_lettered_at_ms: now_ms(),
    }
}

#[cfg(test)]
#[path = "deliver_tests.rs"]
mod tests;
