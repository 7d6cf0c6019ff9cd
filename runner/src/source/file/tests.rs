//! The file source against real files in a temporary directory and the real on-disk
//! queue. Scans are driven one by one, so nothing depends on timing: a file is read at
//! the second scan that finds it unchanged.

use std::{fs, io::Write, path::Path, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{FileOptions, FileSource, Importer, Position, ScanReport, rows::RowContent, rows::RowReader};
use crate::{
    flow::{Flow, Workers},
    metrics::Metrics,
    queue::{DeadLetter, DeadLetterReason, Queue, RedbQueue},
    secrets::Secrets,
};
use entrepot_api::{
    config::FlowConfig,
    resource::{
        ConnectorSpec, ConnectorType, FileFormat, FileTrigger, SourceSpec, SyncFlowSpec, TargetSpec, TriggerSpec,
    },
};

const FLOW: &str = "settlements";

/// A flow with a file trigger on `<root>/in`, and its queue in `<root>/queue.redb`.
struct Setup {
    root: tempfile::TempDir,
    flow: Arc<Flow>,
    trigger: FileTrigger,
    metrics: Metrics,
    queue: Queue,
    stop: watch::Sender<bool>,
}

impl Setup {
    fn new(format: FileFormat, suffix: Option<&str>) -> Self {
        Self::with_spec(format, suffix, |_| ())
    }

    fn with_spec(format: FileFormat, suffix: Option<&str>, edit: impl FnOnce(&mut SyncFlowSpec)) -> Self {
        let root = tempfile::tempdir().unwrap();
        let trigger = FileTrigger {
            directory: root.path().join("in").display().to_string(),
            format,
            suffix: suffix.map(Into::into),
            processed_directory: None,
            interval: None,
            volume_claim_name: None,
        };
        fs::create_dir(&trigger.directory).unwrap();
        let spec = SyncFlowSpec {
            source: SourceSpec {
                connector_ref: "processor".into(),
                entity: "settlements".into(),
                trigger: TriggerSpec { file: Some(trigger.clone()), ..Default::default() },
            },
            mapping_ref: None,
            targets: vec![TargetSpec {
                name: None,
                connector_ref: "erp".into(),
                entity: "deposit".into(),
                mapping_ref: None,
                operation: Default::default(),
                path: None,
                availability: None,
                graphql: None,
                table: None,
            }],
            delivery: Default::default(),
            runner: Default::default(),
            mode: Default::default(),
            schedule: None,
            time_zone: None,
            suspend: false,
        };
        let mut spec = spec;
        edit(&mut spec);
        let erp = ConnectorSpec {
            kind: ConnectorType::Rest,
            endpoint: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        };
        let config = FlowConfig::resolve(FLOW, "default", &spec, |_| Some(erp.clone()), |_| None).unwrap();
        let flow = Arc::new(Flow::new(config, &Secrets::placeholders()).unwrap());
        let queue = RedbQueue::open(&root.path().join("queue.redb")).unwrap();
        let (stop, _) = watch::channel(false);
        Self { root, flow, trigger, metrics: Metrics::new(), queue, stop }
    }

    fn dir(&self) -> &Path {
        Path::new(&self.trigger.directory)
    }

    fn write(&self, name: &str, content: &[u8]) {
        fs::write(self.dir().join(name), content).unwrap();
    }

    /// A source as a fresh runner start would have it.
    fn source(&self, chunk_rows: usize) -> FileSource {
        let workers =
            Workers { queue: self.queue.clone(), metrics: self.metrics.clone(), shutdown: self.stop.subscribe() };
        let options = FileOptions { chunk_rows, min_age: Duration::ZERO };
        FileSource::new(self.flow.clone(), self.trigger.clone(), &workers, options)
    }

    /// Simulates a crash and a restart: the queue is closed and opened again.
    fn reopen_queue(&mut self) {
        // The store is locked while open: drop this handle (the only one left) first.
        let old = std::mem::replace(&mut self.queue, RedbQueue::open(&self.root.path().join("scratch.redb")).unwrap());
        drop(old);
        self.queue = RedbQueue::open(&self.root.path().join("queue.redb")).unwrap();
    }

    /// The queued records: (correlation id, payload).
    fn queued(&self) -> Vec<(String, Value)> {
        let inbox = self.queue.inbox(FLOW, 100_000).unwrap();
        inbox.into_iter().map(|(_, e)| (e.correlation_id, serde_json::from_slice(&e.payload).unwrap())).collect()
    }

    fn dead_letters(&self) -> Vec<DeadLetter> {
        self.queue.dead_letters(FLOW).unwrap().into_iter().map(|(_, d)| d).collect()
    }

    fn count(&self, counter: &prometheus::IntCounterVec, labels: &[&str]) -> u64 {
        counter.with_label_values(labels).get()
    }

    fn processed(&self, name: &str) -> bool {
        self.dir().join("processed").join(name).is_file() && !self.dir().join(name).exists()
    }
}

/// The two scans that first see a file and then find it unchanged.
fn scan_twice(source: &mut FileSource) -> ScanReport {
    let first = source.scan();
    assert!(first.imported.is_empty(), "a file is never read at the scan that first sees it: {first:?}");
    source.scan()
}

#[test]
fn a_csv_file_becomes_one_record_per_row_in_order_and_a_malformed_row_a_dead_letter() {
    let s = Setup::new(FileFormat::Csv, Some(".csv"));
    let name = "settlement-2026-11-27.csv";
    s.write(
        name,
        b"settlement_id,transaction_id,amount\n\
          S1,T1,10.00\n\
          S1,T2,5.00\n\
          S1,T3\n\
          S1,\"T4, refund\",-1.00\n\
          S1,T5,7.25\n",
    );
    let mut source = s.source(500);
    let first = source.scan();
    assert_eq!(first.waiting, [name]);
    assert!(s.queued().is_empty(), "nothing is read at the first sighting");

    let report = source.scan();
    assert_eq!(report.imported, [name]);
    let row = |line: u32, t: &str, amount: &str| {
        (format!("{name}:{line}"), json!({"settlement_id": "S1", "transaction_id": t, "amount": amount}))
    };
    assert_eq!(
        s.queued(),
        [row(2, "T1", "10.00"), row(3, "T2", "5.00"), row(5, "T4, refund", "-1.00"), row(6, "T5", "7.25")]
    );
    let letters = s.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, DeadLetterReason::InvalidRecord);
    assert_eq!(letters[0].message, format!("{name}: line 4: 2 fields where the header has 3"));
    assert_eq!(letters[0].envelope.payload, b"S1,T3", "the row is kept as written");
    assert_eq!(letters[0].envelope.correlation_id, format!("{name}:4"));
    assert!(s.processed(name));

    let m = &s.metrics;
    assert_eq!(s.count(&m.received, &[FLOW]), 4);
    assert_eq!(s.count(&m.dead_lettered, &[FLOW, "", "", "invalid_record"]), 1);
    assert_eq!(s.count(&m.files_processed, &[FLOW]), 1);
    assert_eq!(source.scan(), ScanReport::default(), "the processed directory is not read");
}

