//! A poller's progress, kept in the queue's source state under two keys per flow:
//!
//! - `poll.watermark`: the highest watermark of the last *complete* run; the next run
//!   asks for records from it on.
//! - `poll.run`: the run in progress: the watermark it asked with, the highest value
//!   among the records committed so far, and the next page. Empty when no run is open.
//!
//! Each page's records are committed in the same transaction as `poll.run` pointing
//! past that page, so a crash loses at most the page being fetched, and a restart
//! fetches that page again: nothing committed is queued twice, nothing is skipped.
//!
//! The watermark moves only when a run completes. Records are rarely sorted by the
//! watermark field (Shopify pages by id), so a watermark taken mid-run and used after a
//! crash would skip the remaining pages' records older than it. A resumed run keeps the
//! watermark it started with, since a cursor belongs to the query that produced it. If
//! the source refuses a resumed page (an expired cursor), the run is dropped and the next
//! one starts again from the committed watermark; what it reads again is dropped as
//! duplicate deliveries.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::page::Page;
use crate::queue::{Queue, QueueError};

/// Source-state key of the committed watermark.
pub const WATERMARK: &str = "poll.watermark";
/// Source-state key of the run in progress.
pub const RUN: &str = "poll.run";

/// A poll run in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The watermark the run's first page was asked with.
    pub since: Option<Value>,
    /// The highest watermark among the records committed by this run (starting from
    /// `since`).
    pub high: Option<Value>,
    /// The page to fetch next.
    pub next: Page,
    /// Pages committed by this run.
    pub pages: u64,
}

impl Run {
    /// A new run from the committed watermark (or the trigger's `initial`).
    pub fn start(since: Option<Value>) -> Self {
        Self { high: since.clone(), since, next: Page::First, pages: 0 }
    }
}

/// What the queue holds of a poller's progress.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// The committed watermark.
    pub watermark: Option<Value>,
    /// The run in progress.
    pub run: Option<Run>,
}

impl Progress {
    /// Reads `flow`'s progress.
    pub fn load(queue: &Queue, flow: &str) -> Result<Self, QueueError> {
        let read = |key: &str| -> Result<Option<Vec<u8>>, QueueError> {
            Ok(queue.source_state(flow, key)?.filter(|bytes| !bytes.is_empty()))
        };
        let watermark = read(WATERMARK)?.map(|b| decode(flow, WATERMARK, &b)).transpose()?;
        let run = read(RUN)?.map(|b| decode(flow, RUN, &b)).transpose()?;
        Ok(Self { watermark, run })
    }
}

/// The state to commit with a page: the run pointing at the next page, or, after the
/// last page, the new watermark with the run closed.
pub fn after_page(run: &Run, last: bool) -> Vec<(&'static str, Vec<u8>)> {
    if last { vec![(WATERMARK, json(&run.high)), (RUN, Vec::new())] } else { vec![(RUN, json(run))] }
}

/// The state that drops an open run (the next run starts from the watermark).
pub fn drop_run() -> Vec<(&'static str, Vec<u8>)> {
    vec![(RUN, Vec::new())]
}

fn decode<T: serde::de::DeserializeOwned>(flow: &str, key: &str, bytes: &[u8]) -> Result<T, QueueError> {
    serde_json::from_slice(bytes).map_err(|source| QueueError::Decode { key: format!("{flow}/{key}"), source })
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("progress always serializes")
}

/// `state` in the shape `Queue::accept_batch` takes.
pub fn as_refs<'a>(state: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'a str, &'a [u8])> {
    state.iter().map(|(k, v)| (*k, v.as_slice())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips_through_the_queue_and_a_closed_run_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let queue = crate::queue::RedbQueue::open(&dir.path().join("q.redb")).unwrap();
        assert_eq!(Progress::load(&queue, "f").unwrap(), Progress::default());
        let mut run = Run::start(Some(Value::from("2026-01-01T00:00:00Z")));
        run.next = Page::Cursor("c2".into());
        run.pages = 1;
        queue.accept_batch("f", &[], 0, &as_refs(&after_page(&run, false))).unwrap();
        assert_eq!(Progress::load(&queue, "f").unwrap(), Progress { watermark: None, run: Some(run.clone()) });

        run.high = Some(Value::from("2026-02-01T00:00:00Z"));
        queue.accept_batch("f", &[], 0, &as_refs(&after_page(&run, true))).unwrap();
        let progress = Progress::load(&queue, "f").unwrap();
        assert_eq!(progress, Progress { watermark: run.high.clone(), run: None });
    }
}
