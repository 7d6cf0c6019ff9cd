//! The admin API's dead-letter routes: list and show them, replay them into the pipeline
//! after a fix, or discard them. Replays and discards answer with counts, are logged
//! with the ids and who asked, and are kept in the audit trail (`audit.rs`) with why;
//! payloads never reach the logs.
//!
//! - `GET /v1/deadletters?flow=&reason=&target=&since=&until=&text=&limit=&after=`: a
//!   JSON array, lowest ids first (at most `limit`, default 100); the headers
//!   `x-total-count` (matches on every page) and, when more follow, `x-next-after`.
//! - `GET /v1/deadletters/{id}`, `DELETE /v1/deadletters/{id}?why=...`.
//! - `POST /v1/deadletters/replay`, `POST /v1/deadletters/discard`: a [`Selection`] as
//!   JSON (`{"ids": [..]}`, a filter, or `{"all": true}`) with `"why"` (required); the
//!   answer is an [`ActionReport`].

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Extension, Json, Router,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tracing::info;

use super::{Runtime, admin_auth::Authenticated, audit};
use crate::queue::{
    ActionReport, Caller, DeadLetterAction as Action, DeadLetterFilter, Queue, QueueError, ReasonError, Selection,
    SelectionError, now_ms,
};

/// A listing's page size when the request gives none, and the most it may ask for.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// The dead-letter routes, for the admin router.
pub(super) fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/v1/deadletters", get(list))
        .route("/v1/deadletters/replay", post(replay))
        .route("/v1/deadletters/discard", post(discard))
        .route("/v1/deadletters/{id}", get(show).delete(discard_one))
}

/// An answer other than success, as `{"error": "..."}`.
enum ApiError {
    BadRequest(String),
    NotFound(String),
    Unavailable(QueueError),
}

impl From<SelectionError> for ApiError {
    fn from(e: SelectionError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl From<ReasonError> for ApiError {
    fn from(e: ReasonError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        Self::Unavailable(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::Unavailable(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

impl Runtime {
    /// The flows this runner carries, with their targets' names and Connector names.
    fn carried(&self) -> BTreeMap<String, Vec<(String, String)>> {
        let targets = |flow: &crate::flow::Flow| {
            flow.targets.iter().map(|t| (t.name.clone(), t.sink.connector().to_string())).collect()
        };
        self.flows.iter().map(|(name, flow)| (name.clone(), targets(flow))).collect()
    }

    /// `selection` resolved against this runner's flows; a flow it names must be one of them.
    fn resolve(&self, selection: &Selection, action: Option<Action>) -> Result<DeadLetterFilter, ApiError> {
        if let Some(flow) = &selection.flow
            && !self.flows.contains_key(flow)
        {
            let known: Vec<&str> = self.flows.keys().map(String::as_str).collect();
            return Err(ApiError::NotFound(format!(
                "no flow named {flow} in this runner (it carries: {})",
                known.join(", ")
            )));
        }
        let filter = match action {
            Some(a) => selection.filter_to(a.verb(), now_ms())?,
            None => selection.filter(now_ms())?,
        };
        Ok(filter.within(self.carried()))
    }

    /// Runs a queue operation on a blocking thread.
    async fn on_queue<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Queue) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, ApiError> {
        Ok(self.queue.off_thread(op).await?)
    }

    /// Replays or discards what `filter` selects, counts it, wakes the flows a replay
    /// fed, and reports.
    async fn act(&self, action: Action, filter: DeadLetterFilter, caller: Caller) -> Result<ActionReport, ApiError> {
        let (f, by) = (filter.clone(), caller.clone());
        let affected = self.on_queue(move |q| q.act_on_dead_letters(action, &f, &by)).await?;
        for (flow, count) in ActionReport::per_flow(&affected) {
            match action {
                Action::Replay => {
                    self.metrics.dead_letters_replayed.with_label_values(&[flow]).inc_by(count);
                    if let Some(f) = self.flows.get(flow) {
                        f.wake.notify_one();
                    }
                }
                Action::Discard => self.metrics.dead_letters_discarded.with_label_values(&[flow]).inc_by(count),
            }
        }
        let report = ActionReport::new(action, &filter.ids, &affected);
        info!(action = action.verb(), requested_by = %caller.requested_by(), why = %caller.why, count = report.count,
              ids = ?report.ids, missing = ?report.missing, "dead letters {}", action.done());
        Ok(report)
    }
}

fn parse_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::BadRequest(format!("`{text}` is not a dead letter id (a number, as listed)")))
}

async fn list(
    State(rt): State<Arc<Runtime>>,
    query: Result<Query<Selection>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(selection) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut filter = rt.resolve(&selection, None)?;
    filter.limit = Some(filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT));
    let page = rt.on_queue(move |q| q.find_dead_letters(&filter)).await?;
    let mut response = Json(page.entries).into_response();
    let headers = response.headers_mut();
    headers.insert("x-total-count", page.total.into());
    if let Some(next) = page.next_after {
        headers.insert("x-next-after", next.into());
    }
    Ok(response)
}

async fn show(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let filter = rt.resolve(&Selection::ids([parse_id(&id)?]), None)?;
    match rt.on_queue(move |q| q.find_dead_letters(&filter)).await?.entries.pop() {
        Some(entry) => Ok(Json(entry).into_response()),
        None => Err(ApiError::NotFound(format!("no dead letter {id}: list them with GET /v1/deadletters"))),
    }
}

async fn replay(
    State(rt): State<Arc<Runtime>>,
    who: Option<Extension<Authenticated>>,
    headers: HeaderMap,
    body: Result<Json<Selection>, JsonRejection>,
) -> Result<Json<ActionReport>, ApiError> {
    act_on(&rt, Action::Replay, who, &headers, body).await
}

async fn discard(
    State(rt): State<Arc<Runtime>>,
    who: Option<Extension<Authenticated>>,
    headers: HeaderMap,
    body: Result<Json<Selection>, JsonRejection>,
) -> Result<Json<ActionReport>, ApiError> {
    act_on(&rt, Action::Discard, who, &headers, body).await
}

async fn act_on(
    rt: &Runtime,
    action: Action,
    who: Option<Extension<Authenticated>>,
    headers: &HeaderMap,
    body: Result<Json<Selection>, JsonRejection>,
) -> Result<Json<ActionReport>, ApiError> {
    let Json(selection) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let caller = audit::caller(who, headers, selection.why.as_deref())?;
    let filter = rt.resolve(&selection, Some(action))?;
    Ok(Json(rt.act(action, filter, caller).await?))
}

/// The query of `DELETE /v1/deadletters/{id}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Why {
    why: Option<String>,
}

async fn discard_one(
    State(rt): State<Arc<Runtime>>,
    who: Option<Extension<Authenticated>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<Why>, QueryRejection>,
) -> Result<Json<ActionReport>, ApiError> {
    let Query(why) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let caller = audit::caller(who, &headers, why.why.as_deref())?;
    let filter = rt.resolve(&Selection::ids([parse_id(&id)?]), Some(Action::Discard))?;
    let report = rt.act(Action::Discard, filter, caller).await?;
    if report.count == 0 {
        return Err(ApiError::NotFound(format!("no dead letter {id}: list them with GET /v1/deadletters")));
    }
    Ok(Json(report))
}
