//! The flow's idempotency keys and the stale guard's last versions, in their buckets,
//! written with compare-and-set so that runners racing on one key agree.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::client::{Latest, encode, failed, latest};
use crate::queue::{QueueError, compare_versions};
use entrepot_api::jetstream::kv_key;

/// What an idempotency key's entry says: which record claimed it.
#[derive(Serialize, Deserialize)]
struct Claim {
    by: String,
}

#[derive(Serialize, Deserialize)]
struct VersionStamp {
    version: String,
}

/// Claims idempotency key `key` for record `claimant`: true when the record may go on
/// (the key was free, is already its own, or the record is a replay).
pub(super) async fn claim(
    keys: &async_nats::jetstream::kv::Store,
    key: &str,
    claimant: &str,
    replay: bool,
) -> Result<bool, QueueError> {
    let entry_key = kv_key(key);
    let value = Bytes::from(serde_json::to_vec(&Claim { by: claimant.to_string() }).expect("JSON"));
    if replay {
        keys.put(&entry_key, value).await.map_err(|e| failed("record an idempotency key", e))?;
        return Ok(true);
    }
    let refused = match keys.create(&entry_key, value).await {
        Ok(_) => return Ok(true),
        Err(e) => e,
    };
    // Claimed already (by this record, when its placing is repeated, or by another), or
    // the write failed (no leader for a moment, a timeout after it was written): the
    // leader's copy tells which. Only a claim by another record makes it a duplicate.
    match latest(keys, &entry_key).await? {
        Some(Latest { value: Some(held), .. }) => {
            Ok(serde_json::from_slice::<Claim>(&held).is_ok_and(|c| c.by == claimant))
        }
        _ => Err(failed(&format!("claim idempotency key `{key}`"), refused)),
    }
}

/// The last version recorded for `key` (from [`version_key`]), as the leader has it.
pub(super) async fn last_version(
    versions: &async_nats::jetstream::kv::Store,
    key: &str,
) -> Result<Option<String>, QueueError> {
    let value = latest(versions, key).await?.and_then(|l| l.value);
    Ok(value.and_then(|v| serde_json::from_slice::<VersionStamp>(&v).ok()).map(|s| s.version))
}

pub(super) fn version_key(target: &str, key: &str) -> String {
    kv_key(&format!("{target}.{key}"))
}

/// Records `version` as `key`'s last unless a newer one is recorded (compare-and-set,
/// retried when another runner wrote in between).
pub(super) async fn record_version(
    versions: &async_nats::jetstream::kv::Store,
    key: &str,
    version: &str,
) -> Result<(), QueueError> {
    let value = encode(&VersionStamp { version: version.to_string() });
    for _ in 0..5 {
        let written = match latest(versions, key).await? {
            Some(Latest { revision, value: last }) => {
                let newer = last
                    .and_then(|v| serde_json::from_slice::<VersionStamp>(&v).ok())
                    .is_some_and(|s| compare_versions(&s.version, version) != std::cmp::Ordering::Less);
                if newer {
                    return Ok(());
                }
                versions.update(key, value.clone(), revision).await.is_ok()
            }
            None => versions.create(key, value.clone()).await.is_ok(),
        };
        if written {
            return Ok(());
        }
    }
    Err(failed("record a last version", format!("{key} kept changing under five attempts")))
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
