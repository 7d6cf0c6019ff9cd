//! One flow's poller: the loop that starts a run every `interval`, and the run itself,
//! page after page, each committed with the run's progress (see `progress`).

use std::{sync::Arc, time::Duration};

use reqwest::{Url, header::ACCEPT};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    PollSetupError, PollSource, delivery_id,
    page::{self, PageEnd},
    progress::{self, Progress, Run},
    watermark,
};
use crate::{
    attempt::{Failed, Outcome, with_retries},
    connect::{ConnectorClient, Sent, body::read_prefix},
    flow::{FOLLOWER_RECHECK, Flow, SourceMode},
    metrics::Metrics,
    protocol::describe_transport,
    protocol::{Answer, ErrorCategory, Verdict},
    queue::{Envelope, Intake, Queue, QueueError, now_ms},
};
use entrepot_api::resource::RetrySpec;

/// How soon a paused run checks the backlog again (or the interval, if shorter).
const PAUSE_RECHECK: Duration = Duration::from_secs(1);
/// The most of a page's body that is read: far more than a page of any system's
/// largest page size, and a bound on what one poll holds in memory.
pub(crate) const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;

/// How a poll run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// The last page was read; the watermark moved.
    Complete,
    /// The backlog is above `max_pending`: the run stopped before its next page and
    /// resumes from there.
    Paused,
    /// The source refused a page, or kept failing until the retries ran out. Reported in
    /// the Connector's status and the poll error metric.
    Failed {
        /// The kind of failure.
        category: ErrorCategory,
        /// The source's answer, or why there was none.
        message: String,
    },
    /// The queue could not be read or written; the run resumes from its last commit.
    Store(String),
}

/// What one poll run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    /// Pages committed.
    pub pages: u64,
    /// Records queued.
    pub queued: u64,
    /// Records dropped as already queued (overlapping pages, pages read again).
    pub duplicates: u64,
    /// How it ended.
    pub end: RunEnd,
}

/// A page as fetched.
pub(crate) struct Fetched {
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: axum::body::Bytes,
}

/// A page that could not be fetched.
#[derive(Debug)]
pub(crate) struct FetchFailure {
    /// The kind of failure.
    pub category: ErrorCategory,
    /// The system's answer, or why there was none.
    pub message: String,
    /// The source refused it (4xx): retrying the same request will not help.
    pub refused: bool,
}

/// GETs `url` with `client`'s credentials, retrying transient failures (transport, 408,
/// 429, 5xx) with `policy` and the system's `Retry-After`. `failed` hears of each
/// failure with the attempt number and, when another attempt follows, the wait before it.
/// Shared by the poller and the reconciler's listings.
pub(crate) async fn get_page(
    client: &ConnectorClient,
    url: &Url,
    policy: &RetrySpec,
    mut failed: impl FnMut(&FetchFailure, u32, Option<Duration>),
) -> Result<Fetched, FetchFailure> {
    let attempt = |_| async {
        let sent = client.send(|http| http.get(url.clone()).header(ACCEPT, "application/json")).await;
        let answer = match sent {
            Sent::Response(response, _) if response.status().is_success() => {
                let headers = response.headers().clone();
                match read_prefix(response, MAX_PAGE_BYTES).await {
                    Ok(page) if !page.cut => {
                        client.health.succeeded();
                        return Ok(Fetched { headers, body: page.body.into() });
                    }
                    // Read no further than the cap: asking again gets the same page.
                    Ok(_) => return Err(too_large(client)),
                    Err(e) => Answer::Transport(describe_transport(&e)),
                }
            }
            other => other.into_answer(client.system()).await,
        };
        let verdict = match client.system().verdict(&answer) {
            // Only a 2xx is delivered, and a 2xx was read above.
            Verdict::Delivered => Verdict::Retry {
                after: None,
                reason: "a 2xx answer could not be read".into(),
                category: ErrorCategory::Server,
            },
            verdict => verdict,
        };
        let failure = match &verdict {
            Verdict::Retry { reason, category, .. } => {
                FetchFailure { category: *category, message: reason.clone(), refused: false }
            }
            Verdict::Reject { reason, category } => {
                FetchFailure { category: *category, message: reason.clone(), refused: true }
            }
            Verdict::Delivered => unreachable!("mapped to a retry above"),
        };
        client.health.failed(failure.category, &failure.message);
        Err(Failed { verdict, detail: failure })
    };
    match with_retries(policy, None, attempt, |failure, number, delay| failed(failure, number, Some(delay))).await {
        Outcome::Done(fetched) => Ok(fetched),
        Outcome::Refused { last, attempts }
        | Outcome::Exhausted { last, attempts }
        | Outcome::ThrottledTooLong { last, attempts } => {
            failed(&last, attempts, None);
            Err(last)
        }
        Outcome::Interrupted => unreachable!("no shutdown to interrupt the wait"),
    }
}

