use std::collections::BTreeSet;

use super::*;
use crate::queue::{
    Accepted, ActionReport, Attempt, AuditAction, AuditEntry, AuditFilter, Caller, DeadLetterAction, DeadLetterReason,
    DeliveryItem, Envelope, Intake, PrepareOutcome, Prepared, Queue, Selection, redb::tests::envelope,
};

fn letter(id: &str, reason: DeadLetterReason, target: Option<&str>, at_ms: i64) -> DeadLetter {
    DeadLetter {
        envelope: envelope(id, Some(&format!("delivery-{id}"))),
        target: target.map(String::from),
        reason,
        message: format!("{} for {id}", reason.as_str()),
        status: target.map(|_| 400),
        response_body: target.map(|_| r#"{"error":"INVALID_KEY_OR_REF"}"#.into()),
        attempts: vec![Attempt { at_ms, status: Some(400), outcome: "rejected".into(), throttled: false }],
        dead_lettered_at_ms: at_ms,
    }
}

/// A caller named `identity`, with a reason.
fn by(identity: &str) -> Caller {
    Caller::new(identity, None, Some("test")).unwrap()
}

/// Writes dead letters straight to a flow (as a source's unreadable rows are) and
/// returns their ids.
fn dead_letters(q: &Queue, flow: &str, letters: Vec<DeadLetter>) -> Vec<u64> {
    let before: BTreeSet<u64> = q.dead_letters(flow).unwrap().into_iter().map(|(id, _)| id).collect();
    let items: Vec<Intake> = letters.into_iter().map(Intake::DeadLetter).collect();
    q.accept_batch(flow, &items, 0, &[]).unwrap();
    q.dead_letters(flow).unwrap().into_iter().map(|(id, _)| id).filter(|id| !before.contains(id)).collect()
}

fn all_ids(q: &Queue) -> Vec<u64> {
    q.find_dead_letters(&DeadLetterFilter::default()).unwrap().entries.iter().map(|e| e.id).collect()
}

fn select(sel: Selection) -> DeadLetterFilter {
    sel.filter(now_ms()).unwrap()
}

fn deliver(env: &Envelope) -> Prepared {
    let item = DeliveryItem {
        envelope: env.clone(),
        target: "erp".into(),
        idempotency_key: format!("key-{}", env.id),
        ordering_key: None,
        version: None,
        body: env.payload.clone(),
    };
    Prepared::Deliver {
        idempotency_key: item.idempotency_key.clone(),
        key_expires_ms: now_ms() + 60_000,
        items: vec![item],
    }
}

#[test]
fn a_replay_moves_exactly_the_selected_letters_into_the_inbox_in_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.redb");
    let now = now_ms();
    let (rejected, mapping, other_flow) = {
        let q = RedbQueue::open(&path).unwrap();
        let ids = dead_letters(
            &q,
            "orders",
            vec![
                letter("a", DeadLetterReason::Rejected, Some("erp"), now),
                letter("b", DeadLetterReason::Mapping, None, now),
            ],
        );
        let other = dead_letters(&q, "stock", vec![letter("c", DeadLetterReason::Rejected, Some("erp"), now)]);
        let sel =
            Selection { flow: Some("orders".into()), reason: Some(DeadLetterReason::Rejected), ..Selection::default() };
        let affected = q.replay_dead_letters(&select(sel), &by("test")).unwrap();
        assert_eq!(affected, vec![Affected { id: ids[0], flow: "orders".into(), correlation_id: "corr-a".into() }]);
        (ids[0], ids[1], other[0])
    };
    // Durable: the move survives reopening, and nothing else moved.
    let q = RedbQueue::open(&path).unwrap();
    assert_eq!(all_ids(&q), vec![mapping, other_flow]);
    assert!(q.inbox("stock", 10).unwrap().is_empty());
    let inbox = q.inbox("orders", 10).unwrap();
    assert_eq!(inbox.len(), 1);
    let (seq, replayed) = &inbox[0];
    assert!(*seq > other_flow, "a replay is a new record at the end of the inbox");
    assert_eq!(replayed.correlation_id, "corr-a", "the trail stays connected");
    let replay = replayed.replay.as_ref().expect("marked as a replay");
    assert_eq!(
        (replay.dead_letter_id, replay.count, replay.target.clone()),
        (Some(rejected), 1, Some("erp".to_string()))
    );
    assert_eq!(replay.requested_by, "test");
    assert_eq!(replay.history.len(), 1);
    assert_eq!(replay.history[0].message, "rejected for a");
    assert_eq!(replay.history[0].status, Some(400));
    // Replaying the same id again finds nothing: it is no longer a dead letter.
    assert!(q.replay_dead_letters(&select(Selection::ids([rejected])), &by("test")).unwrap().is_empty());
    assert_eq!(q.inbox("orders", 10).unwrap().len(), 1);
}

