//! Sending the records a target lacks back through their flow, via the runner's admin
//! API (`POST /v1/flows/{flow}/records`), in batches.

use std::path::PathBuf;

use serde_json::Value;

use crate::{
    runtime::{
        REQUESTED_BY_HEADER, admin_auth,
        records::{EnqueueReport, EnqueueRequest, MAX_RECORDS, RawRecord},
    },
    source::poll::content_digest,
    telemetry::TRACEPARENT,
};

/// A runner's admin API, e.g. `http://orders-runner:9090`.
#[derive(Clone, Debug)]
pub struct RunnerClient {
    base: String,
    http: reqwest::Client,
    requested_by: String,
    /// The runner's admin token, read at each request (a rotated Secret applies).
    token_file: Option<PathBuf>,
    /// The ReconcileSchedule and the reason its records are sent again, for the runner's
    /// audit trail.
    schedule: Option<String>,
    why: String,
}

impl RunnerClient {
    /// A client of the runner at `base`; `requested_by` names the caller in its log.
    pub fn new(base: &str, requested_by: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            // The admin API never redirects; whoever does is not the runner.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
            requested_by: requested_by.into(),
            token_file: None,
            schedule: None,
            why: format!("records sent again by {requested_by}"),
        })
    }

    /// Sends the token in `file` as `Authorization: Bearer` (the runner's admin token).
    pub fn with_token_file(mut self, file: Option<PathBuf>) -> Self {
        self.token_file = file;
        self
    }

    /// Records what is sent as a repair by ReconcileSchedule `schedule`, for `why`.
    pub fn for_repair(mut self, schedule: &str, why: String) -> Self {
        self.schedule = Some(schedule.to_string());
        self.why = why;
        self
    }

    /// Queues `records` (raw source payloads) in `flow`, for its target number `target`
    /// only (the one compared). Each goes under the delivery id
    /// `reconcile:<hash of its content>`, so repairing the same record again within the
    /// flow's dedup window queues it once. With `trace` (a W3C `traceparent`), the
    /// records' spans in the runner join that trace.
    pub async fn enqueue(
        &self,
        flow: &str,
        target: u32,
        records: &[&Value],
        trace: Option<&str>,
    ) -> Result<EnqueueReport, String> {
        let url = format!("{}/v1/flows/{flow}/records", self.base);
        let mut total = EnqueueReport::default();
        for chunk in records.chunks(MAX_RECORDS) {
            let body = EnqueueRequest {
                records: chunk
                    .iter()
                    .map(|r| RawRecord {
                        delivery_id: format!("reconcile:{}", content_digest(r)),
                        payload: (*r).clone(),
                    })
                    .collect(),
                target: Some(target),
                why: Some(self.why.clone()),
                schedule: self.schedule.clone(),
            };
            let mut request = self.http.post(&url).header(REQUESTED_BY_HEADER, &self.requested_by).json(&body);
            if let Some(trace) = trace {
                request = request.header(TRACEPARENT, trace);
            }
            if let Some(file) = &self.token_file {
                request = request.bearer_auth(admin_auth::read_token(file).map_err(|e| e.to_string())?);
            }
            let response =
                request.send().await.map_err(|e| format!("POST {url}: {}", crate::protocol::describe_transport(&e)))?;
            let status = response.status();
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                return Err(format!("POST {url}: {status}: {}", text.chars().take(300).collect::<String>()));
            }
            let report: EnqueueReport =
                response.json().await.map_err(|e| format!("POST {url}: unreadable answer: {e}"))?;
            total.queued += report.queued;
            total.duplicates += report.duplicates;
        }
        Ok(total)
    }
}
