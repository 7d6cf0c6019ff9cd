//! The NATS side of the JetStream queue: a connection on a runtime of its own, and the
//! few JetStream operations the queue is made of (publish with a message id, read a
//! subject range in order, delete by sequence, key-value reads and writes), each a
//! plain async function the blocking [`super::JetStreamQueue`] waits on.

use std::{sync::mpsc, time::Duration};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, Context,
        consumer::{self, AckPolicy, DeliverPolicy},
        kv,
        stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
    },
};
use bytes::Bytes;
use entrepot_api::jetstream::{StreamKind, StreamPlan};
use futures::StreamExt;
use serde::Serialize;

use crate::queue::QueueError;

/// How a runner logs in to NATS. The token's value is never logged.
#[derive(Clone, Default)]
pub enum NatsAuth {
    /// No authentication.
    #[default]
    None,
    /// A token (`nats-server --auth`).
    Token(String),
    /// A credentials file's content (`.creds`: a user JWT and its seed).
    Credentials(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::Credentials(_) => f.write_str("Credentials(<redacted>)"),
        }
    }
}

/// How long one JetStream request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure of NATS, as a queue error.
pub(super) fn failed(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Store(format!("NATS JetStream: {what}: {e}").into())
}

/// A NATS connection with its own runtime: the queue's methods are blocking, and are
/// called from blocking threads of the runner's runtime (and from the CLI, with none).
pub(super) struct Nats {
    /// Always `Some` but while dropping: shut down in the background, since the queue may
    /// be dropped on a thread that runs async code.
    runtime: Option<tokio::runtime::Runtime>,
    pub(super) js: Context,
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Nats {
    pub(super) fn connect(servers: &str, auth: &NatsAuth) -> Result<Self, QueueError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("entrepot-nats")
            .enable_all()
            .build()
            .map_err(|e| failed("start its runtime", e))?;
        let (servers, auth) = (servers.to_string(), auth.clone());
        let js = wait_on(&runtime, async move {
            let mut options = async_nats::ConnectOptions::new()
                .name("entrepot-runner")
                .connection_timeout(REQUEST_TIMEOUT)
                .max_reconnects(None);
            options = match auth {
                NatsAuth::None => options,
                NatsAuth::Token(token) => options.token(token),
                NatsAuth::Credentials(creds) => {
                    options.credentials(&creds).map_err(|e| failed("read the NATS credentials", e))?
                }
            };
            let addresses: Vec<async_nats::ServerAddr> = servers
                .split(',')
                .map(|s| s.trim().parse())
                .collect::<Result<_, _>>()
                .map_err(|e| failed(&format!("server list `{servers}`"), e))?;
            let client = tokio::time::timeout(REQUEST_TIMEOUT, options.connect(addresses))
                .await
                .map_err(|_| failed(&format!("connect to {servers}"), "timed out"))?
                .map_err(|e| failed(&format!("connect to {servers}"), e))?;
            Ok::<_, QueueError>(jetstream::ContextBuilder::new().timeout(REQUEST_TIMEOUT).build(client))
        })?;
        Ok(Self { runtime: Some(runtime), js })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the connection")
    }

    /// Runs `work` on the connection's runtime and waits for it, from any thread (one
    /// running async code is blocked meanwhile, as by any blocking call).
    pub(super) fn wait<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, QueueError>> + Send + 'static,
    ) -> Result<T, QueueError> {
        wait_on(self.runtime(), work)
    }

    /// Spawns a background task on the connection's runtime.
    pub(super) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.runtime().spawn(work);
    }
}

fn wait_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    work: impl Future<Output = Result<T, QueueError>> + Send + 'static,
) -> Result<T, QueueError> {
    let (tx, rx) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv().map_err(|_| failed("a request", "its task ended without an answer"))?
}