/// A page larger than [`MAX_PAGE_BYTES`]: refused, not retried.
fn too_large(client: &ConnectorClient) -> Failed<FetchFailure> {
    let message = format!(
        "the page is larger than {} MiB, the most a page may be: ask for fewer records per page",
        MAX_PAGE_BYTES >> 20
    );
    let verdict = Verdict::Reject { reason: message.clone(), category: ErrorCategory::Invalid };
    client.health.failed(ErrorCategory::Invalid, &message);
    Failed { verdict, detail: FetchFailure { category: ErrorCategory::Invalid, message, refused: true } }
}

/// Polls one flow's source.
#[derive(Clone, Debug)]
pub struct Poller {
    pub(super) flow: Arc<Flow>,
    source: Arc<PollSource>,
    queue: Queue,
    pub(super) metrics: Metrics,
    max_pending: Option<u64>,
}

impl Poller {
    /// A poller for `flow`, its poll trigger compiled, or `None` when its trigger is not
    /// `poll`. With `max_pending`, a run pauses while the flow's backlog is above it.
    pub fn new(
        flow: Arc<Flow>,
        queue: Queue,
        metrics: Metrics,
        max_pending: Option<u64>,
    ) -> Result<Option<Self>, PollSetupError> {
        let Some(trigger) = &flow.config.spec.source.trigger.poll else { return Ok(None) };
        let client = flow.connectors[&flow.config.spec.source.connector_ref].clone();
        let mut source = PollSource::new(trigger, client)?;
        if let Some(database) = &flow.source_database {
            source = source.with_database(database.clone());
        }
        Ok(Some(Self { flow, source: Arc::new(source), queue, metrics, max_pending }))
    }

    pub(super) fn source(&self) -> &PollSource {
        &self.source
    }

