//! The operator's side of a JetStream flow against a real `nats-server`
//! (`entrepot_sim::nats`): the streams and buckets of a flow's plan, and the quota bucket
//! of its target Connector, made as planned, a second pass changing nothing, a changed
//! plan updating what changed, the backlog read from the streams, everything deleted; the
//! operator's own token; a server that does not answer. The controller around it, with a
//! real API server, is `cluster_jetstream.rs`.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{DiscardPolicy, RetentionPolicy, StorageType},
};
use entrepot_api::{
    jetstream::{Layout, StreamKind, StreamPlan},
    resource::SyncFlowSpec,
};
use entrepot_operator::nats_io::{Auth, Change, Connections};
use entrepot_sim::nats::NatsServer;

/// A flow spec as the tests of the api crate write it: only what the plan reads matters.
fn spec(dead_letter_retention: &str) -> SyncFlowSpec {
    serde_json::from_value(serde_json::json!({
        "source": {"connectorRef": "shop", "entity": "orders", "trigger": {"webhook": {}}},
        "targets": [{"connectorRef": "erp", "entity": "salesOrder", "operation": "upsert"}],
        "delivery": {"deadLetter": {"retention": dead_letter_retention}},
        "runner": {"queue": {"jetstream": {}}},
    }))
    .expect("a SyncFlow spec")
}

/// The stream of Connector `erp`'s quota bucket in namespace `shop`.
const CONNECTOR_STREAM: &str = "KV_entrepot_shop_connector_erp_quota";

async fn client(server: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(server.url()).await.expect("a client of the test server"))
}

/// The stream holding `plan` checked against it, setting by setting.
async fn assert_as_planned(js: &jetstream::Context, plan: &StreamPlan) {
    let name = match plan.kind {
        StreamKind::Stream => plan.name.clone(),
        StreamKind::Bucket => {
            js.get_key_value(&plan.name).await.unwrap_or_else(|e| panic!("bucket {}: {e}", plan.name));
            format!("KV_{}", plan.name)
        }
    };
    let config =
        js.get_stream(&name).await.unwrap_or_else(|e| panic!("stream {name}: {e}")).cached_info().config.clone();
    assert_eq!(config.num_replicas, plan.replicas, "{name}");
    assert_eq!(config.max_age, plan.max_age.unwrap_or_default(), "{name}");
    assert_eq!(config.storage, StorageType::File, "{name}");
    assert_eq!(config.discard, DiscardPolicy::New, "{name}");
    assert!(config.allow_direct, "{name}");
    match plan.kind {
        StreamKind::Stream => {
            assert_eq!(config.subjects, plan.subjects, "{name}");
            assert_eq!(config.retention, RetentionPolicy::Limits, "{name}");
            assert_eq!(Some(config.max_bytes), plan.max_bytes, "{name}");
            assert_eq!(Some(config.duplicate_window), plan.duplicate_window, "{name}");
        }
        StreamKind::Bucket => assert_eq!(config.max_messages_per_subject, 1, "{name}: one value per key"),
    }
}

async fn stream_names(js: &jetstream::Context) -> Vec<String> {
    use futures::TryStreamExt;
    js.stream_names().try_collect().await.expect("the stream names")
}