#[test]
fn a_jsonl_file_skips_blank_lines_and_dead_letters_bad_lines_by_number() {
    let s = Setup::new(FileFormat::Jsonl, None);
    let name = "payouts.jsonl";
    let mut content = b"{\"id\":1}\n\n{\"id\":2}\r\n{\"id\": 3,\n   \n{\"id\":4}\n".to_vec();
    content.extend_from_slice(b"{\"id\":\"\xff\"}\n{\"id\":\"\\udE32\"}");
    s.write(name, &content);
    let report = scan_twice(&mut s.source(500));
    assert_eq!(report.imported, [name]);
    let ids: Vec<_> = s.queued().into_iter().map(|(c, p)| (c, p["id"].clone())).collect();
    assert_eq!(
        ids,
        [(format!("{name}:1"), json!(1)), (format!("{name}:3"), json!(2)), (format!("{name}:6"), json!(4))]
    );
    let messages: Vec<_> = s.dead_letters().into_iter().map(|d| d.message).collect();
    assert_eq!(
        messages,
        [
            format!("{name}: line 4: invalid JSON at column 9: EOF while parsing an object"),
            format!("{name}: line 7: invalid UTF-8 in the line"),
            format!("{name}: line 8: invalid JSON at column 14: invalid character with index 56882"),
        ]
    );
}