    /// Polls every `interval` (the first run at once) until `shutdown` turns true. A run
    /// cut short by shutdown resumes from its last committed page. In
    /// [`SourceMode::Once`], returns after the first run that is not paused by
    /// backpressure (a paused run is resumed once the backlog drains).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, mode: SourceMode) {
        let interval = self.source().trigger().interval.get();
        loop {
            if !self.flow.leads(&self.queue, "poll").await {
                // Another runner of the flow polls; ask again soon, to take over if it goes.
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOWER_RECHECK.min(interval)) => continue,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
            let report = tokio::select! {
                report = self.poll_once() => report,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            if mode == SourceMode::Once && report.end != RunEnd::Paused {
                return;
            }
            let wait = if report.end == RunEnd::Paused { PAUSE_RECHECK.min(interval) } else { interval };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// The backpressure hook, asked before each page: whether the flow's backlog
    /// (records and items waiting in its queue) is above `max_pending`, or the queue
    /// holds more than `spec.runner.queue.maxBytes`. The run then
    /// pauses, keeping its progress, and resumes once the backlog has drained. Reads the
    /// queue: call it on a blocking thread.
    pub fn should_pause(&self) -> bool {
        self.max_pending.is_some_and(|max| self.flow.queue_full(&self.queue, max).is_some())
    }

    /// One run: resumes the open run or starts one from the committed watermark, and
    /// reads pages until the last, a pause, or a failure.
    pub async fn poll_once(&self) -> RunReport {
        let (run_id, report, run, resumed) = match self.start_run().await {
            Ok(started) => started,
            Err(report) => return report,
        };
        match (self.source().database(), self.source().trigger().sql.as_deref()) {
            (Some(database), Some(sql)) => self.poll_sql(database, sql, run_id, report, run).await,
            _ => self.poll_pages(run_id, report, run, resumed).await,
        }
    }

    /// Counts the run and loads where the last one stopped: the open run, or a new one
    /// from the committed watermark (or the trigger's `initial`).
    async fn start_run(&self) -> Result<(String, RunReport, Run, bool), RunReport> {
        let name = self.flow.name();
        let run_id = uuid::Uuid::now_v7().to_string();
        self.metrics.polls.with_label_values(&[name]).inc();
        let report = RunReport { pages: 0, queued: 0, duplicates: 0, end: RunEnd::Complete };
        let progress = match self.blocking(Progress::load).await {
            Ok(p) => p,
            Err(e) => return Err(report.ended(RunEnd::Store(e.to_string()))),
        };
        let endpoint = self.source().client().endpoint().to_string();
        let open = progress.run.filter(|run| {
            let here = page::belongs_to(&run.next, &endpoint);
            if !here {
                info!(flow = %name, "the Connector's endpoint changed since the open run began; starting again from the watermark");
            }
            here
        });
        let resumed = open.is_some();
        let initial = || self.source().trigger().watermark.as_ref().and_then(|w| w.initial.clone()).map(Value::String);
        let run = open.unwrap_or_else(|| Run::start(progress.watermark.or_else(initial)));
        info!(flow = %name, run = %run_id, resumed, page = run.pages + 1, "poll run started");
        Ok((run_id, report, run, resumed))
    }

    /// Whether the run pauses before its next page (see [`Poller::should_pause`]).
    pub(super) async fn pauses(&self, run_id: &str) -> bool {
        let me = self.clone();
        let pause = tokio::task::spawn_blocking(move || me.should_pause()).await.expect("backlog read panicked");
        if pause {
            info!(flow = %self.flow.name(), run = %run_id, "backlog above the limit; poll run paused");
        }
        pause
    }

    /// An HTTP API's run, page after page.
    async fn poll_pages(&self, run_id: String, mut report: RunReport, mut run: Run, resumed: bool) -> RunReport {
        let name = self.flow.name();
        let source = self.source();
        loop {
            if self.pauses(&run_id).await {
                return report.ended(RunEnd::Paused);
            }
            let since = run.since.as_ref().and_then(watermark::as_param);
            let url = match page::url(source.client().endpoint(), source.trigger(), since.as_deref(), &run.next) {
                Ok(url) => url,
                Err(message) => return self.invalid(report, &run_id, message),
            };
            let fetched = match self.fetch(&url, &run_id).await {
                Ok(f) => f,
                Err(failure) => {
                    if failure.refused && (resumed || run.pages > 0) {
                        // The page was refused mid-run (an expired cursor, say): start
                        // over from the watermark next time rather than fail forever.
                        let dropped = self.commit(Vec::new(), progress::drop_run()).await;
                        if let Err(e) = dropped {
                            warn!(flow = %name, run = %run_id, error = %e, "cannot drop the refused run");
                        }
                    }
                    warn!(flow = %name, run = %run_id, page = run.pages + 1, category = failure.category.as_str(),
                          error = %failure.message, "poll run failed");
                    return report.ended(RunEnd::Failed { category: failure.category, message: failure.message });
                }
            };
            let content = match source.read(&fetched.body) {
                Ok(c) => c,
                Err(message) => return self.invalid(report, &run_id, message),
            };
            for record in &content.records {
                if let Some(value) = source.watermark_of(record) {
                    run.high = watermark::higher(run.high.take(), value);
                }
            }
            let end = PageEnd {
                url: &url,
                headers: &fetched.headers,
                cursor: content.cursor,
                records: content.records.len(),
            };
            let next =
                match page::next(source.trigger().pagination.as_ref(), &run.next, end, source.client().endpoint()) {
                    Ok(next) => next,
                    Err(message) => return self.invalid(report, &run_id, message),
                };
            let next = next.filter(|n| {
                let repeats = *n == run.next;
                if repeats {
                    warn!(flow = %name, run = %run_id, "the source gave the same page as next; ending the run here");
                }
                !repeats
            });
            run.pages += 1;
            let last = next.is_none();
            if let Some(next) = next {
                run.next = next;
            }
            if let Err(end) = self.queue_page(&run_id, &run, &content.records, last, &mut report).await {
                return report.ended(end);
            }
            if last {
                return report;
            }
        }
    }

    /// Queues a page's records together with the run's progress past it (after the last
    /// page: the new watermark), and counts them.
    pub(super) async fn queue_page(
        &self,
        run_id: &str,
        run: &Run,
        records: &[Value],
        last: bool,
        report: &mut RunReport,
    ) -> Result<(), RunEnd> {
        let name = self.flow.name();
        let received = now_ms();
        let expires = received.saturating_add(self.flow.config.spec.delivery.dedup_window.get().as_millis() as i64);
        let items: Vec<Intake> = records.iter().map(|r| Intake::Record(envelope(r, received))).collect();
        let outcome = self
            .commit_records(items, expires, progress::after_page(run, last))
            .await
            .map_err(|e| RunEnd::Store(e.to_string()))?;
        self.metrics.poll_pages.with_label_values(&[name]).inc();
        self.metrics.count_received(name, outcome.queued);
        self.metrics.count_duplicates(name, "delivery_id", outcome.duplicates);
        if outcome.queued > 0 {
            self.flow.wake.notify_one();
        }
        report.pages += 1;
        report.queued += outcome.queued;
        report.duplicates += outcome.duplicates;
        info!(flow = %name, run = %run_id, page = run.pages, records = records.len(),
              queued = outcome.queued, duplicates = outcome.duplicates, last, "poll page queued");
        Ok(())
    }

    /// GETs `url` with the flow's retry policy (see [`get_page`]), logging and counting
    /// each failure.
    async fn fetch(&self, url: &Url, run_id: &str) -> Result<Fetched, FetchFailure> {
        let name = self.flow.name();
        let policy = &self.flow.config.spec.delivery.retry;
        get_page(self.source().client(), url, policy, |failure, attempt, delay| {
            self.metrics.poll_errors.with_label_values(&[name, failure.category.as_str()]).inc();
            if let Some(delay) = delay {
                warn!(flow = %name, run = %run_id, path = url.path(), attempt, retry_in_ms = delay.as_millis() as u64,
                      category = failure.category.as_str(), error = %failure.message, "poll request failed; will retry");
            }
        })
        .await
    }

    /// A page that cannot be read as the trigger describes it.
    pub(super) fn invalid(&self, report: RunReport, run_id: &str, message: String) -> RunReport {
        let category = ErrorCategory::Invalid;
        self.source().client().health.failed(category, &message);
        self.metrics.poll_errors.with_label_values(&[self.flow.name(), category.as_str()]).inc();
        warn!(flow = %self.flow.name(), run = %run_id, error = %message, "poll page unreadable; the run stops here");
        report.ended(RunEnd::Failed { category, message })
    }

    async fn commit(&self, items: Vec<Intake>, state: Vec<(&'static str, Vec<u8>)>) -> Result<(), QueueError> {
        self.commit_records(items, 0, state).await.map(drop)
    }

    async fn commit_records(
        &self,
        items: Vec<Intake>,
        expires: i64,
        state: Vec<(&'static str, Vec<u8>)>,
    ) -> Result<crate::queue::BatchOutcome, QueueError> {
        self.blocking(move |queue, flow| queue.accept_batch(flow, &items, expires, &progress::as_refs(&state))).await
    }

    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&Queue, &str) -> T + Send + 'static) -> T {
        let flow = self.flow.name().to_string();
        self.queue.off_thread(move |queue| work(queue, &flow)).await
    }
}

impl RunReport {
    pub(super) fn ended(mut self, end: RunEnd) -> Self {
        self.end = end;
        self
    }
}

/// A polled record as the queue keeps it.
fn envelope(record: &Value, received_at_ms: i64) -> Envelope {
    let id = uuid::Uuid::now_v7().to_string();
    Envelope {
        correlation_id: id.clone(),
        trace_parent: None,
        id,
        delivery_id: Some(delivery_id(record)),
        source_delivery_id: None,
        event_id: None,
        topic: None,
        received_at_ms,
        payload: serde_json::to_vec(record).expect("a JSON value always serializes"),
        replay: None,
    }
}
