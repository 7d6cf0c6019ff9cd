//! Group commit: a `postgres` target's writer tasks, one per connection, take whatever
//! records are waiting (up to a batch), write them in one transaction and answer each.
//!
//! A batch is first written as it comes, its statements pipelined. If the database
//! refuses a record for a business reason the transaction is rolled back and the batch
//! written again with a savepoint around each record, so only the refused records are
//! answered with a rejection and the others are committed. A transient failure
//! (connection lost, serialization failure, deadlock) answers the whole batch with a
//! retry: nothing of it was committed.

use std::{sync::Arc, time::Duration};

use futures::future::join_all;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::{Client, Statement, types::ToSql};
use tracing::{debug, warn};

use super::table::Table;
use crate::{
    postgres::{Database, Failure},
    protocol::Verdict,
};

/// Records written in one transaction at most.
pub const BATCH: usize = 100;

/// How long one batch may take before the connection is given up and the batch retried.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// One record waiting to be written.
pub struct Job {
    /// The record, JSON text.
    pub record: String,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Verdict>,
}

/// Starts `connections` writers for `table`; they stop when the returned sender is
/// dropped.
pub fn start(database: Database, table: Arc<Table>, connections: usize) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(connections * BATCH);
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..connections {
        let writer = Writer { database: database.clone(), table: table.clone(), client: None, insert: None };
        tokio::spawn(writer.run(rx.clone()));
    }
    tx
}

struct Writer {
    database: Database,
    table: Arc<Table>,
    client: Option<Client>,
    /// The insert, prepared on the current connection: one per table, since every record
    /// writes the table's declared columns.
    insert: Option<Statement>,
}

impl Writer {
    async fn run(mut self, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
        loop {
            let batch = {
                let mut jobs = jobs.lock().await;
                let Some(first) = jobs.recv().await else { return };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                batch
            };
            let verdicts = match tokio::time::timeout(BATCH_TIMEOUT, self.write(&batch)).await {
                Ok(verdicts) => verdicts,
                Err(_) => {
                    self.reset();
                    let failure = Failure::unreachable(format!("no answer from the database within {BATCH_TIMEOUT:?}"));
                    vec![failure.verdict; batch.len()]
                }
            };
            debug!(connector = %self.database.connector(), table = %self.table.name, records = batch.len(), "batch written");
            for (job, verdict) in batch.into_iter().zip(verdicts) {
                // The sender may have stopped waiting (shutdown): the record stays queued.
                let _ = job.reply.send(verdict);
            }
        }
    }

    /// Forgets the connection (and what was prepared on it): the next batch reconnects.
    fn reset(&mut self) {
        self.client = None;
        self.insert = None;
    }

    /// Writes `batch`; one verdict per job, in order.
    async fn write(&mut self, batch: &[Job]) -> Vec<Verdict> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.reset();
            match self.database.connect().await {
                Ok(client) => self.client = Some(client),
                Err(failure) => return vec![failure.verdict; batch.len()],
            }
        }
        // Prepared once per connection; a statement the database refuses (an unknown
        // column) refuses every record.
        let client = self.client.as_ref().expect("connected above");
        if self.insert.is_none() {
            match client.prepare(&self.table.insert_sql()).await {
                Ok(statement) => self.insert = Some(statement),
                Err(e) => {
                    let failure = Failure::of(&e);
                    if !failure.is_business() {
                        self.reset();
                    }
                    return vec![failure.verdict; batch.len()];
                }
            }
        }
        let insert = self.insert.as_ref().expect("prepared above");
        let rows: Vec<(usize, &Statement, &str)> =
            batch.iter().enumerate().map(|(i, job)| (i, insert, job.record.as_str())).collect();
        let mut verdicts: Vec<Option<Verdict>> = vec![None; batch.len()];
        let outcome = match all_or_nothing(client, &rows).await {
            Ok(()) => Ok(vec![None; rows.len()]),
            Err(failure) if failure.is_business() => row_by_row(client, &rows).await,
            Err(failure) => Err(failure),
        };
        match outcome {
            Ok(refusals) => {
                for ((i, _, record), refusal) in rows.iter().zip(refusals) {
                    verdicts[*i] = Some(match refusal {
                        None => Verdict::Delivered,
                        Some(failure) => name_the_column(client, &self.table, record, failure).await,
                    });
                }
                verdicts.into_iter().map(|v| v.expect("every record answered")).collect()
            }
            Err(failure) => {
                warn!(connector = %self.database.connector(), table = %self.table.name, records = batch.len(),
                      error = %failure.reason(), "batch not written; it will be retried");
                self.reset();
                vec![failure.verdict; batch.len()]
            }
        }
    }
}

