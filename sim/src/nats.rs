//! Real NATS servers for tests: unmodified upstream `nats-server` with JetStream, as a
//! child process on free loopback ports, its data in a temporary folder.
//!
//! - [`NatsServer`]: one server; [`NatsServer::start_with_token`] for one that wants a
//!   token.
//! - [`NatsCluster`]: a JetStream cluster of servers routed to each other, for tests
//!   that kill a node and bring it back.
//!
//! Both wait until the servers take TCP connections and their monitoring endpoint's
//! `GET /healthz` answers 200: with no query, `/healthz` says ok only once JetStream is
//! enabled, its streams are recovered from the store and, in a cluster, the server is
//! current with a meta leader (a superset of `?js-enabled-only=true`, which stops at
//! "enabled"). A server that is not ready within 30 s, or exits, fails the test with the
//! tail of its log (its stderr, kept in the temporary folder); one that exits because a
//! port of its is taken meanwhile (free ports are picked before the server binds them)
//! is started again until then. Dropping either kills the servers (SIGKILL: their data
//! is thrown away with the folder).
//!
//! The binary is `$ENTREPOT_NATS_SERVER` when set, else `.tools/bin/nats-server` at the
//! workspace root, which `scripts/install-tools.sh` builds at the version
//! `tests/nats/go.mod` pins, else `nats-server` on `PATH`.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// How long a start or restart may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The cluster's name (`--cluster_name`).
pub const CLUSTER_NAME: &str = "entrepot-test";

/// One `nats-server` with JetStream on 127.0.0.1, of a test's own.
pub struct NatsServer {
    node: Node,
    token: Option<String>,
    // Last: removed after the server is killed.
    _dir: TempDir,
}

impl NatsServer {
    /// Starts a server that takes any client, and waits until JetStream is ready.
    pub async fn start() -> Self {
        Self::start_as(None).await
    }

    /// Starts a server whose clients must give `token` (`--auth`), and waits until
    /// JetStream is ready.
    pub async fn start_with_token(token: &str) -> Self {
        Self::start_as(Some(token)).await
    }

    async fn start_as(token: Option<&str>) -> Self {
        let dir = temp_dir("entrepot-nats-");
        let ports = free_ports(2);
        let mut node = Node::new(dir.path(), "nats", ports[0], ports[1]);
        if let Some(token) = token {
            node.args.extend(["--auth".to_string(), token.to_string()]);
        }
        let started = Instant::now();
        node.spawn();
        wait_ready(&client(), &mut [&mut node], false).await;
        eprintln!("nats-server ready on {} in {} ms", node.url(), started.elapsed().as_millis());
        Self { node, token: token.map(str::to_string), _dir: dir }
    }