/// Creates a stream or bucket of `plan` when it is missing (local mode; in a cluster the
/// operator does it). An existing one is left as it is.
pub(super) async fn ensure(js: &Context, plan: &StreamPlan) -> Result<(), QueueError> {
    match plan.kind {
        StreamKind::Stream => {
            if js.get_stream(&plan.name).await.is_ok() {
                return Ok(());
            }
            let config = stream::Config {
                name: plan.name.clone(),
                subjects: plan.subjects.clone(),
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                discard: DiscardPolicy::New,
                num_replicas: plan.replicas,
                max_age: plan.max_age.unwrap_or_default(),
                max_bytes: plan.max_bytes.unwrap_or(-1),
                duplicate_window: plan.duplicate_window.unwrap_or_default(),
                allow_direct: true,
                ..Default::default()
            };
            js.get_or_create_stream(config).await.map_err(|e| failed(&format!("create stream {}", plan.name), e))?;
        }
        StreamKind::Bucket => {
            if js.get_key_value(&plan.name).await.is_ok() {
                return Ok(());
            }
            let config = kv::Config {
                bucket: plan.name.clone(),
                history: 1,
                max_age: plan.max_age.unwrap_or_default(),
                storage: StorageType::File,
                num_replicas: plan.replicas,
                ..Default::default()
            };
            js.create_key_value(config).await.map_err(|e| failed(&format!("create bucket {}", plan.name), e))?;
        }
    }
    Ok(())
}

/// One stored message, as read back.
pub(super) struct Stored {
    pub(super) seq: u64,
    pub(super) subject: String,
    pub(super) payload: Bytes,
}

/// The messages of `stream` on `subjects` with a sequence number from `from`, in order,
/// at most `max` of them and, past the first, at most `max_bytes` of payload. Read with an
/// ephemeral consumer that acknowledges nothing: reading changes nothing.
pub(super) async fn read(
    js: &Context,
    stream: &str,
    subjects: Vec<String>,
    from: u64,
    max: usize,
    max_bytes: usize,
) -> Result<Vec<Stored>, QueueError> {
    if subjects.is_empty() || max == 0 {
        return Ok(Vec::new());
    }
    let stream = js.get_stream_no_info(stream).await.map_err(|e| failed(&format!("find stream {stream}"), e))?;
    let config = consumer::pull::Config {
        deliver_policy: if from <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: from }
        },
        ack_policy: AckPolicy::None,
        filter_subjects: subjects,
        inactive_threshold: Duration::from_secs(30),
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    };
    let consumer = stream.create_consumer(config).await.map_err(|e| failed("open a reader", e))?;
    let name = consumer.cached_info().name.clone();
    let mut out = Vec::new();
    let mut bytes = 0usize;
    'pages: while out.len() < max && bytes < max_bytes {
        let want = (max - out.len()).min(512);
        let mut batch = consumer.fetch().max_messages(want).messages().await.map_err(|e| failed("read messages", e))?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| failed("read a message", e))?;
            let seq = message.info().map_err(|e| failed("read a message's sequence", e))?.stream_sequence;
            got += 1;
            bytes += message.payload.len();
            out.push(Stored { seq, subject: message.subject.to_string(), payload: message.payload.clone() });
            if bytes >= max_bytes {
                break 'pages;
            }
        }
        if got < want {
            break;
        }
    }
    // Best effort: an unused reader also goes by itself after `inactive_threshold`.
    let _ = stream.delete_consumer(&name).await;
    Ok(out)
}

/// Publishes `payload` to `subject` with message id `id` (a repeat within the stream's
/// duplicate window is stored once); returns the sequence number and whether it was a
/// repeat. `Ok(None)`: the stream is full.
pub(super) async fn publish(
    js: &Context,
    subject: String,
    id: &str,
    payload: Bytes,
) -> Result<Option<(u64, bool)>, QueueError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    let ack = js.publish_with_headers(subject.clone(), headers, payload).await.map_err(|e| failed("publish", e))?;
    match ack.await {
        Ok(ack) => Ok(Some((ack.sequence, ack.duplicate))),
        Err(e) if is_full(&e.to_string()) => Ok(None),
        Err(e) => Err(failed(&format!("publish to {subject}"), e)),
    }
}

/// Whether a refused publish means the stream holds its limit (`discard: new`).
fn is_full(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    error.contains("maximum bytes") || error.contains("maximum messages") || error.contains("insufficient resources")
}

