//! The flow's idempotency keys and the stale guard's last versions, in their buckets,
//! written with compare-and-set so that runners racing on one key agree.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::client::{encode, failed};
use crate::queue::{QueueError, compare_versions};
use entrepot_api::jetstream::kv_key;

/// What an idempotency key's entry says: which record claimed it.
#[derive(Serialize, Deserialize)]
struct Claim {
    by: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct VersionStamp {
    pub(super) version: String,
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
    if keys.create(&entry_key, value).await.is_ok() {
        return Ok(true);
    }
    let held = keys.get(&entry_key).await.map_err(|e| failed("read an idempotency key", e))?;
    Ok(held.is_some_and(|v| serde_json::from_slice::<Claim>(&v).is_ok_and(|c| c.by == claimant)))
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
        let entry = versions.entry(key).await.map_err(|e| failed("read a last version", e))?;
        let written = match entry {
            Some(e) if e.operation == async_nats::jetstream::kv::Operation::Put => {
                let newer = serde_json::from_slice::<VersionStamp>(&e.value)
                    .is_ok_and(|s| compare_versions(&s.version, version) != std::cmp::Ordering::Less);
                if newer {
                    return Ok(());
                }
                versions.update(key, value.clone(), e.revision).await.is_ok()
            }
            Some(e) => versions.update(key, value.clone(), e.revision).await.is_ok(),
            None => versions.create(key, value.clone()).await.is_ok(),
        };
        if written {
            return Ok(());
        }
    }
    Err(failed("record a last version", format!("{key} kept changing under five attempts")))
}