#[tokio::test]
async fn a_flows_plan_is_made_once_read_for_its_backlog_and_deleted() {
    let server = NatsServer::start().await;
    let js = client(&server).await;
    let nats = Connections::default();
    let layout = Layout::new("shop", "orders");
    let plans = layout.plan(&spec("14d"), 1);

    // The quota bucket of the flow's target Connector, which other flows share.
    let connector = [Layout::connector_plan("shop", "erp", 1)];

    let first = nats.provision(&server.url(), &plans).await.unwrap();
    assert!(first.iter().all(|(_, c)| *c == Change::Created), "{first:?}");
    let shared = nats.provision_shared(&server.url(), &connector).await.unwrap();
    assert_eq!(shared, [(connector[0].name.clone(), Change::Created)]);
    for plan in plans.iter().chain(&connector) {
        assert_as_planned(&js, plan).await;
    }
    let mut names = stream_names(&js).await;
    names.sort();
    let mut expected = layout.streams();
    expected.push(CONNECTOR_STREAM.into());
    expected.sort();
    assert_eq!(names, expected);

    // The same plans again: nothing to do.
    let again = nats.provision(&server.url(), &plans).await.unwrap();
    assert!(again.iter().all(|(_, c)| *c == Change::Unchanged), "{again:?}");
    let again = nats.provision_shared(&server.url(), &connector).await.unwrap();
    assert_eq!(again, [(connector[0].name.clone(), Change::Unchanged)]);

    // A shorter dead-letter retention: the dead-letter and audit streams and the
    // versions bucket (kept for the longer of dedup window and retention) change,
    // nothing else.
    let shorter = layout.plan(&spec("2d"), 1);
    let changed: Vec<(String, Change)> = nats.provision(&server.url(), &shorter).await.unwrap();
    let updated: Vec<&str> =
        changed.iter().filter(|(_, c)| *c == Change::Updated).map(|(name, _)| name.as_str()).collect();
    assert_eq!(updated, [layout.dead_stream(), layout.audit_stream(), layout.versions_bucket()]);
    for plan in &shorter {
        assert_as_planned(&js, plan).await;
    }

    // Three records waiting to be mapped and one dead letter.
    for partition in [0, 3, 3] {
        js.publish(layout.inbox_subject(partition), "{}".into()).await.unwrap().await.unwrap();
    }
    js.publish(layout.dead_subject(), "{}".into()).await.unwrap().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let backlog = nats.backlog(&server.url(), &layout).await.unwrap();
    assert_eq!((backlog.pending, backlog.dead_lettered), (3, 1));
    let age = backlog.oldest.expect("an oldest record").elapsed().unwrap();
    assert!(age >= Duration::from_secs(1) && age < Duration::from_secs(60), "{age:?}");

    // The flow's own streams go; the Connector's bucket only when asked for by name.
    nats.remove(&server.url(), &layout).await.unwrap();
    assert_eq!(stream_names(&js).await, [CONNECTOR_STREAM]);
    nats.remove_buckets(&server.url(), &[connector[0].name.clone()]).await.unwrap();
    assert!(stream_names(&js).await.is_empty());
    // Already gone: no error.
    nats.remove(&server.url(), &layout).await.unwrap();
    nats.remove_buckets(&server.url(), &[connector[0].name.clone()]).await.unwrap();
    assert!(nats.backlog(&server.url(), &layout).await.is_err(), "no stream, no backlog");
}

#[tokio::test]
async fn the_operator_connects_with_its_own_token_and_never_repeats_it() {
    const TOKEN: &str = "operator-only-7f3a";
    let server = NatsServer::start_with_token(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let plans = Layout::new("shop", "orders").plan(&spec("14d"), 1);

    let with_token = Connections::new(Auth::TokenFile(file));
    with_token.provision(&server.url(), &plans).await.expect("the token is accepted");

    let refused = Connections::default().provision(&server.url(), &plans).await.unwrap_err().to_string();
    assert!(refused.contains(&server.url()), "{refused}");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let refused = Connections::new(Auth::TokenFile(wrong)).provision(&server.url(), &plans).await.unwrap_err();
    let message = refused.to_string();
    assert!(!message.contains("not-the-token") && !message.contains(TOKEN), "{message}");
    let missing = Connections::new(Auth::CredentialsFile(dir.path().join("absent.creds")));
    let message = missing.provision(&server.url(), &plans).await.unwrap_err().to_string();
    assert!(message.contains("absent.creds"), "the file is named: {message}");
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_an_error_naming_it_until_it_is_back() {
    let mut server = NatsServer::start().await;
    let nats = Connections::default();
    let layout = Layout::new("shop", "orders");
    let plans = layout.plan(&spec("14d"), 1);
    nats.provision(&server.url(), &plans).await.unwrap();

    server.kill();
    let error = nats.provision(&server.url(), &plans).await.unwrap_err();
    assert_eq!(error.url, server.url());
    assert!(error.to_string().starts_with(&format!("NATS at {}", server.url())), "{error}");

    // Back, with its store: the connection is made again and the streams are there.
    server.restart().await;
    let back = nats.provision(&server.url(), &plans).await.unwrap();
    assert!(back.iter().all(|(_, c)| *c == Change::Unchanged), "{back:?}");
}
