//! The file source: batch imports (settlement reports, bulk exports) dropped in a
//! directory as CSV or JSON Lines files, each file imported once, each row a record.
//!
//! Every `interval` the directory is scanned in name order. A file is imported only once
//! it looks complete: its name ends with the trigger's `suffix`, and its size and
//! modification time are unchanged since the previous scan and at least
//! [`FileOptions::min_age`] old. Writers should write `report.csv.part` and rename it to
//! `report.csv` when complete; the stability check is for those that do not.
//!
//! Rows are committed in chunks with the file's progress ([`import`]); a file whose rows
//! are all committed is moved to the processed directory. A file that cannot be read,
//! queued or moved is logged and counted, and tried again at the next scan; the other
//! files go on.

mod import;
mod rows;

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::watch;
use tracing::{debug, info, warn};

pub use import::{FileError, FileImport, Importer, RowError};
pub use rows::{InvalidRow, Position, Row, RowContent, RowReader};

use crate::{
    flow::{Flow, SourceMode, Workers},
    metrics::Metrics,
    queue::{BatchOutcome, DeadLetterReason, Queue},
};

use entrepot_api::resource::FileTrigger;

/// How soon a paused import looks at the queue again.
const PAUSE_RECHECK: Duration = Duration::from_millis(500);

/// Tuning of a file source. The defaults suit production; tests use smaller values.
#[derive(Clone, Copy, Debug)]
pub struct FileOptions {
    /// Rows committed per transaction. Bigger chunks mean fewer fsyncs; smaller ones
    /// less to read again after a crash (rows are never queued twice either way).
    pub chunk_rows: usize,
    /// How old a file's last modification must be before it is read.
    pub min_age: Duration,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self { chunk_rows: 500, min_age: Duration::from_secs(2) }
    }
}

/// What one scan did, by file name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Imported completely and moved aside.
    pub imported: Vec<String>,
    /// Seen, but not yet stable: read at a later scan.
    pub waiting: Vec<String>,
    /// Could not be imported (see the logs and `entrepot_files_failed_total`); tried again
    /// at the next scan.
    pub failed: Vec<String>,
}

/// Size and modification time of a file at one scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: SystemTime,
}

/// The file source of one flow.
pub struct FileSource {
    flow: Arc<Flow>,
    trigger: FileTrigger,
    importer: Importer,
    /// For backpressure: how full the queue is.
    queue: Queue,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
    min_age: Duration,
    /// What the previous scan saw, to tell a finished file from one still being written.
    seen: HashMap<String, Seen>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("flow", &self.flow.name())
            .field("trigger", &self.trigger)
            .finish_non_exhaustive()
    }
}

/// How an import ended.
enum Ended {
    /// Every row committed, the file moved to this path.
    Moved(PathBuf),
    /// Shutdown came first; the import resumes at the next start.
    Interrupted,
}

impl FileSource {
    /// The source of `flow`, watching as `trigger` says.
    pub fn new(flow: Arc<Flow>, trigger: FileTrigger, workers: &Workers, options: FileOptions) -> Self {
        let window = flow.config.spec.delivery.dedup_window.get();
        let importer = Importer::new(workers.queue.clone(), flow.name(), trigger.format, options.chunk_rows, window);
        Self {
            flow,
            trigger,
            importer,
            queue: workers.queue.clone(),
            metrics: workers.metrics.clone(),
            shutdown: workers.shutdown.clone(),
            min_age: options.min_age,
            seen: HashMap::new(),
        }
    }

