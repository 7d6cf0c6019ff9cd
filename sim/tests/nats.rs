//! The NATS launchers (`entrepot_sim::nats`) against the real nats-server: a server takes
//! clients and reports JetStream ready, a token is enforced, and a killed server or
//! cluster node comes back on its ports with its store. The client side is the NATS
//! protocol's text lines over TCP and the monitoring endpoint over HTTP: no NATS client
//! crate is needed for this.

use std::time::Duration;

use entrepot_sim::nats::{CLUSTER_NAME, NatsCluster, NatsServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap()
}

async fn get_json(url: String) -> (reqwest::StatusCode, serde_json::Value) {
    let response = http().get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}")))
}

/// Connects to `port`, reads the server's INFO, sends CONNECT (with `token`, if any)
/// and PING, and returns INFO's JSON and the line answering the PING.
async fn hello(port: u16, token: Option<&str>) -> (serde_json::Value, String) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("the server takes TCP connections");
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    let info = line.strip_prefix("INFO ").unwrap_or_else(|| panic!("the server opens with INFO, not {line:?}"));
    let info: serde_json::Value = serde_json::from_str(info.trim()).unwrap();
    let connect = serde_json::json!({ "verbose": false, "pedantic": false, "auth_token": token });
    stream.get_mut().write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes()).await.unwrap();
    line.clear();
    stream.read_line(&mut line).await.unwrap();
    (info, line.trim_end().to_string())
}

#[tokio::test]
async fn a_server_takes_clients_and_reports_jetstream_ready() {
    let server = NatsServer::start().await;
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));

    let (info, answer) = hello(server.port(), None).await;
    assert_eq!(info["jetstream"], true, "INFO: {info}");
    assert_eq!(answer, "PONG");

    let (status, health) = get_json(format!("{}/healthz?js-enabled-only=true", server.monitor_url())).await;
    assert_eq!((status.as_u16(), health["status"].as_str()), (200, Some("ok")), "{health}");
    let (_, varz) = get_json(format!("{}/varz", server.monitor_url())).await;
    let version = varz["version"].as_str().unwrap();
    let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    assert!(version.starts_with("2.") && minor >= 11, "nats-server {version}: the queue needs 2.11 or newer");
    let (_, jsz) = get_json(format!("{}/jsz", server.monitor_url())).await;
    let store = jsz["config"]["store_dir"].as_str().unwrap();
    assert!(store.starts_with(&*server.store_dir().to_string_lossy()), "{store}");
}

#[tokio::test]
async fn a_token_server_refuses_a_client_without_it() {
    let server = NatsServer::start_with_token("s3cret-token").await;
    assert_eq!(server.token(), Some("s3cret-token"));
    let (info, answer) = hello(server.port(), Some("s3cret-token")).await;
    assert_eq!(info["auth_required"], true, "INFO: {info}");
    assert_eq!(answer, "PONG");
    let (_, answer) = hello(server.port(), Some("wrong")).await;
    assert_eq!(answer, "-ERR 'Authorization Violation'");
    let (_, answer) = hello(server.port(), None).await;
    assert_eq!(answer, "-ERR 'Authorization Violation'");
}

#[tokio::test]
async fn a_killed_server_restarts_on_its_port_with_its_store() {
    let mut server = NatsServer::start().await;
    let (url, store) = (server.url(), server.store_dir().to_path_buf());
    server.kill();
    assert!(TcpStream::connect(("127.0.0.1", server.port())).await.is_err(), "a killed server takes no connections");
    server.restart().await;
    assert_eq!((server.url(), server.store_dir()), (url, store.as_path()));
    assert_eq!(hello(server.port(), None).await.1, "PONG");
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert_eq!(log.matches("Server is ready").count(), 2, "the log keeps both runs:\n{log}");
}

#[tokio::test]
async fn a_restart_waits_until_a_port_taken_meanwhile_is_free_again() {
    let mut server = NatsServer::start().await;
    server.kill();
    // Another process holds the client port for a second: the first start fails with
    // "address already in use", a later one gets it.
    let holder = std::net::TcpListener::bind(("127.0.0.1", server.port())).expect("the killed server's port is free");
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(holder);
    });
    server.restart().await;
    release.await.unwrap();
    assert_eq!(hello(server.port(), None).await.1, "PONG");
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(log.contains("address already in use"), "the port was taken at first:\n{log}");
}

#[tokio::test]
async fn a_cluster_of_three_gets_its_killed_meta_leader_back() {
    let mut cluster = NatsCluster::start(3).await;
    assert_eq!(cluster.len(), 3);
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    assert_eq!(cluster.urls(), urls.join(","));
    for i in 0..3 {
        let (_, jsz) = get_json(format!("{}/jsz", cluster.monitor_url(i))).await;
        assert_eq!(jsz["meta_cluster"]["name"], CLUSTER_NAME, "n{i}: {jsz}");
        assert_eq!(jsz["meta_cluster"]["cluster_size"], 3, "n{i}: {jsz}");
    }

    // The worst node to lose: the meta leader. The other two elect one of themselves.
    let leader = cluster.meta_leader().await.expect("a meta leader");
    cluster.kill(leader);
    assert!(!cluster.is_running(leader));
    let killed = tokio::time::Instant::now();
    let deadline = killed + Duration::from_secs(30);
    let new_leader = loop {
        match cluster.meta_leader().await {
            Some(new) if new != leader => break new,
            _ => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "no new meta leader within 30 s of killing n{leader}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("meta leader n{leader} killed; n{new_leader} took over after {} ms", killed.elapsed().as_millis());

    cluster.restart(leader).await;
    let (status, health) = get_json(format!("{}/healthz", cluster.monitor_url(leader))).await;
    assert_eq!((status.as_u16(), health["status"].as_str()), (200, Some("ok")), "{health}");
    let (_, jsz) = get_json(format!("{}/jsz", cluster.monitor_url(leader))).await;
    assert!(jsz["meta_cluster"]["leader"].as_str().is_some_and(|l| !l.is_empty()), "{jsz}");
}