#[test]
fn csv_line_numbers_count_blank_lines_crlf_endings_and_quoted_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.csv");
    fs::write(&path, b"\xef\xbb\xbfid,note\r\n\r\na,plain\r\nb,\"two\nlines\"\r\nc\r\nd,\xff\r\ne,last").unwrap();
    let mut reader = RowReader::open(fs::File::open(&path).unwrap(), FileFormat::Csv, Position::START).unwrap();
    let mut rows = Vec::new();
    while let Some(row) = reader.next_row().unwrap() {
        rows.push(match row.content {
            RowContent::Record(json) => (row.line, String::from_utf8(json).unwrap()),
            RowContent::Invalid { problem, .. } => (row.line, problem.to_string()),
        });
    }
    let expected = [
        (3, r#"{"id":"a","note":"plain"}"#.to_string()),
        (4, r#"{"id":"b","note":"two\nlines"}"#.to_string()),
        (6, "1 field where the header has 2".to_string()),
        (7, "invalid UTF-8 in column `note`".to_string()),
        (8, r#"{"id":"e","note":"last"}"#.to_string()),
    ];
    assert_eq!(rows, expected, "the BOM is not part of the first column's name");
}

#[test]
fn a_crash_mid_file_resumes_at_the_committed_row_and_queues_every_row_once() {
    let mut s = Setup::new(FileFormat::Csv, None);
    let name = "big.csv";
    let mut content = b"transaction_id,amount\n".to_vec();
    for i in 1..=1000 {
        writeln!(content, "T{i},{i}.00").unwrap();
    }
    s.write(name, &content);

    // A runner commits three chunks of 100 rows, then dies before the fourth.
    let window = Duration::from_secs(3600);
    let mut import =
        Importer::new(s.queue.clone(), FLOW, FileFormat::Csv, 100, window).open(&s.dir().join(name), name).unwrap();
    for _ in 0..3 {
        import.next_chunk().unwrap();
    }
    drop(import);
    s.reopen_queue();
    assert_eq!(s.queued().len(), 300);

    let report = scan_twice(&mut s.source(100));
    assert_eq!(report.imported, [name]);
    let lines: Vec<String> = s.queued().into_iter().map(|(c, _)| c).collect();
    let expected: Vec<String> = (2..=1001).map(|line| format!("{name}:{line}")).collect();
    assert_eq!(lines, expected, "every row once, in file order");
    assert_eq!(s.count(&s.metrics.duplicates, &[FLOW, "delivery_id"]), 0, "no committed row was read again");
    assert_eq!(s.count(&s.metrics.received, &[FLOW]), 700);
    assert!(s.processed(name));
}

#[test]
fn a_file_recorded_done_but_not_moved_is_moved_later_without_queuing_its_rows_again() {
    let mut s = Setup::new(FileFormat::Csv, Some(".csv"));
    let name = "day.csv";
    s.write(name, b"id\n1\n2\n3\n");
    // The processed directory cannot be created: the rows are committed and the file
    // recorded done, but it stays where it is, as after a crash right before the move.
    fs::write(s.dir().join("processed"), b"in the way").unwrap();
    let report = scan_twice(&mut s.source(2));
    assert_eq!(report.failed, [name]);
    assert_eq!(s.count(&s.metrics.files_failed, &[FLOW, "move"]), 1);
    assert!(s.dir().join(name).exists());
    assert_eq!(s.queued().len(), 3);

    fs::remove_file(s.dir().join("processed")).unwrap();
    s.reopen_queue();
    let report = scan_twice(&mut s.source(2));
    assert_eq!(report.imported, [name]);
    assert_eq!(s.queued().len(), 3);
    assert_eq!(s.count(&s.metrics.duplicates, &[FLOW, "delivery_id"]), 0, "no row was read again");
    assert!(s.processed(name));
}

#[test]
fn a_file_still_being_written_is_read_only_once_it_is_stable_and_old_enough() {
    let s = Setup::new(FileFormat::Csv, None);
    let name = "growing.csv";
    s.write(name, b"id\n1\n");
    let mut source = s.source(500);
    assert_eq!(source.scan().waiting, [name]);
    fs::OpenOptions::new().append(true).open(s.dir().join(name)).unwrap().write_all(b"2\n").unwrap();
    assert_eq!(source.scan().waiting, [name], "it grew since the last scan");
    assert!(s.queued().is_empty());

    // Unchanged but too young: a writer may only be pausing.
    let workers = Workers { queue: s.queue.clone(), metrics: s.metrics.clone(), shutdown: s.stop.subscribe() };
    let patient = FileOptions { chunk_rows: 500, min_age: Duration::from_secs(3600) };
    let mut slow = FileSource::new(s.flow.clone(), s.trigger.clone(), &workers, patient);
    assert_eq!(scan_twice(&mut slow).waiting, [name]);
    assert!(s.queued().is_empty());

    assert_eq!(source.scan().imported, [name]);
    assert_eq!(s.queued().len(), 2, "both rows, the late one included");
}

#[test]
fn files_of_another_suffix_and_hidden_files_are_left_alone() {
    let s = Setup::new(FileFormat::Csv, Some(".csv"));
    for name in ["a.csv.part", ".b.csv", "c.txt", "d.csv"] {
        s.write(name, b"id\n1\n");
    }
    let report = scan_twice(&mut s.source(500));
    assert_eq!(report, ScanReport { imported: vec!["d.csv".into()], ..Default::default() });
    for name in ["a.csv.part", ".b.csv", "c.txt"] {
        assert!(s.dir().join(name).exists(), "{name} untouched");
    }
    assert_eq!(s.queued().len(), 1);
}

#[test]
fn an_unreadable_file_is_reported_at_each_scan_and_the_others_go_on() {
    let s = Setup::new(FileFormat::Csv, None);
    // Tests may run as root, for whom permissions do not stop a read: a link (to a file
    // that is not there) is refused the same way, at every scan.
    std::os::unix::fs::symlink(s.root.path().join("missing.csv"), s.dir().join("a-broken.csv")).unwrap();
    s.write("b-good.csv", b"id\n1\n");
    let mut source = s.source(500);
    assert_eq!(source.scan().failed, ["a-broken.csv"]);
    let report = source.scan();
    assert_eq!((report.failed, report.imported), (vec!["a-broken.csv".to_string()], vec!["b-good.csv".to_string()]));
    assert_eq!(s.count(&s.metrics.files_failed, &[FLOW, "not_regular"]), 2);
    assert_eq!(s.queued().len(), 1);
}

#[test]
fn a_symbolic_link_is_not_followed_even_to_a_readable_file() {
    let s = Setup::new(FileFormat::Jsonl, None);
    // A link to what the runner may read but no sender should: /proc/self/environ in
    // production; here a file outside the drop directory.
    fs::write(s.root.path().join("secret.jsonl"), b"{\"ENTREPOT_SECRET_X\":\"hush\"}\n").unwrap();
    std::os::unix::fs::symlink(s.root.path().join("secret.jsonl"), s.dir().join("environ.jsonl")).unwrap();
    let mut source = s.source(500);
    let report = scan_twice(&mut source);
    assert_eq!((report.failed, report.imported), (vec!["environ.jsonl".to_string()], Vec::<String>::new()));
    assert!(s.queued().is_empty(), "nothing read through the link");
    assert!(s.dir().join("environ.jsonl").exists(), "the link is left where it is");
}

#[test]
fn a_new_file_under_an_old_name_is_imported_and_both_are_kept() {
    let s = Setup::new(FileFormat::Csv, None);
    let mut source = s.source(500);
    s.write("daily.csv", b"id\nfirst\n");
    assert_eq!(scan_twice(&mut source).imported, ["daily.csv"]);
    s.write("daily.csv", b"id\nsecond\n");
    assert_eq!(scan_twice(&mut source).imported, ["daily.csv"]);
    let ids: Vec<Value> = s.queued().into_iter().map(|(_, p)| p["id"].clone()).collect();
    assert_eq!(ids, [json!("first"), json!("second")], "the second file's row is no duplicate of the first's");
    let kept = fs::read_dir(s.dir().join("processed")).unwrap().count();
    assert_eq!(kept, 2, "the earlier file is not overwritten");
}

#[test]
fn a_csv_file_with_a_bad_header_is_one_dead_letter_and_is_moved_aside() {
    let s = Setup::new(FileFormat::Csv, None);
    s.write("dup.csv", b"id,amount,id\n1,2,3\n");
    assert_eq!(scan_twice(&mut s.source(500)).imported, ["dup.csv"]);
    assert!(s.queued().is_empty());
    let letters = s.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].message,
        "dup.csv: line 1: the header line names column `id` twice; fix the header and drop the file again"
    );
}