    /// Scans the directory once and imports every file that is ready, in name order.
    /// Blocking: async callers run it on a blocking thread.
    pub fn scan(&mut self) -> ScanReport {
        let mut report = ScanReport::default();
        let mut ready = Vec::new();
        let previous = std::mem::take(&mut self.seen);
        for (name, path) in self.candidates(&mut report) {
            // The entry itself, not what a link points at: links are not followed.
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    self.failed(&mut report, name, FileError::NotRegular { file: path })
                }
                Ok(meta) if meta.is_file() => {
                    let seen = Seen { len: meta.len(), modified: meta.modified().unwrap_or(SystemTime::now()) };
                    let age = SystemTime::now().duration_since(seen.modified).unwrap_or_default();
                    if previous.get(&name) == Some(&seen) && age >= self.min_age {
                        ready.push((name.clone(), path));
                    } else {
                        report.waiting.push(name.clone());
                    }
                    self.seen.insert(name, seen);
                }
                // Subdirectories (the processed directory among them), sockets, FIFOs.
                Ok(_) => {}
                Err(source) => self.failed(&mut report, name, FileError::Open { file: path, source }),
            }
        }
        if !report.waiting.is_empty() {
            debug!(flow = %self.flow.name(), files = ?report.waiting, "files not yet stable; read at a later scan");
        }
        for (name, path) in ready {
            if *self.shutdown.borrow() {
                break;
            }
            match self.import(&path, &name) {
                Ok(Ended::Moved(to)) => {
                    self.metrics.files_processed.with_label_values(&[self.flow.name()]).inc();
                    info!(flow = %self.flow.name(), file = %name, moved_to = %to.display(), "file imported");
                    report.imported.push(name);
                }
                Ok(Ended::Interrupted) => break,
                Err(e) => self.failed(&mut report, name, e),
            }
        }
        report
    }

    /// Names and paths in the directory that the trigger takes, sorted by name.
    fn candidates(&self, report: &mut ScanReport) -> Vec<(String, PathBuf)> {
        let directory = Path::new(&self.trigger.directory);
        let entries = match fs::read_dir(directory) {
            Ok(entries) => entries,
            Err(source) => {
                let e = FileError::Directory { dir: directory.into(), source };
                self.metrics.files_failed.with_label_values(&[self.flow.name(), e.reason()]).inc();
                warn!(flow = %self.flow.name(), error = %e, "cannot list the watched directory; trying again at the next scan");
                return Vec::new();
            }
        };
        let suffix = self.trigger.suffix.as_deref().unwrap_or("");
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(source) => {
                    let name = directory.display().to_string();
                    self.failed(report, name, FileError::Directory { dir: directory.into(), source });
                    continue;
                }
            };
            match entry.file_name().into_string() {
                // Hidden files are editors' and uploaders' temporaries.
                Ok(name) if !name.starts_with('.') && name.ends_with(suffix) => names.push((name, entry.path())),
                Ok(_) => {}
                Err(raw) => {
                    warn!(flow = %self.flow.name(), file = ?raw, "file name is not UTF-8; rename it to have it imported");
                }
            }
        }
        names.sort();
        names
    }

    /// Imports one ready file and moves it aside.
    ///
    /// Crash safety rests on the order of the last two steps. The chunk that reaches the
    /// end of the file records the file as done in the same transaction as its rows; the
    /// move comes after. A crash between the two leaves the file in the directory with
    /// its progress done under the same fingerprint (a rename keeps size, modification
    /// time and content), so the next scan queues no row of it and only moves it. Moving
    /// first could instead leave a moved file whose last rows were never queued.
    fn import(&self, path: &Path, name: &str) -> Result<Ended, FileError> {
        let flow = self.flow.name();
        let mut import = self.importer.open(path, name)?;
        let mut paused = false;
        while !import.done() {
            if *self.shutdown.borrow() {
                info!(flow, file = name, "shutting down mid-file; the import resumes at the next start");
                return Ok(Ended::Interrupted);
            }
            // Backpressure, as for a poll run: the next chunk waits while the queue is
            // past its budget (its progress is committed, so nothing is held meanwhile).
            if let Some(why) = self.flow.max_pending.and_then(|max| self.flow.queue_full(&self.queue, max)) {
                if !std::mem::replace(&mut paused, true) {
                    info!(flow, file = name, reason = %why, "import paused until the queue drains");
                }
                std::thread::sleep(PAUSE_RECHECK);
                continue;
            }
            if std::mem::take(&mut paused) {
                info!(flow, file = name, "import resumed");
            }
            let outcome = import.next_chunk()?;
            self.count(&outcome);
        }
        let to = self.destination(name, import.fingerprint());
        fs::create_dir_all(self.trigger.processed_directory())
            .and_then(|()| fs::rename(path, &to))
            .map_err(|source| FileError::Move { file: path.into(), to: to.clone(), source })?;
        Ok(Ended::Moved(to))
    }

    /// `<processed>/<name>`, or `<processed>/<name>.<fingerprint>` when an earlier file
    /// of that name is there: imported files are kept, not overwritten.
    fn destination(&self, name: &str, fingerprint: &str) -> PathBuf {
        let dir = self.trigger.processed_directory();
        let plain = dir.join(name);
        if plain.exists() { dir.join(format!("{name}.{fingerprint}")) } else { plain }
    }

    fn count(&self, outcome: &BatchOutcome) {
        let (m, flow) = (&self.metrics, self.flow.name());
        m.count_received(flow, outcome.queued);
        m.count_duplicates(flow, "delivery_id", outcome.duplicates);
        m.count_dead_lettered(flow, None, DeadLetterReason::InvalidRecord, outcome.dead_lettered);
        if outcome.queued > 0 {
            self.flow.wake.notify_one();
        }
    }

    fn failed(&self, report: &mut ScanReport, name: String, error: FileError) {
        self.metrics.files_failed.with_label_values(&[self.flow.name(), error.reason()]).inc();
        warn!(flow = %self.flow.name(), file = %name, reason = error.reason(), error = %error,
              "cannot import a file; trying again at the next scan");
        report.failed.push(name);
    }
}

/// Runs `flow`'s file source until shutdown: a scan, then `interval`, and again; or,
/// in [`SourceMode::Once`], one scan.
pub async fn run(flow: Arc<Flow>, trigger: FileTrigger, workers: Workers, mode: SourceMode) {
    let interval = trigger.interval();
    let mut shutdown = workers.shutdown.clone();
    let queue = workers.queue.clone();
    let mut source = FileSource::new(flow.clone(), trigger, &workers, FileOptions::default());
    loop {
        if !flow.leads(&queue, "file").await {
            // Another runner of the flow imports; ask again soon, to take over if it goes.
            tokio::select! {
                _ = tokio::time::sleep(crate::flow::FOLLOWER_RECHECK.min(interval)) => continue,
                _ = shutdown.changed() => return,
            }
        }
        let report;
        (source, report) = tokio::task::spawn_blocking(move || {
            let report = source.scan();
            (source, report)
        })
        .await
        .expect("a file scan panicked");
        if *shutdown.borrow() {
            return;
        }
        // A batch run's pass ends once no file waits to be seen stable; files being
        // written go on waiting, a second apart, so the pass takes what is complete.
        let wait = match mode {
            SourceMode::Once if report.waiting.is_empty() => return,
            SourceMode::Once => Duration::from_secs(1).min(interval),
            SourceMode::Continuous => interval,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
