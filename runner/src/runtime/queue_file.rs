//! Opening the runner's queue file, and setting a corrupt one aside.
//!
//! A queue file redb reports as corrupt would fail every start: the runner crash-loops
//! and delivers nothing, and its records are out of reach either way. So such a file is
//! renamed `queue.redb.corrupt-<unix seconds>` (nothing is deleted), the runner starts
//! with an empty queue, and says so loudly: an error log, `entrepot_queue_set_aside_total`
//! and `queue.setAside` in `/v1/status`. Automatic rather than behind a flag, because in
//! a cluster nobody is there to pass the flag while the pod crash-loops; only redb's
//! "corrupted" verdict triggers it, never an I/O error, a lock held by another process
//! or a format from a newer version (those fail the start as before). What the set-aside
//! file still holds is read with `entrepot deadletters --queue-file <file>`.

use std::path::{Path, PathBuf};

use tracing::error;

use crate::queue::{Queue, QueueError, RedbQueue, TargetNames};

/// The queue file's name in the data directory.
const FILE: &str = "queue.redb";

/// An opened queue, and the corrupt file set aside to open it, if any.
pub(super) struct Opened {
    pub(super) queue: Queue,
    pub(super) set_aside: Option<PathBuf>,
}

/// Opens (or creates) the queue in `data_dir`, setting a corrupt file aside.
pub(super) fn open(data_dir: &Path, targets: &TargetNames) -> Result<Opened, QueueError> {
    let path = data_dir.join(FILE);
    match RedbQueue::open_migrating(&path, targets) {
        Err(e) if e.is_corrupt() => {
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let aside = data_dir.join(format!("{FILE}.corrupt-{stamp}"));
            std::fs::rename(&path, &aside)?;
            error!(
                file = %aside.display(), error = %e,
                "the queue file is corrupt: set aside, starting with an empty queue; records and dead letters it held \
                 are NOT being delivered: read them with `entrepot deadletters --queue-file {}`",
                aside.display()
            );
            let queue = RedbQueue::open_migrating(&path, targets)?;
            Ok(Opened { queue, set_aside: Some(aside) })
        }
        other => Ok(Opened { queue: other?, set_aside: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_queue_file_is_set_aside_and_an_empty_queue_opened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), vec![0xAB; 64 * 1024]).unwrap();
        let opened = open(dir.path(), &TargetNames::new()).unwrap();
        let aside = opened.set_aside.expect("set aside");
        assert!(aside.file_name().unwrap().to_str().unwrap().starts_with("queue.redb.corrupt-"));
        assert_eq!(std::fs::read(&aside).unwrap(), vec![0xAB; 64 * 1024], "kept as it was");
        assert_eq!(opened.queue.pending_total().unwrap(), 0);
    }

    #[test]
    fn a_sound_queue_file_is_opened_as_is() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), &TargetNames::new()).unwrap());
        let opened = open(dir.path(), &TargetNames::new()).unwrap();
        assert!(opened.set_aside.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