    /// `nats://127.0.0.1:PORT`, the client URL (without the token).
    pub fn url(&self) -> String {
        self.node.url()
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// `http://127.0.0.1:PORT`, the monitoring endpoint (`/healthz`, `/jsz`, `/varz`).
    pub fn monitor_url(&self) -> String {
        self.node.monitor_url()
    }

    /// The token clients must give, for a server started with one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The JetStream store folder (`--store_dir`), kept across [`restart`](Self::restart).
    pub fn store_dir(&self) -> &Path {
        &self.node.store
    }

    /// The server's log (its stderr, across restarts).
    pub fn log_path(&self) -> &Path {
        &self.node.log
    }

    /// Kills the server with SIGKILL, as a crash would: nothing is flushed. Does nothing
    /// when it is not running.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// Starts the server again (killing it first if it runs) on the same ports and store
    /// folder, and waits until JetStream is ready, its streams recovered.
    pub async fn restart(&mut self) {
        self.node.kill();
        self.node.spawn();
        wait_ready(&client(), &mut [&mut self.node], false).await;
    }
}

/// A JetStream cluster of `nats-server`s on 127.0.0.1 (`--cluster_name entrepot-test`),
/// node `i` named `n<i>` with its own client, cluster and monitoring ports and store
/// folder, each routed to all the others.
pub struct NatsCluster {
    nodes: Vec<Node>,
    // Last: removed after the servers are killed.
    _dir: TempDir,
}

impl NatsCluster {
    /// Starts `size` servers (at least 2; 3 tolerates one down), and waits until each
    /// is healthy, current with a meta leader that its `/jsz` names.
    pub async fn start(size: usize) -> Self {
        assert!(size >= 2, "a cluster has at least 2 nodes; for one server, use NatsServer");
        let dir = temp_dir("entrepot-nats-cluster-");
        // Per node: client, cluster (routes) and monitoring port.
        let ports: Vec<u16> = free_ports(3 * size);
        let ports: Vec<&[u16]> = ports.chunks(3).collect();
        let mut nodes = Vec::with_capacity(size);
        for (i, node_ports) in ports.iter().enumerate() {
            let (port, cluster_port, monitor_port) = (node_ports[0], node_ports[1], node_ports[2]);
            let mut node = Node::new(dir.path(), &format!("n{i}"), port, monitor_port);
            let routes: Vec<String> = (ports.iter().enumerate())
                .filter(|(j, _)| *j != i)
                .map(|(_, other)| format!("nats://127.0.0.1:{}", other[1]))
                .collect();
            node.args.extend([
                "--cluster".to_string(),
                format!("nats://127.0.0.1:{cluster_port}"),
                "--routes".to_string(),
                routes.join(","),
                "--cluster_name".to_string(),
                CLUSTER_NAME.to_string(),
                "--server_name".to_string(),
                format!("n{i}"),
            ]);
            nodes.push(node);
        }
        let started = Instant::now();
        for node in &mut nodes {
            node.spawn();
        }
        let mut cluster = Self { nodes, _dir: dir };
        wait_ready(&client(), &mut cluster.nodes.iter_mut().collect::<Vec<_>>(), true).await;
        eprintln!("nats cluster of {size} ready on {} in {} ms", cluster.urls(), started.elapsed().as_millis());
        cluster
    }

    /// How many nodes it has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never: a cluster has at least 2 nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The client URLs of all nodes, comma-separated (`nats://127.0.0.1:P0,nats://...`):
    /// a client given them all fails over to a live one.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(Node::url).collect::<Vec<_>>().join(",")
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Node `i`'s monitoring endpoint, `http://127.0.0.1:PORT`.
    pub fn monitor_url(&self, i: usize) -> String {
        self.nodes[i].monitor_url()
    }

    /// Node `i`'s log (its stderr, across restarts).
    pub fn log_path(&self, i: usize) -> &Path {
        &self.nodes[i].log
    }

    /// Whether node `i`'s process runs (it may not be healthy yet).
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// The index of the node that is the JetStream meta leader, as the first running
    /// node that answers says; `None` while there is none.
    pub async fn meta_leader(&mut self) -> Option<usize> {
        let client = client();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_running() {
                continue;
            }
            if let Some(leader) = meta_leader(&client, &self.nodes[i]).await {
                return self.nodes.iter().position(|node| node.name == leader);
            }
        }
        None
    }

    /// Kills node `i` with SIGKILL, as a crash would. Does nothing when it is not
    /// running.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again (killing it first if it runs) on the same ports and store
    /// folder, and waits until it is healthy: back in the cluster, current with the
    /// meta leader.
    pub async fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.kill();
        let started = Instant::now();
        node.spawn();
        wait_ready(&client(), &mut [node], true).await;
        eprintln!("nats-server n{i} back in the cluster in {} ms", started.elapsed().as_millis());
    }
}

/// One server process and how to start it again.
struct Node {
    name: String,
    bin: PathBuf,
    args: Vec<String>,
    port: u16,
    monitor_port: u16,
    store: PathBuf,
    log: PathBuf,
    /// Where this run's lines start in the log.
    log_start: u64,
    child: Option<Child>,
}

