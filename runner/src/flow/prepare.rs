//! The prepare worker: inbox → map → keys → outbox (or dead letters, or dropped as a
//! duplicate), a batch per transaction; and the same mapping at intake, for a record
//! whose flow needs nothing else before it (`Flow::prepare_at_intake`).

use std::{sync::Arc, time::Duration};

use jaq_json::Val;
use tracing::{debug, warn};

use super::{Flow, Refetched, Refetcher, Workers, wait};
use crate::{
    availability,
    metrics::Metrics,
    queue::{DeadLetter, DeadLetterReason, DeliveryItem, Envelope, PrepareOutcome, Prepared, now_ms},
};
use entrepot_api::{
    mapping::{MapError, from_value, parse_json, to_json, to_value},
    resource::ChannelAvailability,
};

const BATCH: usize = 64;
const IDLE: Duration = Duration::from_secs(1);

/// Runs until shutdown.
pub async fn run_prepare(flow: Arc<Flow>, mut w: Workers) {
    let name = flow.name().to_string();
    loop {
        #[cfg(test)]
        if flow.fail_prepare.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("test hook: the prepare worker of {name} fails");
        }
        let batch = {
            let name = name.clone();
            w.queue.off_thread(move |q| q.inbox(&name, BATCH)).await
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                warn!(flow = %name, error = %e, "cannot read the inbox; retrying");
                if !wait(&flow.wake, &mut w.shutdown, IDLE).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            if !wait(&flow.wake, &mut w.shutdown, IDLE).await {
                return;
            }
            continue;
        }
        // Thin webhooks: the full records first, in order; a shutdown leaves the rest of
        // the batch in the inbox.
        let (batch, refused) = match &flow.refetch {
            Some(refetcher) => refetch_batch(refetcher, batch, &mut w.shutdown).await,
            None => (batch, Default::default()),
        };
        if batch.is_empty() {
            return;
        }
        // Map the whole batch, then move it on in one transaction: one fsync per batch
        // rather than per record.
        let mut refused = refused;
        let prepared: Vec<(u64, Prepared)> = batch
            .iter()
            .map(|(seq, envelope)| {
                let span = tracing::info_span!("prepare", flow = %name, correlation_id = %envelope.correlation_id, seq);
                crate::telemetry::continue_trace(&span, envelope.trace_parent.as_deref());
                let outcome = match refused.remove(seq) {
                    Some(dead) => Prepared::DeadLetter(dead),
                    None => span.in_scope(|| prepare_record(&flow, envelope)),
                };
                (*seq, outcome)
            })
            .collect();
        let reasons: Vec<Option<DeadLetterReason>> = prepared
            .iter()
            .map(|(_, p)| match p {
                Prepared::DeadLetter(d) => Some(d.reason),
                Prepared::Deliver { .. } => None,
            })
            .collect();
        let outcomes = {
            let name = name.clone();
            w.queue.off_thread(move |q| q.prepare_batch(&name, prepared)).await
        };
        let outcomes = match outcomes {
            Ok(o) => o,
            Err(e) => {
                warn!(flow = %name, records = batch.len(), error = %e, "cannot move records to the outbox; will retry");
                if !wait(&flow.wake, &mut w.shutdown, IDLE).await {
                    return;
                }
                continue;
            }
        };
        for (((_, envelope), outcome), reason) in batch.iter().zip(outcomes).zip(reasons) {
            report(&w.metrics, &name, &envelope.correlation_id, outcome, reason);
        }
        for t in &flow.targets {
            t.wake.notify_one();
        }
        if *w.shutdown.borrow() {
            return;
        }
    }
}

