//! An in-memory Kubernetes API that kube-runtime's `Controller` can run against.
//!
//! No kube-apiserver can be installed on these machines (no package registry reachable
//! from here ships one), so kube-fake-client's in-memory store stands in for it. That
//! store answers get, list, create, update, patch and delete; server-side apply
//! (`application/apply-patch+yaml`) is a JSON merge patch plus managed-fields
//! bookkeeping, creating the object when it is missing. It does not answer watches, and
//! it writes (new resourceVersion and generation) even when an apply changes nothing.
//! [`FakeApi`] is a tower `Service` in front of it that adds what a real API server
//! does and a controller relies on:
//!
//! - a `?watch=true` request gets a stream that stays open; it polls the store and
//!   sends `ADDED`, `MODIFIED` and `DELETED` for every object whose resourceVersion
//!   changed (and, first, `ADDED` for objects newer than the watch's resourceVersion);
//! - a list's resourceVersion is the newest of its items (the store always says "1"),
//!   so a watch started from it misses nothing created after the list;
//! - an apply that would not change the stored object is answered with the object as
//!   it is, without a write, as the API server does. Without this, every reconcile
//!   would modify its children, whose watch would trigger another reconcile, forever;
//! - writes are applied one at a time: the store patches by reading, merging and
//!   writing back, and two patches racing there would lose one or fail with a version
//!   mismatch, where an API server applies each patch atomically;
//! - an apply to a `/status` subresource removes the status fields it leaves out, as
//!   server-side apply does for the fields its (here: only) manager owned. A plain
//!   merge patch would keep a cleared `firstFailure` or `runner` forever.

use std::{
    collections::{BTreeMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    batch::v1::CronJob,
};
use kube::{Client, client::Body};
use serde_json::Value;

use crate::resources::{Connector, Mapping, ReconcileSchedule, SyncFlow};

/// How often an open watch looks at the store.
const POLL: Duration = Duration::from_millis(20);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// What the fake API answers with: a whole body, or a watch's stream of lines.
type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A client of a fresh in-memory API that knows Entrepot's kinds, and how many writes
/// reached its store.
pub struct FakeCluster {
    /// Talks to the API like any client; tests use it to create and inspect objects.
    pub client: Client,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    writes: AtomicUsize,
    status_updates_sent: AtomicUsize,
}

impl FakeCluster {
    /// An empty API.
    pub async fn new() -> Self {
        let store = kube_fake_client::ClientBuilder::new()
            .with_resource::<Connector>()
            .with_resource::<Mapping>()
            .with_resource::<SyncFlow>()
            .with_resource::<ReconcileSchedule>()
            .with_status_subresource::<Deployment>()
            .with_status_subresource::<StatefulSet>()
            .with_status_subresource::<CronJob>()
            .build()
            .await
            .expect("in-memory API");
        let counts = Arc::new(Counts::default());
        let client = Client::new(FakeApi { store, counts: counts.clone(), writing: Default::default() }, "default");
        Self { client, counts }
    }

    /// Requests that changed the store so far (creates, updates, patches, deletes;
    /// not the applies that changed nothing).
    pub fn writes(&self) -> usize {
        self.counts.writes.load(Ordering::SeqCst)
    }

    /// Requests sent to a `/status` subresource so far, whether they changed anything or not.
    pub fn status_updates_sent(&self) -> usize {
        self.counts.status_updates_sent.load(Ordering::SeqCst)
    }
}

/// The tower `Service` between kube's `Client` and the in-memory store.
#[derive(Clone)]
struct FakeApi {
    store: Client,
    counts: Arc<Counts>,
    /// Held through each write. The store patches by reading, merging and writing back,
    /// and two patches racing there lose one or fail with a version mismatch; an API
    /// server applies each patch atomically.
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl tower_service::Service<Request<Body>> for FakeApi {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.handle(request).await })
    }
}

impl FakeApi {
    async fn handle(self, request: Request<Body>) -> Result<Response<ResponseBody>, BoxError> {
        let path = request.uri().path().to_string();
        let query: Vec<(String, String)> = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let param = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());

