//! A flow's streams and buckets on a JetStream context (its own, and the quota buckets of
//! the Connectors it shares with other flows): each made to match its [`StreamPlan`]
//! (created when missing, updated only when a planned setting differs), read for the
//! backlog, deleted. Errors are `(what was being done, what was said)`.

use std::{collections::BTreeSet, time::SystemTime};

use async_nats::jetstream::{
    Context, ErrorCode,
    context::GetStreamErrorKind,
    kv,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};
use entrepot_api::jetstream::{Layout, StreamKind, StreamPlan};

type Failed = (String, String);

/// A flow's queue as JetStream counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Messages in the work stream: records waiting to be mapped and delivery items.
    pub pending: u64,
    /// When the oldest of them was stored; `None` when the stream is empty.
    pub oldest: Option<SystemTime>,
    /// Messages in the dead-letter stream.
    pub dead_lettered: u64,
}

/// What [`ensure`] did to one stream or bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// It did not exist.
    Created,
    /// A planned setting differed.
    Updated,
    /// It was as planned.
    Unchanged,
}

/// The stream config a plan of kind [`StreamKind::Stream`] asks for: limits retention
/// (the runners delete what they are done with), on disk, a full stream refusing new
/// messages rather than dropping accepted ones, direct gets for the runners' reads.
fn stream_config(plan: &StreamPlan) -> stream::Config {
    stream::Config {
        name: plan.name.clone(),
        subjects: plan.subjects.clone(),
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::New,
        allow_direct: true,
        num_replicas: plan.replicas,
        max_age: plan.max_age.unwrap_or_default(),
        max_bytes: plan.max_bytes.unwrap_or(-1),
        duplicate_window: plan.duplicate_window.unwrap_or_default(),
        ..stream::Config::default()
    }
}

/// The bucket config of a plan of kind [`StreamKind::Bucket`]: one value per key.
fn bucket_config(plan: &StreamPlan) -> kv::Config {
    kv::Config {
        bucket: plan.name.clone(),
        history: 1,
        max_age: plan.max_age.unwrap_or_default(),
        storage: StorageType::File,
        num_replicas: plan.replicas,
        ..kv::Config::default()
    }
}

/// The planned settings `existing` lacks, by name; empty when it is as planned.
fn differences(plan: &StreamPlan, existing: &stream::Config) -> Vec<&'static str> {
    let mut differ = Vec::new();
    let mut check = |name, same: bool| {
        if !same {
            differ.push(name);
        }
    };
    check("replicas", existing.num_replicas.max(1) == plan.replicas.max(1));
    check("max_age", existing.max_age == plan.max_age.unwrap_or_default());
    match plan.kind {
        StreamKind::Stream => {
            let subjects = |s: &[String]| s.iter().cloned().collect::<BTreeSet<_>>();
            check("subjects", subjects(&existing.subjects) == subjects(&plan.subjects));
            // The server writes -1 for "no limit".
            check("max_bytes", existing.max_bytes == plan.max_bytes.unwrap_or(-1));
            if let Some(window) = plan.duplicate_window {
                check("duplicate_window", existing.duplicate_window == window);
            }
            check("retention", existing.retention == RetentionPolicy::Limits);
            check("storage", existing.storage == StorageType::File);
            check("discard", existing.discard == DiscardPolicy::New);
            check("allow_direct", existing.allow_direct);
        }
        StreamKind::Bucket => check("history", existing.max_messages_per_subject == 1),
    }
    differ
}

/// The name of the stream that holds a plan: a bucket's is `KV_<bucket>`.
fn stream_name(plan: &StreamPlan) -> String {
    match plan.kind {
        StreamKind::Stream => plan.name.clone(),
        StreamKind::Bucket => format!("KV_{}", plan.name),
    }
}

/// The stream named `name` as the server holds it; `None` when there is none.
async fn current(js: &Context, name: &str) -> Result<Option<stream::Info>, Failed> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream.cached_info().clone())),
        Err(e) if is_not_found(&e.kind()) => Ok(None),
        Err(e) => Err((format!("reading stream {name}"), e.to_string())),
    }
}

fn is_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Whether a plan is one flow's alone, or shared by several flows that may each ask for
/// other replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sharing {
    /// The flow's own: made exactly as planned.
    Own,
    /// Shared (a Connector's quota bucket): as planned, but never with fewer copies than
    /// it has, so that two flows asking for different replicas do not undo each other at
    /// every reconcile; it keeps the most any of them asked for.
    Shared,
}

/// `plan` as `sharing` applies it to what exists.
fn applied(plan: &StreamPlan, sharing: Sharing, existing: Option<&stream::Config>) -> StreamPlan {
    let mut plan = plan.clone();
    if let (Sharing::Shared, Some(existing)) = (sharing, existing) {
        plan.replicas = plan.replicas.max(existing.num_replicas);
    }
    plan
}

