//! The stale guard's memory: the last version delivered per (flow, target, ordering
//! key), and when it was last written, so that keys nobody has touched for a retention
//! are forgotten rather than kept for ever (one row per customer or SKU ever seen).

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::RedbQueue;
use crate::queue::{QueueError, compare_versions};

/// Last version delivered: (flow, target name, ordering key) → version.
pub(super) const VERSIONS: TableDefinition<(&str, &str, &str), &str> = TableDefinition::new("target_versions");
/// When each of `VERSIONS` was last written (Unix ms). A version without a stamp (a
/// queue written before stamps existed) is stamped by the first purge that sees it.
pub(super) const VERSION_STAMPS: TableDefinition<(&str, &str, &str), i64> =
    TableDefinition::new("target_version_stamps");

/// Records `version` as the last delivered for `key` when it is newer than the one
/// recorded, in `tx`.
pub(super) fn record(
    tx: &WriteTransaction,
    (flow, target): (&str, &str),
    key: &str,
    version: &str,
    now: i64,
) -> Result<(), QueueError> {
    let mut versions = tx.open_table(VERSIONS)?;
    let newer = versions
        .get((flow, target, key))?
        .is_none_or(|last| compare_versions(version, last.value()) == std::cmp::Ordering::Greater);
    if newer {
        versions.insert((flow, target, key), version)?;
        tx.open_table(VERSION_STAMPS)?.insert((flow, target, key), now)?;
    }
    Ok(())
}

impl RedbQueue {
    /// The last version delivered to a target for an ordering key.
    pub(super) fn last_version(&self, flow: &str, target: &str, key: &str) -> Result<Option<String>, QueueError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(VERSIONS)?.get((flow, target, key))?.map(|v| v.value().to_string()))
    }

    /// Forgets the last versions written before `cutoff_ms(flow)`; returns how many.
    /// Versions with no stamp are stamped `now` (kept one more retention).
    pub(super) fn purge_versions(&self, cutoff_ms: &dyn Fn(&str) -> i64, now: i64) -> Result<u64, QueueError> {
        let tx = self.db.begin_write()?;
        let mut purged = 0;
        {
            let mut versions = tx.open_table(VERSIONS)?;
            let mut stamps = tx.open_table(VERSION_STAMPS)?;
            let mut unstamped = Vec::new();
            let mut expired = Vec::new();
            for entry in versions.iter()? {
                let (k, _) = entry?;
                let (flow, target, key) = k.value();
                match stamps.get((flow, target, key))?.map(|s| s.value()) {
                    None => unstamped.push((flow.to_string(), target.to_string(), key.to_string())),
                    Some(at) if at < cutoff_ms(flow) => {
                        expired.push((flow.to_string(), target.to_string(), key.to_string()))
                    }
                    Some(_) => {}
                }
            }
            for (flow, target, key) in &unstamped {
                stamps.insert((flow.as_str(), target.as_str(), key.as_str()), now)?;
            }
            for (flow, target, key) in &expired {
                let k = (flow.as_str(), target.as_str(), key.as_str());
                versions.remove(k)?;
                stamps.remove(k)?;
                purged += 1;
            }
        }
        tx.commit()?;
        Ok(purged)
    }
}