        if request.method() == Method::GET && param("watch") == Some("true") {
            let since = param("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            // Selectors pass through still encoded; the store decodes them.
            let selectors: Vec<String> = query
                .iter()
                .filter(|(k, _)| k == "labelSelector" || k == "fieldSelector")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            return Ok(self.watch(format!("{path}?{}", selectors.join("&")), since));
        }

        let is_apply = request.method() == Method::PATCH
            && request
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
        let is_write = request.method() != Method::GET;
        if is_write && path.ends_with("/status") {
            self.counts.status_updates_sent.fetch_add(1, Ordering::SeqCst);
        }
        let (parts, body) = request.into_parts();
        let mut body = body.collect_bytes().await?;
        let _writing = if is_write { Some(self.writing.clone().lock_owned().await) } else { None };
        if is_apply && path.ends_with("/status") {
            body = self.removing_omitted_status_fields(&path, body).await;
        }
        if is_apply && let Some(unchanged) = self.unchanged_by(&path, &body).await {
            return Ok(json_response(StatusCode::OK, unchanged));
        }

        let is_merge = parts.method == Method::PATCH && !is_apply;
        let patch = is_merge.then(|| body.clone());
        let response = self.store.send(Request::from_parts(parts, Body::from(body))).await?;
        let (parts, body) = response.into_parts();
        let mut bytes = body.collect_bytes().await?;
        if is_write && parts.status.is_success() {
            self.counts.writes.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(patch) = patch.filter(|_| parts.status.is_success())
            && let Some(updated) = self.forgetting_removed_fields(&path, &patch).await
        {
            bytes = updated;
        }
        if !is_write
            && let Ok(mut list) = serde_json::from_slice::<Value>(&bytes)
            && let Some(items) = list.get("items").and_then(Value::as_array)
        {
            let newest = items.iter().map(resource_version).max().unwrap_or(0);
            list["metadata"]["resourceVersion"] = Value::String(newest.to_string());
            bytes = Bytes::from(serde_json::to_vec(&list)?);
        }
        Ok(Response::from_parts(parts, whole(bytes)))
    }

    /// The stored object, if applying `patch` to it would leave it as it is.
    async fn unchanged_by(&self, path: &str, patch: &[u8]) -> Option<Bytes> {
        let object_path = path.strip_suffix("/status").unwrap_or(path);
        let stored = get_json(&self.store, object_path).await?;
        let patch: Value = serde_json::from_slice(patch).ok()?;
        let mut applied = stored.clone();
        merge_patch(&mut applied, &patch);
        (without_managed_fields(applied) == without_managed_fields(stored.clone()))
            .then(|| Bytes::from(serde_json::to_vec(&stored).unwrap_or_default()))
    }

    /// After a merge or strategic-merge patch that removed fields (set them to `null`):
    /// no field manager owns them any more, as in a real API server, so a later apply of
    /// them by another manager is no conflict. Returns the object as stored afterwards.
    async fn forgetting_removed_fields(&self, path: &str, patch: &[u8]) -> Option<Bytes> {
        let patch: Value = serde_json::from_slice(patch).ok()?;
        let mut removed = Vec::new();
        null_paths(&patch, &mut Vec::new(), &mut removed);
        if removed.is_empty() {
            return None;
        }
        let object_path = path.strip_suffix("/status").unwrap_or(path);
        let mut stored = get_json(&self.store, object_path).await?;
        // Only appliers can conflict; and an object nobody applied is left as it is (a
        // write would bump its generation).
        let managers = stored.pointer_mut("/metadata/managedFields")?.as_array_mut()?;
        let mut changed = false;
        for manager in managers.iter_mut().filter(|m| m["operation"] == "Apply") {
            let Some(fields) = manager.get_mut("fieldsV1") else { continue };
            let before = fields.clone();
            for field in &removed {
                forget(fields, field);
            }
            changed |= *fields != before;
        }
        if !changed {
            return None;
        }
        let request = Request::put(object_path)
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&stored).ok()?))
            .ok()?;
        let response = self.store.send(request).await.ok()?;
        response.status().is_success().then_some(())?;
        response.into_body().collect_bytes().await.ok()
    }

    /// `patch` with a `null` for every status field the stored object has and the patch
    /// leaves out, so that merging it gives exactly the applied status.
    async fn removing_omitted_status_fields(&self, path: &str, patch: Bytes) -> Bytes {
        let object_path = path.strip_suffix("/status").unwrap_or(path);
        let (Some(stored), Ok(mut patch)) =
            (get_json(&self.store, object_path).await, serde_json::from_slice::<Value>(&patch))
        else {
            return patch;
        };
        if let Some(new) = patch.get("status") {
            patch["status"] = merge_patch_between(&stored["status"], new);
        }
        Bytes::from(serde_json::to_vec(&patch).unwrap_or_default())
    }

    fn watch(&self, list_uri: String, since: u64) -> Response<ResponseBody> {
        let state = WatchState { store: self.store.clone(), list_uri, since, seen: None, pending: VecDeque::new() };
        let events = futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(line) = state.pending.pop_front() {
                    return Some((Ok::<_, BoxError>(Frame::data(line)), state));
                }
                if state.seen.is_some() {
                    tokio::time::sleep(POLL).await;
                }
                // A failed list ends the watch; the watcher then starts a new one.
                let items = list_items(&state.store, &state.list_uri).await?;
                state.poll(items);
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "application/json")
            .body(StreamBody::new(events).boxed_unsync())
            .expect("valid response")
    }
}