/// Logs and counts what became of a prepared record of flow `name`; `reason` is its
/// dead letter's, when it was one.
pub fn report(
    metrics: &Metrics,
    name: &str,
    correlation_id: &str,
    outcome: PrepareOutcome,
    reason: Option<DeadLetterReason>,
) {
    match outcome {
        PrepareOutcome::Queued => debug!(flow = %name, correlation_id, "record queued for delivery"),
        PrepareOutcome::Duplicate => {
            debug!(flow = %name, correlation_id, "duplicate idempotency key dropped");
            metrics.count_duplicates(name, "idempotency_key", 1);
        }
        PrepareOutcome::DeadLettered => {
            let reason = reason.unwrap_or(DeadLetterReason::Mapping);
            warn!(flow = %name, correlation_id, reason = reason.as_str(), "record dead-lettered at mapping");
            metrics.count_dead_lettered(name, None, reason, 1);
        }
    }
}

impl Flow {
    /// The record mapped now, at intake, so the webhook's one commit also places it in
    /// the outbox (see `Offer::prepared`); `None` when the flow must first read the full
    /// record (`refetch`): only the prepare worker does that, from the inbox.
    pub fn prepare_at_intake(&self, envelope: &Envelope) -> Option<Prepared> {
        if self.refetch.is_some() {
            return None;
        }
        let span = tracing::debug_span!("prepare", flow = %self.name(), correlation_id = %envelope.correlation_id);
        Some(span.in_scope(|| prepare_record(self, envelope)))
    }
}

