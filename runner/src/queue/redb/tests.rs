use super::*;
use crate::queue::{Attempt, DeadLetterReason, compare_versions};

/// An `orders/create` record `id` with correlation id `corr-<id>` (shared by the queue's tests).
pub(in crate::queue) fn envelope(id: &str, delivery: Option<&str>) -> Envelope {
    Envelope {
        id: id.into(),
        delivery_id: delivery.map(Into::into),
        source_delivery_id: None,
        event_id: None,
        topic: Some("orders/create".into()),
        correlation_id: format!("corr-{id}"),
        trace_parent: None,
        received_at_ms: now_ms(),
        payload: format!(r#"{{"id":"{id}"}}"#).into_bytes(),
        replay: None,
    }
}

fn item(env: &Envelope, target: &str) -> DeliveryItem {
    DeliveryItem {
        envelope: env.clone(),
        target: target.into(),
        idempotency_key: env.id.clone(),
        ordering_key: None,
        version: None,
        body: env.payload.clone(),
    }
}

/// Items for the first `targets` of the targets `erp` and `wms`.
fn deliver(env: &Envelope, targets: usize) -> Prepared {
    Prepared::Deliver {
        idempotency_key: env.id.clone(),
        key_expires_ms: now_ms() + 60_000,
        items: ["erp", "wms"][..targets].iter().map(|t| item(env, t)).collect(),
    }
}

#[test]
fn a_record_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    let e = envelope("a", Some("w1"));
    {
        let q = RedbQueue::open(&path).unwrap();
        assert_eq!(q.accept("f", &e, now_ms() + 60_000).unwrap(), Accepted::Queued(1));
    }
    let q = RedbQueue::open(&path).unwrap();
    let inbox = q.inbox("f", 10).unwrap();
    assert_eq!(inbox, vec![(1, e)]);
    assert_eq!(q.backlogs().unwrap()["f"].pending, 1);
}

#[test]
fn a_repeated_delivery_id_is_not_queued_twice_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    let e = envelope("a", Some("w1"));
    assert!(matches!(q.accept("f", &e, now_ms() + 60_000).unwrap(), Accepted::Queued(_)));
    assert_eq!(q.accept("f", &e, now_ms() + 60_000).unwrap(), Accepted::DuplicateDelivery);
    // Another flow has its own ids.
    assert!(matches!(q.accept("g", &e, now_ms() + 60_000).unwrap(), Accepted::Queued(_)));
    assert_eq!(q.inbox("f", 10).unwrap().len(), 1);
    // Once expired and purged, the id is new again.
    assert_eq!(q.purge_expired(now_ms() + 120_000).unwrap(), 2);
    assert!(matches!(q.accept("f", &e, now_ms() + 60_000).unwrap(), Accepted::Queued(_)));
}

#[test]
fn prepare_moves_a_record_to_one_outbox_item_per_target_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    let (a, b) = (envelope("a", None), envelope("b", None));
    let sa = match q.accept("f", &a, 0).unwrap() {
        Accepted::Queued(s) => s,
        other => panic!("{other:?}"),
    };
    let sb = match q.accept("f", &b, 0).unwrap() {
        Accepted::Queued(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(q.prepare("f", sa, deliver(&a, 2)).unwrap(), PrepareOutcome::Queued);
    assert_eq!(q.prepare("f", sb, deliver(&b, 2)).unwrap(), PrepareOutcome::Queued);
    assert!(q.inbox("f", 10).unwrap().is_empty());
    for target in ["erp", "wms"] {
        let ids: Vec<String> = q.outbox("f", target, 10).unwrap().into_iter().map(|(_, i)| i.envelope.id).collect();
        assert_eq!(ids, ["a", "b"]);
    }
    q.delivered("f", "erp", sa).unwrap();
    assert_eq!(q.outbox("f", "erp", 10).unwrap().len(), 1);
    assert_eq!(q.backlogs().unwrap()["f"].pending, 3);
}

#[test]
fn a_repeated_idempotency_key_is_dropped_at_prepare() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    let a = envelope("a", Some("w1"));
    let again = Envelope { delivery_id: Some("w2".into()), ..a.clone() };
    let s1 = match q.accept("f", &a, 0).unwrap() {
        Accepted::Queued(s) => s,
        other => panic!("{other:?}"),
    };
    let s2 = match q.accept("f", &again, 0).unwrap() {
        Accepted::Queued(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(q.prepare("f", s1, deliver(&a, 1)).unwrap(), PrepareOutcome::Queued);
    assert_eq!(q.prepare("f", s2, deliver(&again, 1)).unwrap(), PrepareOutcome::Duplicate);
    assert_eq!(q.outbox("f", "erp", 10).unwrap().len(), 1);
    assert!(q.inbox("f", 10).unwrap().is_empty());
}

#[test]
fn dead_letters_keep_the_record_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.redb");
    let q = RedbQueue::open(&path).unwrap();
    let a = envelope("a", None);
    let s = match q.accept("f", &a, 0).unwrap() {
        Accepted::Queued(s) => s,
        other => panic!("{other:?}"),
    };
    q.prepare("f", s, deliver(&a, 1)).unwrap();
    let dead = DeadLetter {
        envelope: a.clone(),
        target: Some("erp".into()),
        reason: DeadLetterReason::Rejected,
        message: "400: unknown SKU".into(),
        status: Some(400),
        response_body: Some("{\"error\":\"INVALID_KEY_OR_REF\"}".into()),
        attempts: vec![Attempt { at_ms: 1, status: Some(400), outcome: "rejected".into(), throttled: false }],
        dead_lettered_at_ms: now_ms(),
    };
    q.dead_letter("f", "erp", s, &dead).unwrap();
    drop(q);
    let q = RedbQueue::open(&path).unwrap();
    assert!(q.outbox("f", "erp", 10).unwrap().is_empty());
    let letters = q.dead_letters("f").unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1, dead);
    let backlog = q.backlogs().unwrap()["f"];
    assert_eq!((backlog.pending, backlog.dead_lettered), (0, 1));
}