/// One open watch: what it has already reported, and the events not yet sent.
struct WatchState {
    store: Client,
    list_uri: String,
    since: u64,
    /// Objects by namespace/name, with their resourceVersion, as last reported.
    seen: Option<BTreeMap<String, (u64, Value)>>,
    pending: VecDeque<Bytes>,
}

impl WatchState {
    fn poll(&mut self, items: Vec<Value>) {
        let now: BTreeMap<String, (u64, Value)> = items
            .into_iter()
            .map(|item| {
                let key = format!("{}/{}", item["metadata"]["namespace"], item["metadata"]["name"]);
                (key, (resource_version(&item), item))
            })
            .collect();
        let mut changed: Vec<(u64, &str, &Value)> = Vec::new();
        for (key, (version, item)) in &now {
            match self.seen.as_ref().map(|seen| seen.get(key)) {
                None if *version > self.since => changed.push((*version, "ADDED", item)),
                Some(None) => changed.push((*version, "ADDED", item)),
                Some(Some((old, _))) if old != version => changed.push((*version, "MODIFIED", item)),
                _ => {}
            }
        }
        changed.sort_by_key(|(version, _, _)| *version);
        let mut lines: Vec<Bytes> = changed.into_iter().map(|(_, kind, item)| event(kind, item)).collect();
        for (key, (_, item)) in self.seen.iter().flatten() {
            if !now.contains_key(key) {
                lines.push(event("DELETED", item));
            }
        }
        self.pending.extend(lines);
        self.seen = Some(now);
    }
}

fn event(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&serde_json::json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn resource_version(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0)
}

async fn get_json(store: &Client, uri: &str) -> Option<Value> {
    let request = Request::get(uri).body(Body::empty()).ok()?;
    let response = store.send(request).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    serde_json::from_slice(&response.into_body().collect_bytes().await.ok()?).ok()
}

async fn list_items(store: &Client, uri: &str) -> Option<Vec<Value>> {
    get_json(store, uri).await?.get("items")?.as_array().cloned()
}

/// RFC 7386 JSON merge patch, which is what the store does for an apply.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in fields {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The RFC 7386 merge patch that turns `old` into `new`.
fn merge_patch_between(old: &Value, new: &Value) -> Value {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return new.clone();
    };
    let mut patch = serde_json::Map::new();
    for key in old.keys().filter(|key| !new.contains_key(*key)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, value) in new {
        let merged = match old.get(key) {
            Some(before) => merge_patch_between(before, value),
            None => value.clone(),
        };
        patch.insert(key.clone(), merged);
    }
    Value::Object(patch)
}

/// The paths a merge patch sets to `null`.
fn null_paths(patch: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Value::Object(fields) = patch else { return };
    for (key, value) in fields {
        at.push(key.clone());
        if value.is_null() {
            out.push(at.clone());
        } else {
            null_paths(value, at, out);
        }
        at.pop();
    }
}

/// Removes `path` from a manager's `fieldsV1` set (`{"f:spec": {"f:holderIdentity": {}}}`),
/// and the parents it leaves empty.
fn forget(fields: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else { return };
    let key = format!("f:{first}");
    let Some(map) = fields.as_object_mut() else { return };
    if rest.is_empty() {
        map.remove(&key);
        return;
    }
    if let Some(child) = map.get_mut(&key) {
        forget(child, rest);
        if child.as_object().is_some_and(serde_json::Map::is_empty) {
            map.remove(&key);
        }
    }
}

