//! NetSuite's asynchronous requests (external-API reference §7): a write sent with
//! `Prefer: respond-async` is answered `202 Accepted` with the `Location` of a job;
//! `GET /async/v1/job/{id}` tells its progress (`pending` for as many reads as
//! [`super::NetSuiteKnobs::async_pending_polls`] says, then `succeeded` or `failed`), and
//! `GET /async/v1/job/{id}/task/1/result` gives the answer the write would have had
//! synchronously. The idempotency key (`X-NetSuite-Idempotency-Key`) names the job: a
//! request repeating it is refused with `IDEMPOTENCY_ERROR` and the `Location` of the
//! prior job, whatever that job's outcome (the safer reading of the documentation (U):
//! a key is spent once submitted).
//!
//! The write itself is done when the job is submitted, so the ledger holds its result at
//! once; only what the job reports to its poller is delayed.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error_body::{ApiError, ErrorDetail, code};
use super::{Outcome, Shared, lock, odata};

/// The header NetSuite reads the key of an asynchronous request from.
pub(super) const KEY_HEADER: &str = "x-netsuite-idempotency-key";

#[derive(Debug)]
enum JobResult {
    Succeeded { location: String },
    Failed(ApiError),
}

#[derive(Debug)]
struct Job {
    pending_reads: u32,
    result: JobResult,
}

/// Submitted jobs (job id = index + 1) and the keys that named them.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    jobs: Vec<Job>,
    by_key: HashMap<String, u64>,
}

/// Whether the client asked for an asynchronous answer (`Prefer: respond-async`).
pub(super) fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

fn job_url(origin: &str, id: u64) -> String {
    format!("{origin}/async/v1/job/{id}")
}

/// Runs `write` as job unless `key` already named one; answers `202` + `Location`.
pub(super) fn submit(
    shared: &Shared,
    headers: &HeaderMap,
    key: Option<&str>,
    write: impl FnOnce() -> Result<Response, ApiError>,
) -> Response {
    let origin = odata::origin(headers);
    let mut jobs = lock(&shared.jobs);
    if let Some(&prior) = key.and_then(|key| jobs.by_key.get(key)) {
        let mut response = ApiError::new(
            StatusCode::BAD_REQUEST,
            Outcome::Replayed,
            vec![ErrorDetail::general(
                code::IDEMPOTENCY_ERROR,
                format!(
                    "A request with this idempotency key was already submitted as job {prior}; \
                     see the Location header for its status."
                ),
            )],
        )
        .into_response();
        insert_location(&mut response, &job_url(&origin, prior));
        return response;
    }
    let (outcome, result) = match write() {
        Ok(response) => {
            let outcome = response.extensions().get::<Outcome>().copied().unwrap_or(Outcome::Read);
            let location =
                response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            (outcome, JobResult::Succeeded { location })
        }
        Err(error) => (error.outcome, JobResult::Failed(error)),
    };
    jobs.jobs.push(Job { pending_reads: shared.config.netsuite.async_pending_polls, result });
    let id = jobs.jobs.len() as u64;
    if let Some(key) = key {
        jobs.by_key.insert(key.to_owned(), id);
    }
    drop(jobs);
    let mut response = StatusCode::ACCEPTED.into_response();
    insert_location(&mut response, &job_url(&origin, id));
    response.extensions_mut().insert(outcome);
    response
}

fn insert_location(response: &mut Response, location: &str) {
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
}

fn unknown_job(id: &str) -> ApiError {
    ApiError::not_found(format!("No asynchronous job {id}: use the Location of a 202 answer."))
}

/// `GET /async/v1/job/{id}`.
pub(super) async fn status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut jobs = lock(&shared.jobs);
    let job = id
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|index| jobs.jobs.get_mut(index))
        .ok_or_else(|| unknown_job(&id))?;
    let progress = if job.pending_reads > 0 {
        job.pending_reads -= 1;
        "pending"
    } else if matches!(job.result, JobResult::Succeeded { .. }) {
        "succeeded"
    } else {
        "failed"
    };
    let url = format!("{}/async/v1/job/{id}", odata::origin(&headers));
    let body = json!({
        "id": id,
        "completed": progress != "pending",
        "progress": progress,
        "links": [
            {"rel": "self", "href": url},
            {"rel": "result", "href": format!("{url}/task/1/result")},
        ],
    });
    let mut response = axum::Json(body).into_response();
    response.extensions_mut().insert(Outcome::Read);
    Ok(response)
}

/// `GET /async/v1/job/{id}/task/1/result`: the synchronous answer of the job's write.
pub(super) async fn result(
    State(shared): State<Arc<Shared>>,
    Path((id, task)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let jobs = lock(&shared.jobs);
    let job = id
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|index| jobs.jobs.get(index))
        .filter(|_| task == "1")
        .ok_or_else(|| unknown_job(&format!("{id} task {task}")))?;
    if job.pending_reads > 0 {
        return Err(ApiError::not_found(format!(
            "Job {id} has not completed: read its status until completed is true."
        )));
    }
    match &job.result {
        JobResult::Succeeded { location } => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            insert_location(&mut response, location);
            response.extensions_mut().insert(Outcome::Read);
            Ok(response)
        }
        // The rejection was counted when the job ran.
        JobResult::Failed(error) => Err(ApiError { outcome: Outcome::Read, ..error.clone() }),
    }
}
