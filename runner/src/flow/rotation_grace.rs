//! The rotation grace period of a webhook secret (`webhook.previousSecretRef`, accepted
//! for [`ROTATION_GRACE`] after the rotation) counted from when a runner first saw that
//! previous secret, not from its own start: the moment is kept on the queue's volume,
//! so a restarted or rescheduled pod does not grant another full hour. Only a
//! fingerprint of the secret is kept (SHA-256), never the value.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::warn;

use super::ROTATION_GRACE;
use crate::queue::now_ms;

/// What is kept per flow.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FirstSeen {
    /// SHA-256 (hex) of the previous secret.
    fingerprint: String,
    /// When this runner's volume first saw it, Unix milliseconds.
    first_seen_ms: i64,
}

fn file(data_dir: &Path, flow: &str) -> Option<PathBuf> {
    let safe = !flow.is_empty() && !flow.starts_with('.') && !flow.contains(['/', '\\']);
    safe.then(|| data_dir.join("rotation").join(format!("{flow}.json")))
}

/// Until when `flow`'s previous webhook secret is accepted: [`ROTATION_GRACE`] after
/// it was first seen under `data_dir` (now, when never seen or when the file cannot be
/// read or written; the latter is logged).
pub(super) fn grace_until(data_dir: &Path, flow: &str, previous: &[u8]) -> Instant {
    let now = now_ms();
    let fingerprint: String = Sha256::digest(previous).iter().map(|b| format!("{b:02x}")).collect();
    let first_seen = match file(data_dir, flow) {
        Some(path) => first_seen(&path, fingerprint, now),
        None => now,
    };
    let elapsed = Duration::from_millis(now.saturating_sub(first_seen).max(0) as u64);
    Instant::now() + ROTATION_GRACE.saturating_sub(elapsed)
}

fn first_seen(path: &Path, fingerprint: String, now: i64) -> i64 {
    let kept = std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice::<FirstSeen>(&bytes).ok());
    if let Some(kept) = kept.filter(|k| k.fingerprint == fingerprint && k.first_seen_ms <= now) {
        return kept.first_seen_ms;
    }
    let record = FirstSeen { fingerprint, first_seen_ms: now };
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, serde_json::to_vec(&record).expect("plain fields serialize")));
    if let Err(e) = written {
        warn!(file = %path.display(), error = %e, "cannot keep when the previous webhook secret was first seen; its grace period restarts with the runner");
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remaining(until: Instant) -> Duration {
        until.saturating_duration_since(Instant::now())
    }

    #[test]
    fn a_restart_keeps_counting_from_the_first_sight() {
        let dir = tempfile::tempdir().unwrap();
        let first = grace_until(dir.path(), "orders", b"old-secret");
        assert!(remaining(first) > ROTATION_GRACE - Duration::from_secs(5));
        let path = file(dir.path(), "orders").unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains("old-secret"), "a fingerprint, not the value");

        // 59 minutes later the runner restarts: one minute is left, not another hour.
        let mut kept: FirstSeen = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        kept.first_seen_ms -= 59 * 60 * 1000;
        std::fs::write(&path, serde_json::to_vec(&kept).unwrap()).unwrap();
        let left = remaining(grace_until(dir.path(), "orders", b"old-secret"));
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(50), "{left:?}");

        // Two hours later: over.
        kept.first_seen_ms -= 60 * 60 * 1000;
        std::fs::write(&path, serde_json::to_vec(&kept).unwrap()).unwrap();
        assert_eq!(remaining(grace_until(dir.path(), "orders", b"old-secret")), Duration::ZERO);

        // Another rotation (another previous secret) starts its own hour.
        assert!(remaining(grace_until(dir.path(), "orders", b"newer-old")) > ROTATION_GRACE - Duration::from_secs(5));
    }
}