fn without_managed_fields(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    object
}

fn json_response(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(whole(body))
        .expect("valid response")
}

fn whole(bytes: Bytes) -> ResponseBody {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{
        Api,
        api::{DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    };

    use super::*;
    use crate::test_support::install_crypto_provider;

    fn config_map(name: &str, value: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some("ns".into());
        cm.data = Some([("k".to_string(), value.to_string())].into());
        cm
    }

    #[tokio::test]
    async fn a_watch_reports_creates_changes_and_deletes() {
        install_crypto_provider();
        let cluster = FakeCluster::new().await;
        let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "ns");
        api.create(&PostParams::default(), &config_map("before", "1")).await.unwrap();
        let newest = api.create(&PostParams::default(), &config_map("before-too", "1")).await.unwrap();
        let listed = api.list(&Default::default()).await.unwrap();
        let version = listed.metadata.resource_version.unwrap();
        assert_eq!(Some(&version), newest.metadata.resource_version.as_ref(), "a list's version is its newest item's");

        let mut events = api.watch(&WatchParams::default(), &version).await.unwrap().boxed();
        api.create(&PostParams::default(), &config_map("after", "1")).await.unwrap();
        let next = |e: Option<WatchEvent<ConfigMap>>| match e.unwrap() {
            WatchEvent::Added(cm) => ("ADDED", cm.metadata.name.unwrap()),
            WatchEvent::Modified(cm) => ("MODIFIED", cm.metadata.name.unwrap()),
            WatchEvent::Deleted(cm) => ("DELETED", cm.metadata.name.unwrap()),
            other => panic!("unexpected {other:?}"),
        };
        // `before` is older than the list: not reported again.
        assert_eq!(next(events.try_next().await.unwrap()), ("ADDED", "after".into()));
        api.patch("after", &PatchParams::default(), &Patch::Merge(serde_json::json!({"data": {"k": "2"}})))
            .await
            .unwrap();
        assert_eq!(next(events.try_next().await.unwrap()), ("MODIFIED", "after".into()));
        api.delete("before", &DeleteParams::default()).await.unwrap();
        assert_eq!(next(events.try_next().await.unwrap()), ("DELETED", "before".into()));
    }

    #[tokio::test]
    async fn an_apply_that_changes_nothing_writes_nothing() {
        install_crypto_provider();
        let cluster = FakeCluster::new().await;
        let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "ns");
        let apply = PatchParams::apply("test").force();
        let first = api.patch("cm", &apply, &Patch::Apply(config_map("cm", "1"))).await.unwrap();
        let writes = cluster.writes();
        let again = api.patch("cm", &apply, &Patch::Apply(config_map("cm", "1"))).await.unwrap();
        assert_eq!(again.metadata.resource_version, first.metadata.resource_version);
        assert_eq!(cluster.writes(), writes);
        let changed = api.patch("cm", &apply, &Patch::Apply(config_map("cm", "2"))).await.unwrap();
        assert_ne!(changed.metadata.resource_version, first.metadata.resource_version);
        assert_eq!(changed.data.unwrap()["k"], "2");
        assert_eq!(cluster.writes(), writes + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_merge_patches_all_land_as_on_an_api_server() {
        install_crypto_provider();
        let cluster = FakeCluster::new().await;
        let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "ns");
        api.create(&PostParams::default(), &config_map("cm", "0")).await.unwrap();
        let patches = (0..16).map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let patch = serde_json::json!({"data": {format!("k{i}"): "x"}});
                api.patch("cm", &PatchParams::default(), &Patch::Merge(patch)).await
            })
        });
        for patched in futures::future::join_all(patches).await {
            patched.unwrap().unwrap();
        }
        assert_eq!(api.get("cm").await.unwrap().data.unwrap().len(), 17, "no patch lost");
    }

    #[test]
    fn a_merge_patch_between_two_values_gives_the_second() {
        let old = serde_json::json!({"a": {"b": 1, "c": 2}, "gone": true, "l": [1, 2]});
        let new = serde_json::json!({"a": {"c": 3}, "l": [3], "added": "x"});
        let mut merged = old.clone();
        merge_patch(&mut merged, &merge_patch_between(&old, &new));
        assert_eq!(merged, new);
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = serde_json::json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut target, &serde_json::json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(target, serde_json::json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }
}