#[test]
fn a_replayed_record_passes_the_idempotency_dedup_and_its_key_is_recorded_again() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    let a = envelope("a", Some("delivery-a"));
    let Accepted::Queued(seq) = q.accept("f", &a, 0).unwrap() else { panic!("queued") };
    assert_eq!(q.prepare("f", seq, deliver(&a)).unwrap(), PrepareOutcome::Queued);
    q.dead_letter("f", "erp", seq, &letter("a", DeadLetterReason::Rejected, Some("erp"), now_ms())).unwrap();

    let affected =
        q.replay_dead_letters(&select(Selection { all: true, ..Selection::default() }), &by("test")).unwrap();
    assert_eq!(affected.len(), 1);
    let (seq, replayed) = q.inbox("f", 10).unwrap().remove(0);
    assert_eq!(q.prepare("f", seq, deliver(&replayed)).unwrap(), PrepareOutcome::Queued, "not dropped as a duplicate");
    assert_eq!(q.outbox("f", "erp", 10).unwrap().len(), 1);

    // The same key arriving again as a new record (not a replay) is still a duplicate.
    let again = Envelope { delivery_id: Some("delivery-a2".into()), ..a.clone() };
    let Accepted::Queued(seq) = q.accept("f", &again, 0).unwrap() else { panic!("queued") };
    assert_eq!(q.prepare("f", seq, deliver(&again)).unwrap(), PrepareOutcome::Duplicate);
}

#[test]
fn a_replay_that_fails_again_carries_every_earlier_failure() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    let first = dead_letters(&q, "f", vec![letter("a", DeadLetterReason::Rejected, Some("erp"), 1_000)])[0];
    q.replay_dead_letters(&select(Selection::ids([first])), &by("cli")).unwrap();
    let (seq, replayed) = q.inbox("f", 10).unwrap().remove(0);
    q.prepare("f", seq, deliver(&replayed)).unwrap();
    let item = q.outbox("f", "erp", 10).unwrap().remove(0).1;
    let failed_again = DeadLetter {
        envelope: item.envelope,
        message: "still refused".into(),
        ..letter("a", DeadLetterReason::Rejected, Some("erp"), 2_000)
    };
    let second = q.dead_letter("f", "erp", seq, &failed_again).unwrap();

    q.replay_dead_letters(&select(Selection::ids([second])), &by("admin API")).unwrap();
    let (_, twice) = q.inbox("f", 10).unwrap().remove(0);
    let replay = twice.replay.expect("a replay");
    assert_eq!((replay.dead_letter_id, replay.count, replay.requested_by.as_str()), (Some(second), 2, "admin API"));
    let history: Vec<(u64, &str)> = replay.history.iter().map(|h| (h.dead_letter_id, h.message.as_str())).collect();
    assert_eq!(history, vec![(first, "rejected for a"), (second, "still refused")]);
}

#[test]
fn discard_removes_only_the_selected_letters_and_reports_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    let now = now_ms();
    let ids = dead_letters(
        &q,
        "f",
        vec![
            letter("a", DeadLetterReason::Rejected, Some("erp"), now),
            letter("b", DeadLetterReason::RetriesExhausted, Some("erp"), now),
            letter("c", DeadLetterReason::Rejected, Some("erp"), now),
        ],
    );
    let sel = Selection::ids([ids[0], ids[2], 999]);
    let filter = select(sel);
    let affected = q.discard_dead_letters(&filter, &by("test")).unwrap();
    let report = ActionReport::new(DeadLetterAction::Discard, &filter.ids, &affected);
    assert_eq!((report.count, report.ids.clone(), report.missing.clone()), (2, vec![ids[0], ids[2]], vec![999]));
    assert_eq!(all_ids(&q), vec![ids[1]]);
    assert!(q.inbox("f", 10).unwrap().is_empty(), "discarded letters are not replayed");
    assert_eq!(q.dead_letter_by_id(ids[1]).unwrap().map(|e| e.flow), Some("f".into()));
    assert_eq!(q.dead_letter_by_id(ids[0]).unwrap(), None);
}

