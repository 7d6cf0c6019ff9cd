//! A `sql` poll of a `postgres` source: the trigger's query, run page after page, each
//! row a record (a JSON object by column, through `to_jsonb`, so every type converts).
//!
//! Pages follow the watermark (keyset pagination): `$1` is the highest `watermark.field`
//! read so far, as text, and the query orders by that column, so each page asks for the
//! rows after the previous page's last. The run ends at a page that is empty or does not
//! move the watermark. Progress is committed with each page as for an HTTP poll
//! (`progress`); since rows come in watermark order, a resumed run asks from the highest
//! value committed, and what it reads again is dropped as duplicate deliveries.

use serde_json::Value;
use tokio_postgres::{Client, types::Type};
use tracing::warn;

use super::{
    progress::Run,
    run::{Poller, RunEnd, RunReport},
    watermark,
};
use crate::{
    attempt::{Failed, Outcome, with_retries},
    postgres::{Database, Failure},
};

impl Poller {
    /// A database's run: `sql` page after page until the watermark stops moving.
    pub(super) async fn poll_sql(
        &self,
        database: &Database,
        sql: &str,
        run_id: String,
        mut report: RunReport,
        mut run: Run,
    ) -> RunReport {
        let source = self.source();
        let query = wrap(sql);
        let mut client = None;
        loop {
            if self.pauses(&run_id).await {
                return report.ended(RunEnd::Paused);
            }
            let since = source.trigger().watermark.as_ref().map(|_| run.high.as_ref().and_then(watermark::as_param));
            let rows = match self
                .read_page(database, &mut client, &query, since.as_ref().map(Option::as_deref), &run_id)
                .await
            {
                Ok(rows) => rows,
                Err(failure) => {
                    let (category, message) = (failure.category(), failure.reason().to_string());
                    warn!(flow = %self.flow.name(), run = %run_id, page = run.pages + 1, category = category.as_str(),
                          error = %message, "poll run failed");
                    return report.ended(RunEnd::Failed { category, message });
                }
            };
            let mut records = Vec::with_capacity(rows.len());
            for (i, text) in rows.iter().enumerate() {
                match serde_json::from_str::<Value>(text) {
                    Ok(record) => records.push(record),
                    // to_jsonb always gives JSON: this is not expected, but say so.
                    Err(e) => return self.invalid(report, &run_id, format!("row {i} of the page is not JSON: {e}")),
                }
            }
            let before = run.high.clone();
            for record in &records {
                if let Some(value) = source.watermark_of(record) {
                    run.high = watermark::higher(run.high.take(), value);
                }
            }
            run.pages += 1;
            let last = records.is_empty() || since.is_none() || run.high == before;
            if let Err(end) = self.queue_page(&run_id, &run, &records, last, &mut report).await {
                return report.ended(end);
            }
            if last {
                return report;
            }
        }
    }

    /// Runs the query once (with `$1` when the trigger has a watermark), retrying
    /// transient failures (connection lost, serialization failure) with the flow's retry
    /// policy; a query the database refuses (a syntax error, an unknown column) fails the
    /// run at once.
    async fn read_page(
        &self,
        database: &Database,
        client: &mut Option<Client>,
        query: &str,
        since: Option<Option<&str>>,
        run_id: &str,
    ) -> Result<Vec<String>, Failure> {
        let name = self.flow.name();
        let health = &self.source().client().health;
        let policy = &self.flow.config.spec.delivery.retry;
        // The connection is kept across pages and attempts; a failed attempt drops it.
        let connection = std::sync::Mutex::new(client.take());
        let attempt = |_| async {
            let kept = connection.lock().unwrap_or_else(|p| p.into_inner()).take().filter(|c| !c.is_closed());
            let result = match kept {
                Some(c) => {
                    let rows = run_query(&c, query, since).await;
                    *connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
                    rows
                }
                None => match connect_read_only(database).await {
                    Ok(c) => {
                        let rows = run_query(&c, query, since).await;
                        *connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
                        rows
                    }
                    Err(failure) => Err(failure),
                },
            };
            match result {
                Ok(rows) => {
                    health.succeeded();
                    Ok(rows)
                }
                Err(failure) => {
                    health.failed(failure.category(), failure.reason());
                    self.metrics.poll_errors.with_label_values(&[name, failure.category().as_str()]).inc();
                    Err(Failed { verdict: failure.verdict.clone(), detail: failure })
                }
            }
        };
        let outcome = with_retries(policy, None, attempt, |failure: &Failure, attempt, delay| {
            *connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
            warn!(flow = %name, run = %run_id, attempt, retry_in_ms = delay.as_millis() as u64,
                  category = failure.category().as_str(), error = %failure.reason(), "poll query failed; will retry");
        })
        .await;
        *client = connection.into_inner().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Outcome::Done(rows) => Ok(rows),
            Outcome::Refused { last, .. }
            | Outcome::Exhausted { last, .. }
            | Outcome::ThrottledTooLong { last, .. } => Err(last),
            Outcome::Interrupted => unreachable!("no shutdown to interrupt the wait"),
        }
    }
}

/// The trigger's query with each row turned into JSON text.
fn wrap(sql: &str) -> String {
    let sql = sql.trim().trim_end_matches(';').trim_end();
    format!("SELECT to_jsonb(page)::text FROM ({sql}\n) AS page")
}

/// A connection that can only read: a poll query never changes the source.
async fn connect_read_only(database: &Database) -> Result<Client, Failure> {
    let client = database.connect().await?;
    client.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY").await.map_err(|e| Failure::of(&e))?;
    Ok(client)
}

async fn run_query(client: &Client, query: &str, since: Option<Option<&str>>) -> Result<Vec<String>, Failure> {
    let rows = match since {
        Some(since) => client.query_typed(query, &[(&since, Type::TEXT)]).await,
        None => client.query(query, &[]).await,
    }
    .map_err(|e| Failure::of(&e))?;
    rows.iter().map(|row| row.try_get::<_, String>(0).map_err(|e| Failure::of(&e))).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_row_becomes_json_text_whatever_the_query_ends_with() {
        assert_eq!(
            super::wrap("SELECT * FROM items LIMIT 5 ;\n"),
            "SELECT to_jsonb(page)::text FROM (SELECT * FROM items LIMIT 5\n) AS page"
        );
    }
}
