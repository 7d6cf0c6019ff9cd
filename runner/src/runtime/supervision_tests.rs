//! A real flow worker that dies makes `/readyz` fail, naming the flow and the worker,
//! and stops the runner with an error (so the process exits non-zero and is restarted).

use std::{path::Path, sync::atomic::Ordering, time::Duration};

use tokio::{net::TcpListener, sync::watch};

use super::*;
use crate::{manifest::Manifests, secrets::Secrets};

async fn readyz(url: &str) -> (u16, String) {
    let response = reqwest::get(format!("{url}/readyz")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_worker_that_dies_fails_readyz_and_stops_the_runner_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = Manifests::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart")).unwrap();
    let config = manifests.runner_config().unwrap();
    let rt = Runtime::new(config, &Secrets::with_manifests(manifests.secrets.clone()), dir.path()).unwrap();
    let listen = || TcpListener::bind("127.0.0.1:0");
    let (webhooks, admin, probe) = (listen().await.unwrap(), listen().await.unwrap(), listen().await.unwrap());
    // A second admin server on the same runtime, still up after the runner stops.
    let probe_url = format!("http://{}", probe.local_addr().unwrap());
    tokio::spawn(axum::serve(probe, rt.admin_router()).into_future());
    let (_stop, shutdown) = watch::channel(false);
    let serving = tokio::spawn(serve(rt.clone(), webhooks, admin, shutdown));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while readyz(&probe_url).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the runner never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let flow = rt.flow("shopify-orders-to-erp").unwrap();
    flow.fail_prepare.store(true, Ordering::SeqCst);
    flow.wake.notify_one();
    let ended = tokio::time::timeout(Duration::from_secs(10), serving).await.expect("the runner stops").unwrap();
    let error = ended.expect_err("a worker died").to_string();
    let failure = "SyncFlow shopify-orders-to-erp: prepare panicked: test hook";
    assert!(error.starts_with(failure), "{error}");
    let (code, body) = readyz(&probe_url).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(failure), "{body}");
}
