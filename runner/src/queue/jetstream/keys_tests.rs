//! Claims of idempotency keys against a real three-node NATS cluster, including one that
//! has lost its quorum: a claim that cannot be written is an error (the record waits and
//! is placed later), never a duplicate (the record would be dropped).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use entrepot_sim::nats::NatsCluster;

use super::{claim, last_version, record_version, version_key};

async fn bucket(url: &str, name: &str) -> kv::Store {
    let client = async_nats::connect(url).await.expect("connects");
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(1)).build(client);
    let config = kv::Config { bucket: name.into(), history: 1, num_replicas: 3, ..Default::default() };
    js.create_key_value(config).await.expect("the bucket is created")
}

/// The claim's answer once it has one: a claim that cannot be written (no leader yet, or
/// not any more) is an error, tried again.
async fn settled(keys: &kv::Store, key: &str, by: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match claim(keys, key, by, false).await {
            Ok(claimed) => return claimed,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "no answer in 30 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_the_records_own_and_cannot_be_lost_to_a_cluster_without_quorum() {
    let mut nats = NatsCluster::start(3).await;
    let keys = bucket(&nats.url(0), "claims").await;

    // Just created, the bucket may have no leader yet: its replicas answer reads (none
    // holds the key) while writes fail. That is no duplicate.
    assert!(settled(&keys, "shopify:1:v1", "d-1").await, "a free key is claimed");
    assert!(claim(&keys, "shopify:1:v1", "d-1", false).await.unwrap(), "its record's placing may be repeated");
    assert!(!claim(&keys, "shopify:1:v1", "d-2", false).await.unwrap(), "another record with the key is a duplicate");
    assert!(claim(&keys, "shopify:1:v1", "d-2", true).await.unwrap(), "a replay takes the key over");

    let versions = bucket(&nats.url(0), "versions").await;
    let key = version_key("erp", "shopify:1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = record_version(&versions, &key, "2026-11-27T10:00:02Z").await {
        assert!(tokio::time::Instant::now() < deadline, "no leader in 30 s: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    record_version(&versions, &key, "2026-11-27T10:00:01Z").await.unwrap();
    assert_eq!(last_version(&versions, &key).await.unwrap().as_deref(), Some("2026-11-27T10:00:02Z"));

    // Two of three down: node 0 still holds a copy of the bucket, but nothing can be
    // written until a leader is elected again.
    nats.kill(1);
    nats.kill(2);
    let outcome = claim(&keys, "shopify:2:v1", "d-3", false).await;
    assert!(outcome.is_err(), "a claim that could not be written must fail, not read as a duplicate: {outcome:?}");

    nats.restart(1).await;
    assert!(settled(&keys, "shopify:2:v1", "d-3").await, "with a leader again, the record claims its key");
    assert!(!settled(&keys, "shopify:2:v1", "d-4").await);
}
