//! A queue written in format 1 (targets by position), built here with that layout, is
//! migrated to target names on open, or refused unchanged when a position cannot be
//! mapped.

use std::path::Path;

use redb::{Database, TableDefinition};
use serde_json::json;

use super::*;
use crate::queue::{DeliveryItem, RedbQueue};

const INBOX_V1: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("inbox");
const DEAD_V1: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead_letters");
const META_V1: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn envelope(id: &str, replay_target: Option<u32>) -> serde_json::Value {
    let mut e = json!({"id": id, "correlationId": format!("corr-{id}"), "receivedAtMs": 1, "payload": "{}"});
    if let Some(t) = replay_target {
        e["replay"] = json!({"count": 1, "target": t, "requestedBy": "cli", "replayedAtMs": 2, "history": [
            {"deadLetterId": 3, "target": t, "reason": "rejected", "message": "no", "deadLetteredAtMs": 1}
        ]});
    }
    e
}

/// A queue file as the previous version wrote it: flow `orders` with targets `[erp, wms]`
/// has an item for each target, a last version for `wms`, a dead letter at `erp` and a
/// replay for `wms` in the inbox.
fn write_v1(path: &Path) {
    let db = Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut outbox = tx.open_table(OUTBOX_V1).unwrap();
        for (target, seq) in [(0u32, 5u64), (1, 5), (1, 6)] {
            let item = json!({"envelope": envelope(&format!("r{seq}"), None), "target": target,
                              "idempotencyKey": format!("k{seq}"), "body": "{}"});
            outbox.insert(("orders", target, seq), serde_json::to_vec(&item).unwrap().as_slice()).unwrap();
        }
        tx.open_table(VERSIONS_V1).unwrap().insert(("orders", 1, "sku-1"), "7").unwrap();
        let letter = json!({"envelope": envelope("r1", None), "target": 0, "reason": "rejected",
                            "message": "400", "deadLetteredAtMs": 1});
        tx.open_table(DEAD_V1).unwrap().insert(("orders", 2), serde_json::to_vec(&letter).unwrap().as_slice()).unwrap();
        let replay = serde_json::to_vec(&envelope("r3", Some(1))).unwrap();
        tx.open_table(INBOX_V1).unwrap().insert(("orders", 7), replay.as_slice()).unwrap();
        tx.open_table(META_V1).unwrap().insert("next_seq", 8).unwrap();
    }
    tx.commit().unwrap();
}

fn targets(names: &[&str]) -> TargetNames {
    TargetNames::from([("orders".to_string(), names.iter().map(|n| n.to_string()).collect())])
}

#[test]
fn a_format_1_queue_is_migrated_to_target_names_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    write_v1(&path);
    let q = RedbQueue::open_migrating(&path, &targets(&["erp", "wms"])).unwrap();
    let seqs = |target: &str| -> Vec<(u64, String)> {
        q.outbox("orders", target, 10).unwrap().into_iter().map(|(s, i): (u64, DeliveryItem)| (s, i.target)).collect()
    };
    assert_eq!(seqs("erp"), [(5, "erp".to_string())]);
    assert_eq!(seqs("wms"), [(5, "wms".to_string()), (6, "wms".to_string())]);
    assert_eq!(q.last_version("orders", "wms", "sku-1").unwrap().as_deref(), Some("7"));
    assert_eq!(q.last_version("orders", "erp", "sku-1").unwrap(), None);
    let letters = q.dead_letters("orders").unwrap();
    assert_eq!(letters[0].1.target.as_deref(), Some("erp"));
    let replay = q.inbox("orders", 10).unwrap().remove(0).1.replay.unwrap();
    assert_eq!((replay.target.as_deref(), replay.history[0].target.as_deref()), (Some("wms"), Some("wms")));
    assert_eq!(q.pending("orders").unwrap(), 4);
    // The next sequence number goes on from the old counter.
    drop(q);
    let q = RedbQueue::open(&path).unwrap();
    assert_eq!(q.outbox("orders", "wms", 10).unwrap().len(), 2, "migrated once, then read as format 2");
}

#[test]
fn a_format_1_queue_that_cannot_be_mapped_is_refused_unchanged_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    write_v1(&path);
    for known in [TargetNames::new(), targets(&["erp"])] {
        let err = RedbQueue::open_migrating(&path, &known).unwrap_err().to_string();
        assert!(err.contains("named targets by position"), "{err}");
        assert!(err.contains("SyncFlow orders") && err.contains("drain the queue with the previous version"), "{err}");
    }
    // Nothing was changed: with the flow's targets it still migrates.
    let q = RedbQueue::open_migrating(&path, &targets(&["erp", "wms"])).unwrap();
    assert_eq!(q.pending("orders").unwrap(), 4);
}

#[test]
fn a_new_queue_is_stamped_and_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    drop(RedbQueue::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        assert_eq!(tx.open_table(META_V1).unwrap().get(FORMAT_KEY).unwrap().map(|v| v.value()), Some(FORMAT));
        tx.open_table(META_V1).unwrap().insert(FORMAT_KEY, FORMAT + 1).unwrap();
        tx.commit().unwrap();
    }
    let err = RedbQueue::open(&path).unwrap_err().to_string();
    assert!(err.contains("written by a newer Entrepot"), "{err}");
}