#[test]
fn filters_select_by_reason_time_and_text_and_pages_follow_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    let hour = 3_600_000;
    let now = now_ms();
    let old = dead_letters(&q, "f", vec![letter("old", DeadLetterReason::Rejected, Some("erp"), now - 5 * hour)]);
    let young: Vec<u64> = (0..5)
        .flat_map(|i| {
            dead_letters(&q, "f", vec![letter(&format!("y{i}"), DeadLetterReason::Rejected, Some("erp"), now - hour)])
        })
        .collect();
    dead_letters(&q, "f", vec![letter("m", DeadLetterReason::Mapping, None, now)]);

    let recent =
        Selection { since: Some("2h".into()), reason: Some(DeadLetterReason::Rejected), ..Selection::default() };
    let page = q.find_dead_letters(&select(Selection { limit: Some(2), ..recent.clone() })).unwrap();
    assert_eq!(page.entries.iter().map(|e| e.id).collect::<Vec<_>>(), young[..2]);
    assert_eq!((page.total, page.next_after), (5, Some(young[1])));
    let rest = q.find_dead_letters(&select(Selection { after: page.next_after, limit: Some(10), ..recent })).unwrap();
    assert_eq!(rest.entries.iter().map(|e| e.id).collect::<Vec<_>>(), young[2..]);
    assert_eq!(rest.next_after, None);

    let older = q.find_dead_letters(&select(Selection { until: Some("2h".into()), ..Selection::default() })).unwrap();
    assert_eq!(older.entries.iter().map(|e| e.id).collect::<Vec<_>>(), old);
    let by_text =
        q.find_dead_letters(&select(Selection { text: Some("CORR-Y3".into()), ..Selection::default() })).unwrap();
    assert_eq!(by_text.entries.iter().map(|e| e.id).collect::<Vec<_>>(), vec![young[3]]);
}

#[test]
fn the_retention_purge_removes_old_letters_and_keeps_young_ones() {
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open(&dir.path().join("q.redb")).unwrap();
    let day = 86_400_000;
    let now = now_ms();
    let orders = dead_letters(
        &q,
        "orders",
        vec![
            letter("old", DeadLetterReason::Rejected, Some("erp"), now - 3 * day),
            letter("young", DeadLetterReason::Rejected, Some("erp"), now - day / 2),
        ],
    );
    let stock = dead_letters(&q, "stock", vec![letter("s", DeadLetterReason::Rejected, Some("erp"), now - 3 * day)]);
    // orders keeps dead letters for a day, stock for a week.
    let cutoff = |flow: &str| now - if flow == "orders" { day } else { 7 * day };
    let purged = q.purge_dead_letters(&cutoff).unwrap();
    assert_eq!(purged, BTreeMap::from([("orders".to_string(), 1)]));
    assert_eq!(all_ids(&q), vec![orders[1], stock[0]]);
    assert!(q.purge_dead_letters(&cutoff).unwrap().is_empty(), "nothing left to purge");
}

#[test]
fn replays_discards_and_injections_are_audited_and_purged_with_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.redb");
    let q = RedbQueue::open(&path).unwrap();
    let ids = dead_letters(
        &q,
        "f",
        ["a", "b", "c"].map(|id| letter(id, DeadLetterReason::Rejected, Some("erp"), 1_000)).to_vec(),
    );
    let other = dead_letters(&q, "g", vec![letter("d", DeadLetterReason::Mapping, None, 1_000)]);
    let ana = Caller::new("admin token sha256:00", Some("cli (ana)".into()), Some("SKU fixed, INC-7")).unwrap();
    q.replay_dead_letters(&select(Selection::ids([ids[0], ids[1], other[0]])), &ana).unwrap();
    q.discard_dead_letters(&select(Selection::ids([ids[2]])), &by("ops")).unwrap();
    let injected = AuditEntry::new("f", AuditAction::Inject, &by("ops"), now_ms());
    let records = [Intake::Record(envelope("x", Some("dx"))), Intake::Record(envelope("y", Some("dx")))];
    assert_eq!(q.inject("f", &records, i64::MAX, injected).unwrap().duplicates, 1);
    drop(q);

    let q = RedbQueue::open(&path).unwrap();
    let trail = q.audit_trail(&AuditFilter { flow: Some("f".into()), ..AuditFilter::default() }).unwrap();
    let got: Vec<(AuditAction, u64, Vec<u64>, &str)> =
        trail.iter().map(|e| (e.action, e.count, e.dead_letters.clone(), e.caller.why.as_str())).collect();
    assert_eq!(
        got,
        [
            (AuditAction::Replay, 2, vec![ids[0], ids[1]], "SKU fixed, INC-7"),
            (AuditAction::Discard, 1, vec![ids[2]], "test"),
            (AuditAction::Inject, 1, vec![], "test"),
        ]
    );
    assert_eq!(trail[0].caller.requested_by(), "admin token sha256:00 (cli (ana))");
    assert_eq!(trail[0].records.len(), 2, "the replayed records' correlation ids");
    assert_eq!((trail[2].records.len(), trail[2].duplicates), (1, 1));
    let g = q.audit_trail(&AuditFilter { flow: Some("g".into()), ..AuditFilter::default() }).unwrap();
    assert_eq!((g.len(), g[0].dead_letters.clone()), (1, other.clone()), "one entry per flow touched");

    // The same cutoff as the dead letters: `g`'s retention has passed, `f`'s has not.
    let cutoff = |flow: &str| if flow == "g" { i64::MAX } else { 0 };
    assert_eq!(q.purge_audit(&cutoff).unwrap(), 1);
    assert_eq!(q.audit_trail(&AuditFilter::default()).unwrap().len(), 3);
}
