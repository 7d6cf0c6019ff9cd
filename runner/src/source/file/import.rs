//! Importing one file: its rows in chunks, each chunk committed to the queue in one
//! transaction together with how far the file has been read, so a restart resumes at the
//! first row not yet committed: no row is queued twice, none is skipped.
//!
//! A file is known by a fingerprint of its size, modification time and first KiB, so a
//! new file dropped under the name of an old one is read from its start.

use std::{
    fs::{File, Metadata},
    io,
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::warn;

use super::rows::{InvalidRow, Position, Row, RowContent, RowReader};
use crate::queue::{BatchOutcome, DeadLetter, DeadLetterReason, Envelope, Intake, Queue, QueueError, now_ms};
use entrepot_api::resource::FileFormat;

/// A file could not be imported this time; it is tried again at the next scan.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The watched directory cannot be listed.
    #[error("cannot list {dir}: {source}; check that the volume is mounted and readable")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file cannot be opened: permissions, a dangling link.
    #[error("{file}: cannot open: {source}")]
    Open {
        /// The file.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The entry is a symbolic link, or no regular file: it is not followed (a link to
    /// `/proc/self/environ` would turn the runner's secrets into records).
    #[error(
        "{file}: not a regular file in the watched directory (a symbolic link?); it is not read: put the file \
         itself there"
    )]
    NotRegular {
        /// The entry.
        file: PathBuf,
    },
    /// The file cannot be read part-way.
    #[error("{file}: line {line}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The line the import had reached.
        line: u64,
        /// Why.
        source: io::Error,
    },
    /// The queue failed: the file's progress cannot be read or its rows committed.
    #[error("{file}: line {line}: the queue failed, nothing from this line on is committed: {source}")]
    Store {
        /// The file.
        file: PathBuf,
        /// The first line not committed.
        line: u64,
        /// Why.
        source: QueueError,
    },
    /// The saved progress of the file cannot be decoded.
    #[error("{file}: the saved import progress is unreadable ({source}); the queue may be damaged")]
    Progress {
        /// The file.
        file: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// Every row is committed but the file cannot be moved aside.
    #[error(
        "{file}: imported, but cannot be moved to {to}: {source}; processedDirectory must be a writable directory on the same volume"
    )]
    Move {
        /// The file.
        file: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl FileError {
    /// The fixed metric label of the failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Directory { .. } => "directory",
            Self::Open { .. } | Self::Read { .. } => "unreadable",
            Self::NotRegular { .. } => "not_regular",
            Self::Store { .. } | Self::Progress { .. } => "store",
            Self::Move { .. } => "move",
        }
    }
}

/// A row that is not a record, as the message of its dead letter.
#[derive(Debug, thiserror::Error)]
#[error("{file}: line {line}: {problem}")]
pub struct RowError {
    /// The file's name.
    pub file: String,
    /// The row's line.
    pub line: u64,
    /// What is wrong with it.
    pub problem: InvalidRow,
}

/// How far a file's import got, as committed with its rows.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    fingerprint: String,
    next: Position,
    done: bool,
}

/// Imports the files of one flow.
#[derive(Clone, Debug)]
pub struct Importer {
    queue: Queue,
    flow: String,
    format: FileFormat,
    chunk_rows: usize,
    dedup_window_ms: i64,
}

impl Importer {
    /// Imports files in `format` into `flow`'s queue, `chunk_rows` rows per transaction;
    /// each row's delivery id is remembered for `dedup_window`.
    pub fn new(
        queue: Queue,
        flow: &str,
        format: FileFormat,
        chunk_rows: usize,
        dedup_window: std::time::Duration,
    ) -> Self {
        Self {
            queue,
            flow: flow.into(),
            format,
            chunk_rows: chunk_rows.max(1),
            dedup_window_ms: i64::try_from(dedup_window.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Opens the file at `path` (named `name` in the directory) where its committed
    /// progress left it: at the start, part-way, or already done.
    pub fn open(&self, path: &Path, name: &str) -> Result<FileImport, FileError> {
        let open_err = |source| FileError::Open { file: path.into(), source };
        // O_NOFOLLOW: a link put in the file's place after the scan is not followed either.
        let file =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(|source| {
                match source.raw_os_error() {
                    Some(libc::ELOOP) => FileError::NotRegular { file: path.into() },
                    _ => open_err(source),
                }
            })?;
        let meta = file.metadata().map_err(open_err)?;
        if !meta.is_file() {
            return Err(FileError::NotRegular { file: path.into() });
        }
        let fingerprint = fingerprint(&file, &meta).map_err(open_err)?;
        let key = format!("file:{name}");
        let saved = self.queue.source_state(&self.flow, &key).map_err(|source| FileError::Store {
            file: path.into(),
            line: 1,
            source,
        })?;
        let saved: Option<Progress> = match saved {
            Some(bytes) => Some(
                serde_json::from_slice(&bytes).map_err(|source| FileError::Progress { file: path.into(), source })?,
            ),
            None => None,
        };
        // Progress of another file that had this name is no progress of this one.
        let progress = saved.filter(|p| p.fingerprint == fingerprint).unwrap_or(Progress {
            fingerprint,
            next: Position::START,
            done: false,
        });
        let rows = if progress.done {
            None
        } else {
            let read_err = |source| FileError::Read { file: path.into(), line: progress.next.line, source };
            Some(RowReader::open(file, self.format, progress.next).map_err(read_err)?)
        };
        Ok(FileImport { importer: self.clone(), path: path.into(), name: name.into(), key, progress, rows })
    }
}

/// One file being imported.
pub struct FileImport {
    importer: Importer,
    path: PathBuf,
    name: String,
    key: String,
    progress: Progress,
    /// `None` once every row is committed.
    rows: Option<RowReader>,
}

impl std::fmt::Debug for FileImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileImport").field("path", &self.path).field("progress", &self.progress).finish_non_exhaustive()
    }
}

impl FileImport {
    /// Every row is queued or dead-lettered, and that is committed.
    pub fn done(&self) -> bool {
        self.progress.done
    }