/// Makes the stream or bucket of `plan` exist as planned (see [`Sharing`]).
pub(super) async fn ensure(js: &Context, plan: &StreamPlan, sharing: Sharing) -> Result<Change, Failed> {
    let name = stream_name(plan);
    let what = |verb: &str| match plan.kind {
        StreamKind::Stream => format!("{verb} stream {}", plan.name),
        StreamKind::Bucket => format!("{verb} bucket {}", plan.name),
    };
    let existing = current(js, &name).await?;
    let plan = &applied(plan, sharing, existing.as_ref().map(|info| &info.config));
    let Some(existing) = existing else {
        match plan.kind {
            StreamKind::Stream => js.create_stream(stream_config(plan)).await.map(drop).map_err(|e| e.to_string()),
            StreamKind::Bucket => js.create_key_value(bucket_config(plan)).await.map(drop).map_err(|e| e.to_string()),
        }
        .map_err(|e| (what("creating"), e))?;
        return Ok(Change::Created);
    };
    let differ = differences(plan, &existing.config);
    if differ.is_empty() {
        return Ok(Change::Unchanged);
    }
    match plan.kind {
        StreamKind::Stream => js.update_stream(stream_config(plan)).await.map(drop).map_err(|e| e.to_string()),
        StreamKind::Bucket => js.update_key_value(bucket_config(plan)).await.map(drop).map_err(|e| e.to_string()),
    }
    .map_err(|e| (what(&format!("updating {} of", differ.join(", "))), e))?;
    Ok(Change::Updated)
}

/// The work stream's messages and the age of its first, and the dead-letter stream's
/// messages.
pub(super) async fn backlog(js: &Context, layout: &Layout) -> Result<Backlog, Failed> {
    let state = |name: String| async move {
        current(js, &name)
            .await?
            .map(|info| info.state)
            .ok_or_else(|| (format!("reading stream {name}"), "not found".into()))
    };
    let work = state(layout.work_stream()).await?;
    let dead = state(layout.dead_stream()).await?;
    Ok(Backlog {
        pending: work.messages,
        oldest: (work.messages > 0).then(|| SystemTime::from(work.first_timestamp)),
        dead_lettered: dead.messages,
    })
}

/// Deletes the stream `name`; `false` when there was none.
pub(super) async fn delete(js: &Context, name: &str) -> Result<bool, Failed> {
    match js.delete_stream(name).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e.kind()) => Ok(false),
        Err(e) => Err((format!("deleting stream {name}"), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn plan(kind: StreamKind) -> StreamPlan {
        StreamPlan {
            name: "entrepot_shop_orders_work".into(),
            kind,
            subjects: vec!["entrepot.shop.orders.in.*".into(), "entrepot.shop.orders.out.*.*".into()],
            replicas: 3,
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: Some(1 << 30),
            duplicate_window: Some(Duration::from_secs(600)),
        }
    }

    #[test]
    fn a_stream_is_made_as_planned_and_compares_equal_to_itself() {
        let p = plan(StreamKind::Stream);
        let config = stream_config(&p);
        assert_eq!(
            (config.retention, config.storage, config.discard, config.allow_direct),
            (RetentionPolicy::Limits, StorageType::File, DiscardPolicy::New, true)
        );
        assert_eq!((config.num_replicas, config.max_bytes), (3, 1 << 30));
        assert!(differences(&p, &config).is_empty());
        let mut reordered = config.clone();
        reordered.subjects.reverse();
        assert!(differences(&p, &reordered).is_empty(), "subjects are a set");
        let mut fewer = config.clone();
        fewer.num_replicas = 1;
        fewer.max_age = Duration::ZERO;
        assert_eq!(differences(&p, &fewer), ["replicas", "max_age"]);
        let unlimited = StreamPlan { max_bytes: None, ..p };
        assert_eq!(stream_config(&unlimited).max_bytes, -1, "what the server writes for no limit");
    }

    #[test]
    fn a_bucket_keeps_one_value_per_key() {
        let p = StreamPlan { name: "entrepot_shop_orders_keys".into(), ..plan(StreamKind::Bucket) };
        assert_eq!(stream_name(&p), "KV_entrepot_shop_orders_keys");
        let config = bucket_config(&p);
        assert_eq!((config.history, config.num_replicas, config.max_age), (1, 3, Duration::from_secs(3600)));
        let existing = stream::Config {
            num_replicas: 3,
            max_age: Duration::from_secs(3600),
            max_messages_per_subject: 1,
            ..stream::Config::default()
        };
        assert!(differences(&p, &existing).is_empty(), "a bucket's subjects and limits are its own");
        let kept = stream::Config { max_messages_per_subject: 5, ..existing };
        assert_eq!(differences(&p, &kept), ["history"]);
    }

    #[test]
    fn a_shared_bucket_keeps_the_most_replicas_any_flow_asked_for() {
        let one = StreamPlan { replicas: 1, ..plan(StreamKind::Bucket) };
        let three = stream::Config { num_replicas: 3, ..stream::Config::default() };
        assert_eq!(applied(&one, Sharing::Shared, Some(&three)).replicas, 3, "never fewer than it has");
        assert_eq!(applied(&one, Sharing::Shared, None).replicas, 1, "made as planned");
        assert_eq!(applied(&plan(StreamKind::Bucket), Sharing::Shared, Some(&stream::Config::default())).replicas, 3);
        assert_eq!(applied(&one, Sharing::Own, Some(&three)).replicas, 1, "a flow's own: as planned");
    }
}