#[test]
fn an_outbox_read_stops_at_its_byte_budget_but_always_returns_one_item() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    for id in ["a", "b", "c"] {
        let e = envelope(id, None);
        let Accepted::Queued(s) = q.accept("f", &e, 0).unwrap() else { panic!() };
        q.prepare("f", s, deliver(&e, 1)).unwrap();
    }
    let read = |bytes| q.outbox_after("f", "erp", 0, Take { items: 10, bytes }).unwrap();
    let all = read(usize::MAX);
    assert_eq!(all.len(), 3);
    let first = all[0].1.size();
    assert!(first > 0);
    assert_eq!(read(1).len(), 1, "one item however small the budget");
    assert_eq!(read(first).len(), 1, "the item that reaches the budget ends the read");
    assert_eq!(read(first + 1).len(), 2);
}

#[test]
fn versions_compare_as_times_numbers_or_text() {
    use std::cmp::Ordering::*;
    assert_eq!(compare_versions("2026-11-27T10:00:00Z", "2026-11-27T09:00:00-05:00"), Less);
    assert_eq!(compare_versions("10", "9"), Greater);
    assert_eq!(compare_versions("b", "a"), Greater);
}

#[test]
fn the_last_delivered_version_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    let (a, b) = (envelope("a", None), envelope("b", None));
    for e in [&a, &b] {
        let s = match q.accept("f", e, 0).unwrap() {
            Accepted::Queued(s) => s,
            other => panic!("{other:?}"),
        };
        q.prepare("f", s, deliver(e, 1)).unwrap();
    }
    let items = q.outbox_after("f", "erp", 0, Take { items: 10, bytes: usize::MAX }).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(q.outbox_after("f", "erp", items[0].0, Take { items: 10, bytes: usize::MAX }).unwrap().len(), 1);
    q.delivered_version("f", "erp", items[0].0, Some(("sku-1", "5"))).unwrap();
    q.delivered_version("f", "erp", items[1].0, Some(("sku-1", "3"))).unwrap();
    assert_eq!(q.last_version("f", "erp", "sku-1").unwrap().as_deref(), Some("5"));
    assert_eq!(q.pending_total().unwrap(), 0);
}

#[test]
fn a_full_queue_refuses_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    assert!(matches!(q.accept_within("f", &envelope("a", Some("w1")), 0, 2).unwrap(), Accepted::Queued(_)));
    assert!(matches!(q.accept_within("g", &envelope("b", Some("w2")), 0, 2).unwrap(), Accepted::Queued(_)));
    assert_eq!(q.accept_within("f", &envelope("c", Some("w3")), 0, 2).unwrap(), Accepted::Full);
    assert_eq!(q.pending_total().unwrap(), 2);
    // The refused delivery id was not remembered: its retry is taken once there is room.
    q.prepare(
        "f",
        1,
        Prepared::DeadLetter(DeadLetter {
            envelope: envelope("a", Some("w1")),
            target: None,
            reason: DeadLetterReason::Mapping,
            message: "x".into(),
            status: None,
            response_body: None,
            attempts: vec![],
            dead_lettered_at_ms: 0,
        }),
    )
    .unwrap();
    assert!(matches!(q.accept_within("f", &envelope("c", Some("w3")), 0, 2).unwrap(), Accepted::Queued(_)));
}

#[test]
fn last_versions_of_idle_keys_are_purged_after_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    for (id, key) in [("a", "sku-1"), ("b", "sku-2")] {
        let e = envelope(id, None);
        let Accepted::Queued(s) = q.accept("f", &e, 0).unwrap() else { panic!("not queued") };
        q.prepare("f", s, deliver(&e, 1)).unwrap();
        q.delivered_version("f", "erp", s, Some((key, "1"))).unwrap();
    }
    let now = now_ms();
    // Written within the retention: kept.
    assert_eq!(q.purge_versions(&|_| now - 60_000, now).unwrap(), 0);
    assert_eq!(q.last_version("f", "erp", "sku-1").unwrap().as_deref(), Some("1"));
    // Idle past the retention of flow `f` only.
    assert_eq!(q.purge_versions(&|flow| if flow == "f" { now + 1 } else { 0 }, now).unwrap(), 2);
    assert_eq!(q.last_version("f", "erp", "sku-1").unwrap(), None);
    assert_eq!(q.last_version("f", "erp", "sku-2").unwrap(), None);
}

#[test]
fn a_version_written_before_stamps_existed_is_kept_one_more_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.redb");
    drop(RedbQueue::open(&path).unwrap());
    {
        // As an earlier version left it: a version and no stamp.
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(VERSIONS).unwrap().insert(("f", "erp", "sku-1"), "7").unwrap();
        tx.commit().unwrap();
    }
    let q = RedbQueue::open(&path).unwrap();
    let now = now_ms();
    assert_eq!(q.purge_versions(&|_| now + 1, now).unwrap(), 0, "stamped now, not purged");
    assert_eq!(q.purge_versions(&|_| now + 1, now + 2).unwrap(), 1);
    assert_eq!(q.last_version("f", "erp", "sku-1").unwrap(), None);
}