#[test]
fn a_ready_file_is_left_for_the_next_start_once_shutdown_began() {
    let s = Setup::new(FileFormat::Csv, None);
    s.write("x.csv", b"id\n1\n2\n3\n");
    let mut source = s.source(1);
    assert_eq!(source.scan().waiting, ["x.csv"]);
    s.stop.send_replace(true);
    assert_eq!(source.scan(), ScanReport::default(), "nothing imported once shutdown began");
    assert!(s.dir().join("x.csv").exists());
    s.stop.send_replace(false);
    assert_eq!(scan_twice(&mut s.source(1)).imported, ["x.csv"]);
    assert_eq!(s.queued().len(), 3);
}

/// Drops ten JSON Lines rows and imports them two per chunk on another thread, until
/// `waiting` records wait and several pause rechecks have passed; the scan goes on.
fn import_until(s: &Setup, waiting: u64) -> std::thread::JoinHandle<ScanReport> {
    let rows: String = (1..=10).map(|i| format!("{{\"payout\": {i}}}\n")).collect();
    s.write("payouts.jsonl", rows.as_bytes());
    let mut source = s.source(2);
    assert!(source.scan().imported.is_empty(), "first seen");
    let scan = std::thread::spawn(move || source.scan());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.queue.pending(FLOW).unwrap() < waiting {
        assert!(std::time::Instant::now() < deadline, "the first chunks were not imported");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(super::PAUSE_RECHECK * 3);
    scan
}

#[test]
fn an_import_pauses_while_the_backlog_is_past_max_pending_and_stops_at_shutdown_to_resume() {
    let s = Setup::with_spec(FileFormat::Jsonl, None, |spec| spec.runner.queue.max_pending = 3);
    // Two rows, then two more (4 waiting, past 3): the import pauses before the third chunk.
    let scan = import_until(&s, 4);
    assert_eq!(s.queue.pending(FLOW).unwrap(), 4, "no chunk imported while the backlog is past maxPending");
    assert!(!scan.is_finished());
    // Shutdown ends the pause; the file stays for the next start, its progress kept.
    s.stop.send_replace(true);
    let report = scan.join().unwrap();
    assert!(report.imported.is_empty() && !s.processed("payouts.jsonl"), "{report:?}");
    assert_eq!(s.queued().len(), 4);
}

#[test]
fn an_import_pauses_while_the_queue_holds_more_than_max_bytes() {
    let s = Setup::with_spec(FileFormat::Jsonl, None, |spec| spec.runner.queue.max_bytes = 100);
    let scan = import_until(&s, 2);
    assert!(s.queue.held_bytes() > 100);
    assert_eq!(s.queue.pending(FLOW).unwrap(), 2, "one chunk, then paused: the queue holds more than maxBytes");
    s.stop.send_replace(true);
    assert!(scan.join().unwrap().imported.is_empty());
}