impl Node {
    /// A JetStream server named `name`, its store and log in `dir`.
    fn new(dir: &Path, name: &str, port: u16, monitor_port: u16) -> Self {
        let store = dir.join(format!("{name}-store"));
        let args = [
            "-js",
            "--store_dir",
            &store.display().to_string(),
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &monitor_port.to_string(),
        ]
        .map(str::to_string);
        Self {
            name: name.to_string(),
            bin: binary(),
            args: args.to_vec(),
            port,
            monitor_port,
            store,
            log: dir.join(format!("{name}.log")),
            log_start: 0,
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "nats-server {} is running", self.name);
        // Appended to: a restart's log follows the one before it.
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("open the nats-server log");
        self.log_start = log.metadata().expect("the log's size").len();
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log's handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} could not be started: {e}", self.bin.display()));
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Whether this run ended because one of its ports was taken. Free ports are picked
    /// before the server binds them, and a restart binds the same ones again, so another
    /// process may have one by then: an outgoing connection's local port, most often,
    /// which is soon gone.
    fn lost_a_port(&self) -> bool {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let run = log.get(self.log_start as usize..).unwrap_or_default();
        String::from_utf8_lossy(run).contains("address already in use")
    }

    /// The last lines of its log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Why it is not ready yet, or `None` when it is: it takes TCP connections,
    /// `/healthz` answers 200 and, in a cluster, `/jsz` names a meta leader.
    async fn not_ready(&self, client: &reqwest::Client, clustered: bool) -> Option<String> {
        if let Err(e) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
            return Some(format!("client port {}: {e}", self.port));
        }
        let healthz = format!("{}/healthz", self.monitor_url());
        match client.get(&healthz).send().await {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {}
            Ok(response) => {
                let status = response.status();
                return Some(format!("GET {healthz}: {status} {}", response.text().await.unwrap_or_default()));
            }
            Err(e) => return Some(format!("GET {healthz}: {e}")),
        }
        if clustered && meta_leader(client, self).await.is_none() {
            return Some(format!("GET {}/jsz: no meta_cluster.leader", self.monitor_url()));
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The meta leader's server name, as `node`'s `/jsz` says.
async fn meta_leader(client: &reqwest::Client, node: &Node) -> Option<String> {
    let jsz: serde_json::Value =
        client.get(format!("{}/jsz", node.monitor_url())).send().await.ok()?.json().await.ok()?;
    let leader = jsz.pointer("/meta_cluster/leader")?.as_str()?;
    (!leader.is_empty()).then(|| leader.to_string())
}

/// Waits until every one of `nodes` is ready; panics with the tails of the logs of
/// those that are not after [`START_TIMEOUT`], or at once when one exits (unless it
/// found a port taken: then it is started again, until the deadline).
async fn wait_ready(client: &reqwest::Client, nodes: &mut [&mut Node], clustered: bool) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let mut waiting = Vec::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                if node.lost_a_port() && Instant::now() < deadline {
                    eprintln!("nats-server {}: a port of its is taken; starting it again", node.name);
                    node.child = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    node.spawn();
                    waiting.push((i, "starting again: a port was taken".to_string()));
                    continue;
                }
                panic!("nats-server {} exited at start ({status}); its log ends:\n{}", node.name, node.log_tail());
            }
            if let Some(why) = node.not_ready(client, clustered).await {
                waiting.push((i, why));
            }
        }
        if waiting.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let report: Vec<String> = (waiting.into_iter())
                .map(|(i, why)| format!("nats-server {}: {why}; its log ends:\n{}", nodes[i].name, nodes[i].log_tail()))
                .collect();
            panic!("not ready within {} s:\n{}", START_TIMEOUT.as_secs(), report.join("\n\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `nats-server` to run: `$ENTREPOT_NATS_SERVER`, else `.tools/bin/nats-server` at
/// the workspace root, else `nats-server` on `PATH`.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ENTREPOT_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "ENTREPOT_NATS_SERVER is {}, which is not a file", path.display());
        return path;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("sim/ is in the workspace");
    let tools = root.join(".tools/bin/nats-server");
    if tools.is_file() {
        return tools;
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("nats-server")).find(|bin| bin.is_file()));
    on_path.unwrap_or_else(|| {
        panic!(
            "nats-server not found: not in $ENTREPOT_NATS_SERVER, {} or on PATH. Run `bash scripts/install-tools.sh`, \
             which builds the version tests/nats/go.mod pins.",
            tools.display()
        )
    })
}

fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().expect("make a temporary folder")
}

/// `n` distinct free ports on 127.0.0.1: all bound at once, so none is handed out twice.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    listeners.iter().map(|listener| listener.local_addr().expect("a bound port").port()).collect()
}

/// A client that ignores environment proxies (the servers are on loopback) and gives up
/// on a request after 2 s (a server busy starting may not answer at once).
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().expect("build an HTTP client")
}