/// The batch with each thin payload replaced by the full record, and the deliveries
/// whose refetch failed for good (by sequence number). Stops early on shutdown.
async fn refetch_batch(
    refetcher: &Refetcher,
    batch: Vec<(u64, Envelope)>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> (Vec<(u64, Envelope)>, std::collections::HashMap<u64, DeadLetter>) {
    let mut ready = Vec::with_capacity(batch.len());
    let mut refused = std::collections::HashMap::new();
    for (seq, mut envelope) in batch {
        match refetcher.fetch(&envelope, shutdown).await {
            Refetched::Payload(payload) => envelope.payload = payload,
            Refetched::DeadLetter(dead) => {
                refused.insert(seq, *dead);
            }
            Refetched::Interrupted => break,
        }
        ready.push((seq, envelope));
    }
    (ready, refused)
}

/// Decides what becomes of one record: pure apart from the clock.
pub(crate) fn prepare_record(flow: &Flow, envelope: &Envelope) -> Prepared {
    match try_prepare(flow, envelope) {
        Ok(p) => p,
        Err((reason, message)) => Prepared::DeadLetter(DeadLetter {
            envelope: envelope.clone(),
            target: None,
            reason,
            message,
            status: None,
            response_body: None,
            attempts: Vec::new(),
            dead_lettered_at_ms: now_ms(),
        }),
    }
}

fn try_prepare(flow: &Flow, envelope: &Envelope) -> Result<Prepared, (DeadLetterReason, String)> {
    let canonical = to_canonical(flow, envelope).map_err(|m| (DeadLetterReason::Mapping, m))?;
    // The validation gate: nothing that breaks the canonical schema reaches a target.
    if let (Some(validator), Some(name)) = (&flow.canonical, &flow.config.spec.mapping_ref) {
        let record = to_value(&canonical).map_err(|e| (DeadLetterReason::Mapping, format!("Mapping {name}: {e}")))?;
        if let Err(violations) = validator.check(&record) {
            return Err((DeadLetterReason::SchemaViolation, format!("Mapping {name}: {violations}")));
        }
    }
    deliveries(flow, envelope, canonical).map_err(|m| (DeadLetterReason::Mapping, m))
}

/// The source payload mapped to the canonical record (the payload itself without a
/// mapping).
fn to_canonical(flow: &Flow, envelope: &Envelope) -> Result<Val, String> {
    match (&flow.mapping, &flow.config.spec.mapping_ref) {
        // The mapping reads the payload's bytes once (a plain one only the fields it maps).
        (Some(p), Some(name)) => p.run_json(&envelope.payload).map_err(|e| match e {
            MapError::InvalidJson(_) | MapError::TooDeep(_) => format!("source payload: {e}"),
            e => format!("Mapping {name}: {e}"),
        }),
        _ => parse_json(&envelope.payload).map_err(|e| format!("source payload: {e}")),
    }
}

/// The canonical snapshot as one channel sees it: `available` replaced by the channel's
/// available-to-sell.
fn channel_view(rule: &ChannelAvailability, canonical: &Val) -> Result<Val, String> {
    let mut snapshot = to_value(canonical).map_err(|e| e.to_string())?;
    let quantity = availability::apply(rule, &mut snapshot)?;
    debug!(
        sellable = quantity.sellable,
        safety_stock = quantity.safety_stock,
        available = quantity.available,
        "channel availability"
    );
    Ok(from_value(&snapshot))
}

/// The keys and one delivery item per target for a canonical record.
fn deliveries(flow: &Flow, envelope: &Envelope, canonical: Val) -> Result<Prepared, String> {
    let spec = &flow.config.spec;
    let ordering_key = match &flow.ordering_key {
        Some(p) => Some(p.run_key(&canonical).map_err(|e| format!("spec.delivery.orderingKey: {e}"))?),
        None => None,
    };
    // An upsert puts the key in the target's URL: `..` would address another resource.
    if let Some(key) = ordering_key.as_deref().filter(|k| crate::protocol::is_dot_segment(k)) {
        return Err(format!(
            "spec.delivery.orderingKey: gave `{key}`, which as a URL path segment would leave the target's path; \
             fix the record's key upstream"
        ));
    }
    let version = match &flow.version_key {
        Some(p) => Some(p.run_key(&canonical).map_err(|e| format!("spec.delivery.versionKey: {e}"))?),
        None => None,
    };
    let mut idempotency_key = match &flow.idempotency_key {
        Some(p) => p.run_key(&canonical).map_err(|e| format!("spec.delivery.idempotencyKey: {e}"))?,
        None => envelope.delivery_id.clone().unwrap_or_else(|| envelope.id.clone()),
    };
    // A reconciliation repair re-sends a revision the target may have been sent before
    // (and lost, or had changed by hand): under the same key the target would answer
    // from its idempotency store and change nothing. The repair's own delivery id (a
    // hash of the record) makes a key of its own, still the same for a repeated repair.
    if let (Some(replay), Some(delivery)) = (&envelope.replay, &envelope.delivery_id)
        && replay.dead_letter_id.is_none()
        && flow.idempotency_key.is_some()
    {
        idempotency_key = format!("{idempotency_key}:{delivery}");
    }
    // A replay of a record that failed at one target goes to that target only: the
    // flow's other targets already have it.
    debug!(ordering_key = ordering_key.as_deref().unwrap_or(""), version = version.as_deref().unwrap_or(""),
           idempotency_key = %idempotency_key, "mapped");
    let only = envelope.replay.as_ref().and_then(|r| r.target.as_deref());
    if let Some(t) = only.filter(|t| !flow.targets.iter().any(|target| target.name == *t)) {
        return Err(format!("replayed for target `{t}`, which the flow no longer has: discard this dead letter"));
    }
    let mut items = Vec::with_capacity(flow.targets.len());
    for (index, (target, target_spec)) in flow.targets.iter().zip(&spec.targets).enumerate() {
        if only.is_some_and(|t| t != target.name) {
            continue;
        }
        let record = match &target_spec.availability {
            Some(rule) => {
                channel_view(rule, &canonical).map_err(|e| format!("spec.targets[{index}].availability: {e}"))?
            }
            None => canonical.clone(),
        };
        let body = match (&target.mapping, &target_spec.mapping_ref) {
            (Some(p), Some(name)) => {
                to_json(&p.run(record).map_err(|e| format!("spec.targets[{index}] Mapping {name}: {e}"))?)
            }
            _ => to_json(&record),
        };
        items.push(DeliveryItem {
            envelope: envelope.clone(),
            target: target.name.clone(),
            idempotency_key: idempotency_key.clone(),
            ordering_key: ordering_key.clone(),
            version: version.clone(),
            body: body.into_bytes(),
        });
    }
    let window = spec.delivery.dedup_window.get().as_millis() as i64;
    Ok(Prepared::Deliver { idempotency_key, key_expires_ms: now_ms().saturating_add(window), items })
}