/// Writes every row in one transaction, the statements pipelined (one round trip for
/// the lot). The first failure, if any; then nothing was written.
async fn all_or_nothing(client: &Client, rows: &[(usize, &Statement, &str)]) -> Result<(), Failure> {
    if rows.is_empty() {
        return Ok(());
    }
    client.batch_execute("BEGIN").await.map_err(|e| Failure::of(&e))?;
    let params: Vec<[&(dyn ToSql + Sync); 1]> =
        rows.iter().map(|(_, _, record)| [record as &(dyn ToSql + Sync)]).collect();
    let results =
        join_all(rows.iter().zip(&params).map(|((_, statement, _), params)| client.execute(*statement, params))).await;
    // Pipelined: after the first error the others only say the transaction is aborted.
    if let Some(e) = results.into_iter().find_map(Result::err) {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(Failure::of(&e));
    }
    client.batch_execute("COMMIT").await.map_err(|e| Failure::of(&e))
}

/// Writes the rows in one transaction with a savepoint around each, so a row the
/// database refuses is rolled back alone. Per row: its refusal, if any. A transient
/// failure: `Err`, nothing written. A commit refused for a business reason (a deferred
/// constraint) leaves no way to tell which row broke it: each row is then written in a
/// transaction of its own.
async fn row_by_row(client: &Client, rows: &[(usize, &Statement, &str)]) -> Result<Vec<Option<Failure>>, Failure> {
    let commit = async {
        client.batch_execute("BEGIN").await.map_err(|e| Failure::of(&e))?;
        let mut refusals = Vec::with_capacity(rows.len());
        for (_, statement, record) in rows {
            let params: [&(dyn ToSql + Sync); 1] = [record];
            let (saved, written) =
                tokio::join!(client.batch_execute("SAVEPOINT record"), client.execute(*statement, &params));
            saved.map_err(|e| Failure::of(&e))?;
            match written {
                Ok(_) => refusals.push(None),
                Err(e) => {
                    let failure = Failure::of(&e);
                    if !failure.is_business() {
                        return Err(failure);
                    }
                    client.batch_execute("ROLLBACK TO SAVEPOINT record").await.map_err(|e| Failure::of(&e))?;
                    refusals.push(Some(failure));
                }
            }
        }
        client.batch_execute("COMMIT").await.map_err(|e| Failure::of(&e))?;
        Ok(refusals)
    };
    let result: Result<Vec<Option<Failure>>, Failure> = commit.await;
    match result {
        Ok(refusals) => Ok(refusals),
        Err(failure) => {
            let _ = client.batch_execute("ROLLBACK").await;
            if !failure.is_business() || rows.len() == 1 {
                return if rows.len() == 1 && failure.is_business() { Ok(vec![Some(failure)]) } else { Err(failure) };
            }
            let mut refusals = Vec::with_capacity(rows.len());
            for row in rows {
                refusals.push(Box::pin(row_by_row(client, std::slice::from_ref(row))).await?.pop().flatten());
            }
            Ok(refusals)
        }
    }
}

/// The refusal of a record, with the column named when the database did not name it:
/// for a data exception (a value its column cannot take), each column is converted on
/// its own until one fails.
async fn name_the_column(client: &Client, table: &Table, record: &str, failure: Failure) -> Verdict {
    let Verdict::Reject { reason, category } = failure.verdict.clone() else { return failure.verdict };
    if !failure.is_data_exception() || reason.starts_with("column ") {
        return failure.verdict;
    }
    let probe = table.probe_sql();
    for column in table.columns() {
        if client.execute(probe.as_str(), &[&record, column]).await.is_err() {
            return Verdict::Reject { reason: format!("column \"{column}\": {reason}"), category };
        }
    }
    failure.verdict
}
