//! A full disk, for real: the queue on a tmpfs of a few MiB. Mounting needs root; where
//! it is refused the test says so and passes (the CI runner and the dev container are root).

use std::{path::Path, process::Command};

use crate::queue::{Accepted, Envelope, QueueError, RedbQueue, redb::tests::envelope};

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        let mounted = status.is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        }
        mounted.then(|| Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn large(i: usize) -> Envelope {
    let mut e = envelope(&format!("r{i}"), Some(&format!("d{i}")));
    e.payload = vec![b'x'; 64 * 1024];
    e
}

/// Fills the queue on `fs` with records of 64 KiB until a write fails; returns how many
/// were queued.
fn fill(q: &crate::queue::Queue) -> usize {
    let mut queued = 0;
    loop {
        match q.accept("f", &large(queued), i64::MAX) {
            Ok(Accepted::Queued(_)) => queued += 1,
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                assert!(e.to_string().contains("No space left"), "{e}");
                return queued;
            }
        }
        assert!(queued < 100, "a 4 MiB filesystem took {queued} records of 64 KiB");
    }
}

#[test]
fn after_a_full_disk_the_queue_takes_writes_again_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![1u8; 1536 * 1024]).unwrap();
    let q = RedbQueue::open(&fs.path().join("queue.redb")).unwrap();
    let queued = fill(&q);
    assert!(queued > 0);
    // redb now refuses every write until reopened (`PreviousIo`); the store reopens it,
    // and this write fails for want of space only.
    assert!(q.accept("f", &large(1000), i64::MAX).is_err(), "the disk is still full");

    std::fs::remove_file(&filler).unwrap();
    assert!(matches!(q.accept("f", &large(1001), i64::MAX).unwrap(), Accepted::Queued(_)));
    q.check().unwrap();
    // Nothing acknowledged before the disk filled was lost.
    let inbox = q.inbox("f", 1000).unwrap();
    assert_eq!(inbox.len(), queued + 1);
    assert_eq!(inbox[0].1.id, "r0");
}

#[test]
fn a_latched_queue_that_cannot_be_reopened_fails_its_check_until_it_can() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let path = fs.path().join("queue.redb");
    let q = RedbQueue::open(&path).unwrap();
    let queued = fill(&q);
    q.check().unwrap_or_else(|e| panic!("nothing has noticed the latch yet: {e}"));
    // The file cannot be opened again (it stands for a volume that cannot be written).
    let aside = fs.path().join("moved");
    std::fs::rename(&path, &aside).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert!(q.accept("f", &large(1000), i64::MAX).is_err());
    let checked = q.check().unwrap_err();
    assert!(matches!(checked, QueueError::Latched { .. }), "{checked}");
    assert!(q.latched().is_some_and(|r| r.contains("reopening failed")), "{:?}", q.latched());
    assert!(q.check().is_err(), "still latched");
    assert!(q.accept("f", &large(1001), i64::MAX).is_err());

    std::fs::remove_dir(&path).unwrap();
    std::fs::rename(&aside, &path).unwrap();
    q.check().expect("reopened and writable");
    assert_eq!(q.latched(), None);
    assert_eq!(q.inbox("f", 1000).unwrap().len(), queued);
}
