//! The queue file's format version, and the migration from format 1.
//!
//! Format 1 (no version stored) named a record's target by its position in the flow's
//! `spec.targets`: reordering the targets while records were queued sent them to the
//! wrong system. Format 2 names it by the target's name. A format-1 queue is migrated
//! when it is opened, in one transaction, by mapping each flow's positions to the names
//! of its current targets. This assumes the targets were not reordered across the
//! upgrade (the runner of the previous version would have misrouted them anyway). When a
//! position cannot be mapped (a flow this runner does not carry, a target it no longer
//! has), the queue is refused with what to do; nothing is changed.

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde_json::Value;

use super::{DEAD, INBOX, META, OUTBOX, VERSIONS, encode};
use crate::queue::{QueueError, TargetNames};

/// The format this version writes.
pub(super) const FORMAT: u64 = 2;
/// Where the format is stored in `META`.
const FORMAT_KEY: &str = "format_version";
/// Format 1's outbox: (flow, target index, seq) → delivery item JSON.
const OUTBOX_V1: TableDefinition<(&str, u32, u64), &[u8]> = TableDefinition::new("outbox");
/// Format 1's last versions: (flow, target index, ordering key) → version.
const VERSIONS_V1: TableDefinition<(&str, u32, &str), &str> = TableDefinition::new("versions");

/// Brings the queue in `tx` to [`FORMAT`]: stamps a new file, migrates a format-1 one
/// with `targets`, refuses one written by a newer version. `Err` is the reason, for
/// [`QueueError::Format`].
pub(super) fn to_current(tx: &WriteTransaction, targets: &TargetNames) -> Result<(), QueueError> {
    let stored = tx.open_table(META)?.get(FORMAT_KEY)?.map(|v| v.value());
    match stored {
        Some(FORMAT) => return Ok(()),
        Some(newer) if newer > FORMAT => {
            return Err(format(format!(
                "it is in queue format {newer}, written by a newer Entrepot; this one reads format {FORMAT}: run the \
                 newer version, or drain the queue with it before downgrading"
            )));
        }
        _ => from_v1(tx, targets)?,
    }
    tx.open_table(META)?.insert(FORMAT_KEY, FORMAT)?;
    Ok(())
}

/// The path is filled in by [`super::RedbQueue::open_migrating`].
fn format(message: String) -> QueueError {
    QueueError::Format { path: String::new(), message }
}

/// The name of target `index` of `flow`, or why there is none.
fn name_of<'a>(targets: &'a TargetNames, flow: &str, index: u64) -> Result<&'a str, QueueError> {
    let known = targets.get(flow);
    match known.and_then(|names| names.get(index as usize)) {
        Some(name) => Ok(name),
        None => {
            let why = match known {
                None => "this runner does not carry that flow".to_string(),
                Some(names) => format!("the flow now has {} targets", names.len()),
            };
            Err(format(format!(
                "it was written by an earlier Entrepot that named targets by position, and holds records of \
                 SyncFlow {flow} for spec.targets[{index}], which cannot be mapped to a target name ({why}). Start \
                 this version with the flow's targets as they were (same order) to migrate it, or drain the queue \
                 with the previous version first, or move the file away (its records are then lost)"
            )))
        }
    }
}

/// Replaces a target index at `slot` (when there is one) by the target's name.
fn rename(slot: Option<&mut Value>, targets: &TargetNames, flow: &str) -> Result<(), QueueError> {
    if let Some(slot) = slot
        && let Some(index) = slot.as_u64()
    {
        *slot = Value::String(name_of(targets, flow, index)?.to_string());
    }
    Ok(())
}

/// Renames the targets an envelope's replay names (its target, and each past failure's).
fn rename_replay(envelope: &mut Value, targets: &TargetNames, flow: &str) -> Result<(), QueueError> {
    let Some(replay) = envelope.get_mut("replay") else { return Ok(()) };
    rename(replay.get_mut("target"), targets, flow)?;
    for failure in replay.get_mut("history").and_then(Value::as_array_mut).into_iter().flatten() {
        rename(failure.get_mut("target"), targets, flow)?;
    }
    Ok(())
}

fn parse(key: impl std::fmt::Debug, bytes: &[u8]) -> Result<Value, QueueError> {
    serde_json::from_slice(bytes).map_err(|source| QueueError::Decode { key: format!("{key:?}"), source })
}

fn from_v1(tx: &WriteTransaction, targets: &TargetNames) -> Result<(), QueueError> {
    let tables: Vec<String> = tx.list_tables()?.map(|t| t.name().to_string()).collect();
    let has = |name: &str| tables.iter().any(|t| t == name);
    if has(OUTBOX_V1.name()) {
        let mut moved = Vec::new();
        for entry in tx.open_table(OUTBOX_V1)?.iter()? {
            let (k, v) = entry?;
            let (flow, index, seq) = k.value();
            let mut item = parse((flow, index, seq), v.value())?;
            let name = name_of(targets, flow, u64::from(index))?.to_string();
            item["target"] = Value::String(name.clone());
            rename_replay(&mut item["envelope"], targets, flow)?;
            moved.push((flow.to_string(), name, seq, encode(&item)));
        }
        let mut outbox = tx.open_table(OUTBOX)?;
        for (flow, name, seq, item) in &moved {
            outbox.insert((flow.as_str(), name.as_str(), *seq), item.as_slice())?;
        }
        tx.delete_table(OUTBOX_V1)?;
    }
    if has(VERSIONS_V1.name()) {
        let mut moved = Vec::new();
        for entry in tx.open_table(VERSIONS_V1)?.iter()? {
            let (k, v) = entry?;
            let (flow, index, key) = k.value();
            let name = name_of(targets, flow, u64::from(index))?;
            moved.push((flow.to_string(), name.to_string(), key.to_string(), v.value().to_string()));
        }
        let mut versions = tx.open_table(VERSIONS)?;
        for (flow, name, key, version) in &moved {
            versions.insert((flow.as_str(), name.as_str(), key.as_str()), version.as_str())?;
        }
        tx.delete_table(VERSIONS_V1)?;
    }
    // Dead letters name the target they failed at; replays in the inbox and the dead
    // letters name the one they go back to.
    let mut rewritten = Vec::new();
    for entry in tx.open_table(DEAD)?.iter()? {
        let (k, v) = entry?;
        let (flow, seq) = k.value();
        let mut letter = parse((flow, seq), v.value())?;
        rename(letter.get_mut("target"), targets, flow)?;
        rename_replay(&mut letter["envelope"], targets, flow)?;
        rewritten.push((flow.to_string(), seq, encode(&letter)));
    }
    let mut dead = tx.open_table(DEAD)?;
    for (flow, seq, letter) in &rewritten {
        dead.insert((flow.as_str(), *seq), letter.as_slice())?;
    }
    let mut rewritten = Vec::new();
    for entry in tx.open_table(INBOX)?.iter()? {
        let (k, v) = entry?;
        let (flow, seq) = k.value();
        let mut envelope = parse((flow, seq), v.value())?;
        if envelope.get("replay").is_some() {
            rename_replay(&mut envelope, targets, flow)?;
            rewritten.push((flow.to_string(), seq, encode(&envelope)));
        }
    }
    let mut inbox = tx.open_table(INBOX)?;
    for (flow, seq, envelope) in &rewritten {
        inbox.insert((flow.as_str(), *seq), envelope.as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "migrate_tests.rs"]
mod tests;