    /// The file's fingerprint (its size, modification time and first KiB, hashed).
    pub fn fingerprint(&self) -> &str {
        &self.progress.fingerprint
    }

    /// Reads up to a chunk of rows and commits them with the position reached; the
    /// chunk that reaches the end of the file also records the file as done.
    pub fn next_chunk(&mut self) -> Result<BatchOutcome, FileError> {
        let Some(rows) = self.rows.as_mut() else {
            return Ok(BatchOutcome::default());
        };
        let first_line = self.progress.next.line;
        let now = now_ms();
        let mut items = Vec::new();
        let mut done = false;
        while items.len() < self.importer.chunk_rows {
            let row = rows.next_row().map_err(|source| FileError::Read {
                file: self.path.clone(),
                line: rows.position().line,
                source,
            })?;
            match row {
                Some(row) => items.push(intake(&self.importer.flow, &self.name, &self.progress.fingerprint, row, now)),
                None => {
                    done = true;
                    break;
                }
            }
        }
        let progress = Progress { fingerprint: self.progress.fingerprint.clone(), next: rows.position(), done };
        let state = serde_json::to_vec(&progress).expect("progress serializes");
        let importer = &self.importer;
        let expires = now.saturating_add(importer.dedup_window_ms);
        let outcome = importer
            .queue
            .accept_batch(&importer.flow, &items, expires, &[(self.key.as_str(), state.as_slice())])
            .map_err(|source| FileError::Store { file: self.path.clone(), line: first_line, source })?;
        self.progress = progress;
        if done {
            self.rows = None;
        }
        Ok(outcome)
    }
}

/// What a row becomes: a record, or a dead letter naming the file, the line and why.
fn intake(flow: &str, name: &str, fingerprint: &str, row: Row, now: i64) -> Intake {
    let id = uuid::Uuid::now_v7().to_string();
    let envelope = |payload| Envelope {
        id,
        // The fingerprint keeps a new file under an old name from being taken for a re-read.
        delivery_id: Some(format!("{name}:{}@{fingerprint}", row.line)),
        source_delivery_id: None,
        event_id: None,
        topic: None,
        correlation_id: format!("{name}:{}", row.line),
        trace_parent: None,
        received_at_ms: now,
        payload,
        replay: None,
    };
    match row.content {
        RowContent::Record(json) => Intake::Record(envelope(json)),
        RowContent::Invalid { raw, problem } => {
            let error = RowError { file: name.into(), line: row.line, problem };
            let envelope = envelope(raw);
            warn!(flow, file = name, line = row.line, correlation_id = %envelope.correlation_id, error = %error.problem,
                  "row dead-lettered: not a record");
            Intake::DeadLetter(DeadLetter {
                envelope,
                target: None,
                reason: DeadLetterReason::InvalidRecord,
                message: error.to_string(),
                status: None,
                response_body: None,
                attempts: Vec::new(),
                dead_lettered_at_ms: now,
            })
        }
    }
}

/// A hash of the file's size, modification time and first KiB: the same file keeps it
/// (a rename keeps all three), a file replaced under the same name almost never does.
fn fingerprint(file: &File, meta: &Metadata) -> io::Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(meta.len().to_le_bytes());
    let modified = meta.modified()?.duration_since(UNIX_EPOCH).unwrap_or_default();
    hasher.update(modified.as_nanos().to_le_bytes());
    // A positioned read: the rows are read from the same handle, from its start.
    let mut head = [0u8; 1024];
    let mut len = 0;
    while len < head.len() {
        match file.read_at(&mut head[len..], len as u64)? {
            0 => break,
            n => len += n,
        }
    }
    hasher.update(&head[..len]);
    let digest = hasher.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}