/// Deletes the messages `seqs` of `stream`, all requests in flight at once. A message
/// already gone is not an error.
pub(super) async fn delete(js: &Context, stream: &str, seqs: &[u64]) -> Result<(), QueueError> {
    let subject = format!("STREAM.MSG.DELETE.{stream}");
    let deletes = seqs.iter().map(|seq| {
        let subject = subject.clone();
        async move {
            // `no_erase`: the message is dropped from the index, not overwritten on disk
            // (what the client's own delete asks, and several times slower).
            let payload = serde_json::json!({"seq": seq, "no_erase": true});
            let answer: serde_json::Value = js
                .request(subject, &payload)
                .await
                .map_err(|e| failed(&format!("delete message {seq} of {stream}"), e))?;
            match answer.get("error") {
                None => Ok(()),
                Some(error) if is_gone(&error.to_string()) => Ok(()),
                Some(error) => Err(failed(&format!("delete message {seq} of {stream}"), error)),
            }
        }
    });
    futures::future::try_join_all(deletes).await?;
    Ok(())
}

/// Whether a refused delete means the message is gone already ("no message found",
/// "sequence N not found").
fn is_gone(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    error.contains("no message found") || error.contains("not found")
}

/// The sequence number of the first message of `stream` on `subject`, if any.
pub(super) async fn first_on(js: &Context, stream: &str, subject: &str) -> Result<Option<u64>, QueueError> {
    let handle = js.get_stream_no_info(stream).await.map_err(|e| failed(&format!("find stream {stream}"), e))?;
    match handle.direct_get_first_for_subject(subject).await {
        Ok(message) => Ok(Some(message.sequence)),
        Err(e) if matches!(e.kind(), stream::DirectGetErrorKind::NotFound) => Ok(None),
        Err(e) => Err(failed(&format!("look at {subject}"), e)),
    }
}

/// The state of `stream`: messages, bytes and the first message's time (Unix ms).
pub(super) async fn state(js: &Context, stream: &str) -> Result<(u64, u64, Option<i64>), QueueError> {
    let mut handle = js.get_stream(stream).await.map_err(|e| failed(&format!("find stream {stream}"), e))?;
    let info = handle.info().await.map_err(|e| failed(&format!("read stream {stream}"), e))?;
    let s = &info.state;
    let first = (s.messages > 0).then(|| (s.first_timestamp.unix_timestamp_nanos() / 1_000_000) as i64);
    Ok((s.messages, s.bytes, first))
}

/// A bucket entry as the leader of the bucket's stream has it.
pub(super) struct Latest {
    /// Its revision, for compare-and-set.
    pub(super) revision: u64,
    /// Its value; `None`: deleted (a delete or purge marker).
    pub(super) value: Option<Bytes>,
}

/// Entry `key` of `bucket` as the stream's leader has it; `None`: never written, or
/// expired. Every read that decides a write (a claim, a compare-and-set, a lease, the
/// stale guard) comes here, not to the client's `get` or `entry`: buckets allow direct
/// gets, which any replica answers, and a replica that lags answers with an older value
/// or none (a claimed idempotency key read as free drops its record as a duplicate).
pub(super) async fn latest(bucket: &kv::Store, key: &str) -> Result<Option<Latest>, QueueError> {
    let subject = format!("{}{key}", bucket.prefix);
    match bucket.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => {
            let marker = |name: &str| message.headers.get(name).map(|v| v.as_str().to_string());
            let deleted =
                marker("KV-Operation").is_some_and(|op| op != "PUT") || marker("Nats-Marker-Reason").is_some();
            Ok(Some(Latest { revision: message.sequence, value: (!deleted).then_some(message.payload) }))
        }
        Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(failed(&format!("read {key} of bucket {}", bucket.name), e)),
    }
}

/// A key-value bucket.
pub(super) async fn bucket(js: &Context, name: &str) -> Result<kv::Store, QueueError> {
    js.get_key_value(name).await.map_err(|e| failed(&format!("open bucket {name}"), e))
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(stored: &Stored) -> Result<T, QueueError> {
    serde_json::from_slice(&stored.payload)
        .map_err(|source| QueueError::Decode { key: format!("{} #{}", stored.subject, stored.seq), source })
}

pub(super) fn encode(value: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("queue records are JSON"))
}
