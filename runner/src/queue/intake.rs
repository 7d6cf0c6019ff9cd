//! Batch intake for sources that read many records at once (a poller's page, a file's
//! rows): the records, the dead letters of the ones that could not be read, and the
//! source's progress (cursor, watermark, files done) are committed in one transaction,
//! so after a crash a source resumes exactly where its last commit left it: nothing it
//! committed is read twice, nothing it read is lost.

use super::{DeadLetter, Envelope};

/// One thing a source read.
#[derive(Clone, Debug)]
pub enum Intake {
    /// A record to queue (unless its delivery id was already accepted).
    Record(Envelope),
    /// Something that could not be read as a record (a bad CSV row), kept with why.
    DeadLetter(DeadLetter),
}

/// What a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records queued.
    pub queued: u64,
    /// Records dropped because their delivery id was already accepted.
    pub duplicates: u64,
    /// Dead letters written.
    pub dead_lettered: u64,
}
