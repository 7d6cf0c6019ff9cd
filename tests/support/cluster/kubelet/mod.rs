//! The process kubelet: one Node of a real control plane whose pods run as local
//! processes, so the end-to-end tests exercise real controllers (ReplicaSets, Jobs,
//! StatefulSets, the PV controller) without containers. It also does the scheduler's
//! job (every unscheduled pod is bound to this node) and a provisioner's (every pending
//! claim gets a hostPath volume).
//!
//! It records the Events a kubelet and a scheduler would (Scheduled, Pulled, Started,
//! Failed, FailedMount, Unhealthy, BackOff, Killing), so `kubectl describe pod` says what
//! happened.
//!
//! A container runs as the host binary that stands in for its image's entrypoint, in
//! its own process group, with an empty environment plus `PATH` and the pod's env, in
//! the pod's folder, its stdout and stderr appended to a log file.
//!
//! **What is rewritten, and why.** These processes share the host's filesystem and
//! network, so the kubelet stands in for the pod's mount and network namespaces by
//! rewriting strings in argv (after `$(VAR)` expansion) and in env values:
//! - a volumeMount's `mountPath` (longest first, as a whole path, at the start of a
//!   value or right after `=`) becomes the volume's host folder (plus `subPath`), and the
//!   `terminationMessagePath` (default `/dev/termination-log`) a file in the pod folder:
//!   a process cannot write to `/etc/...` or `/var/lib/...` as a container can;
//! - the wildcard addresses `0.0.0.0` and `[::]` become the pod's own loopback address,
//!   so two pods can listen on the same port as they would in their own namespaces;
//! - a Service's `host:port` (`name`, `name.ns`, `name.ns.svc[.cluster.local]`; at the
//!   start of a value, after `=` or after `://`) becomes a ready pod's `ip:targetPort`,
//!   looked up when the container starts: there is no cluster DNS and no kube-proxy (a
//!   Service with no ready pod then is left alone; the process fails and, restarted,
//!   looks again). EndpointSlices stay empty: the API server refuses loopback addresses
//!   in them.
//!
//! Each pod gets its own address, `127.A.B.N`: `N` from 2 up, unique among live pods and
//! reused after deletion; `A.B` is one block per kubelet (from the process id), so two
//! clusters of two tests running at once never hand out the same address. A pod on the
//! host network gets `127.0.0.1`.
//!
//! The API server will not proxy to a loopback address (`pods/proxy`: "address not
//! allowed"), so a kubelet started on [`PodNetwork::Routed`] hands out `198.(18|19).X.N`
//! instead (the benchmarking range, RFC 2544: never a real network's), after routing its
//! `/24` to the loopback interface as local (`ip route replace local ... dev lo`, which
//! needs root; removed when the kubelet is dropped).
//!
//! Every pod gets `KUBERNETES_SERVICE_HOST=127.0.0.1` and `KUBERNETES_SERVICE_PORT` (the
//! API server), as the kubelet gives them with or without service links. A pod with the
//! service-account token volume (mounted at `/var/run/secrets/kubernetes.io/serviceaccount`)
//! also gets a kubeconfig in its folder (the API server, its CA, and `tokenFile` at the
//! token) in `KUBECONFIG`: a process cannot read the fixed in-cluster paths.
//!
//! Its HTTPS endpoint serves container logs, so `kubectl logs` works (the API server
//! must dial the Node's InternalIP: `--kubelet-preferred-address-types=InternalIP`).
//!
//! Shorter than the real kubelet's, so tests are quick: restart back-off 1 s doubling to
//! 10 s (not 10 s to 5 min), at most 5 s between SIGTERM and SIGKILL, a readiness probe
//! every second until its first success.
//!
//! Not done: exec and grpc probes (they fail, with a log line), startup probes, native
//! sidecars (reported as `CreateContainerConfigError`), service links in env, resource
//! limits, security contexts, image pull policies, taints and tolerations, readiness gates.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use tokio::{sync::watch, task::JoinHandle};

mod claims;
mod container;
mod env;
mod events;
mod log_server;
mod node;
mod pod;
mod probe;
mod rewrite;
mod scheduler;
mod services;
mod sources;
mod status;
mod volumes;

pub use node::KUBELET_VERSION;

/// A container image as this kubelet runs it.
#[derive(Clone, Debug)]
pub struct Image {
    /// The image's ENTRYPOINT, e.g. `["/usr/local/bin/entrepot"]`.
    pub entrypoint: Vec<String>,
    /// The host binary that stands in for `entrypoint[0]`.
    pub binary: PathBuf,
}

/// One Node whose pods are local processes; see the module documentation.
pub struct ProcessKubelet {
    kubelet: Arc<Kubelet>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pods: Arc<Mutex<HashMap<String, pod::PodHandle>>>,
    /// The pods' routed `/24`, if any (dropped after the pods' processes are killed).
    _route: Option<LocalRoute>,
}

/// Where pods' addresses come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PodNetwork {
    /// `127.A.B.N`: no set-up, but the API server will not proxy to them.
    #[default]
    Loopback,
    /// `198.(18|19).X.N`, routed locally: the API server proxies to them.
    Routed,
}

impl ProcessKubelet {
    /// Registers Node `node` and starts running the pods bound to it, on addresses of
    /// `network`, binding every unscheduled pod to it. `images` maps image references, exactly as pod specs name
    /// them, to what runs; `root` holds pod folders, volumes and logs; `server_url` and
    /// `ca_pem` go into the kubeconfig of pods with a service-account token.
    pub async fn start(
        network: PodNetwork,
        client: Client,
        node: &str,
        images: BTreeMap<String, Image>,
        root: &Path,
        server_url: &str,
        ca_pem: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", root.display()))?;
        let block = address_block(network);
        let route = match network {
            PodNetwork::Loopback => None,
            PodNetwork::Routed => Some(LocalRoute::add(&format!("{}.{}.{}.0/24", block[0], block[1], block[2]))?),
        };
        let since = Timestamp::now();
        let (stop, stopping) = watch::channel(false);
        let kubelet = Arc::new(Kubelet {
            client: client.clone(),
            node: node.into(),
            images,
            root: root.into(),
            server_url: server_url.into(),
            ca_pem: ca_pem.into(),
            events: events::Events::new(client.clone(), "kubelet", node),
            scheduler_events: events::Events::new(client.clone(), "default-scheduler", node),
            block,
            addresses: Mutex::default(),
            processes: Mutex::default(),
        });
        let (port, server) = log_server::start(kubelet.clone()).await?;
        let node_status = node::Endpoint { name: node.into(), since, port };
        node::register(&client, &node_status).await?;
        let pods = Arc::new(Mutex::new(HashMap::new()));
        let tasks = vec![
            server,
            tokio::spawn(node::keep_alive(client, node_status, stopping.clone())),
            tokio::spawn(watch_pods(kubelet.clone(), pods.clone(), stopping)),
            tokio::spawn(claims::provision(kubelet.clone())),
        ];
        Ok(Self { kubelet, stop, tasks, pods, _route: route })
    }

    /// The pid of the running process of a pod's container, for tests that kill it.
    pub fn pid(&self, namespace: &str, pod: &str, container: &str) -> Option<u32> {
        self.kubelet.process(namespace, pod, container).and_then(|p| p.pid)
    }

    /// The container's log file (stdout and stderr) on the host.
    pub fn log_path(&self, namespace: &str, pod: &str, container: &str) -> Option<PathBuf> {
        self.kubelet.process(namespace, pod, container).map(|p| p.log)
    }

    /// The host folder of claim `namespace/claim` (a PersistentVolumeClaim's volume, for
    /// tests that put files in it or read what a pod wrote). It outlives pods.
    pub fn claim_path(&self, namespace: &str, claim: &str) -> PathBuf {
        self.kubelet.claim_dir(namespace, claim)
    }

    /// Stops every pod process (SIGTERM, then SIGKILL after 2 s) and the kubelet. The
    /// pods stay in the API, as they would on a node that went away.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
        let tasks: Vec<JoinHandle<()>> = self.pods.lock().expect("pods lock").drain().map(|(_, h)| h.task).collect();
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for ProcessKubelet {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
        for handle in
            self.pods.lock().map(|p| p.values().map(|h| h.task.abort_handle()).collect::<Vec<_>>()).unwrap_or_default()
        {
            handle.abort();
        }
        // No test may leak a process: kill every group still alive now, whatever the
        // tasks get to do before the runtime drops them.
        for pid in self.kubelet.running_pids() {
            // SAFETY: killpg only sends a signal; each group is one this kubelet started.
            unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
        }
    }
}

/// What the tasks of one kubelet share.
pub(crate) struct Kubelet {
    client: Client,
    node: String,
    images: BTreeMap<String, Image>,
    root: PathBuf,
    server_url: String,
    ca_pem: String,
    /// Events as the kubelet of this node, and as the scheduler.
    events: events::Events,
    scheduler_events: events::Events,
    /// The first three octets of this kubelet's pod addresses (`127.A.B`, `198.18.X`).
    block: [u8; 3],
    addresses: Mutex<BTreeSet<u8>>,
    /// (namespace, pod, container) → its process.
    processes: Mutex<BTreeMap<(String, String, String), Process>>,
}

#[derive(Clone)]
struct Process {
    uid: String,
    pid: Option<u32>,
    log: PathBuf,
}

impl Kubelet {
    /// The folder of claim `namespace/claim`, which outlives pods.
    fn claim_dir(&self, namespace: &str, claim: &str) -> PathBuf {
        self.root.join("claims").join(namespace).join(claim)
    }

    fn allocate_ip(&self) -> Option<Ipv4Addr> {
        let mut used = self.addresses.lock().expect("addresses lock");
        let n = (2..=254).find(|n| !used.contains(n))?;
        used.insert(n);
        Some(Ipv4Addr::new(self.block[0], self.block[1], self.block[2], n))
    }

    fn release_ip(&self, ip: Ipv4Addr) {
        self.addresses.lock().expect("addresses lock").remove(&ip.octets()[3]);
    }

    fn key(pod: &Pod, container: &str) -> (String, String, String) {
        (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
            container.into(),
        )
    }

    fn started(&self, pod: &Pod, container: &str, pid: u32, log: &Path) {
        let process = Process { uid: pod.metadata.uid.clone().unwrap_or_default(), pid: Some(pid), log: log.into() };
        self.processes.lock().expect("processes lock").insert(Self::key(pod, container), process);
    }

    fn exited(&self, pod: &Pod, container: &str, pid: u32) {
        let mut processes = self.processes.lock().expect("processes lock");
        if let Some(p) = processes.get_mut(&Self::key(pod, container))
            && p.uid == pod.metadata.uid.clone().unwrap_or_default()
            && p.pid == Some(pid)
        {
            p.pid = None;
        }
    }

    fn process(&self, namespace: &str, pod: &str, container: &str) -> Option<Process> {
        let key = (namespace.to_string(), pod.to_string(), container.to_string());
        self.processes.lock().expect("processes lock").get(&key).cloned()
    }

    fn running_pids(&self) -> Vec<u32> {
        let processes = self.processes.lock().map(|p| p.values().filter_map(|p| p.pid).collect());
        processes.unwrap_or_default()
    }
}

/// `127.A.B` (or `198.18.X`, `198.19.X` when routed), different for each kubelet of this
/// machine's live processes.
fn address_block(network: PodNetwork) -> [u8; 3] {
    static STARTED: AtomicU32 = AtomicU32::new(0);
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    let block = (std::process::id().wrapping_mul(31).wrapping_add(n.wrapping_mul(7919))) % 65535 + 1;
    match network {
        PodNetwork::Loopback => [127, (block >> 8) as u8, block as u8],
        PodNetwork::Routed => [198, 18 + (block >> 8) as u8 % 2, block as u8],
    }
}

/// A prefix routed to the loopback interface as local, so this machine answers on each
/// of its addresses; removed when dropped.
struct LocalRoute(String);

impl LocalRoute {
    fn add(prefix: &str) -> anyhow::Result<Self> {
        let out = std::process::Command::new("ip")
            .args(["route", "replace", "local", prefix, "dev", "lo"])
            .output()
            .map_err(|e| anyhow::anyhow!("cannot run `ip` (Debian package iproute2) to route {prefix}: {e}"))?;
        anyhow::ensure!(
            out.status.success(),
            "`ip route replace local {prefix} dev lo` failed (routed pod addresses need root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(Self(prefix.into()))
    }
}

impl Drop for LocalRoute {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["route", "del", "local", &self.0, "dev", "lo"]).output();
    }
}

/// Binds unscheduled pods, and gives each pod of this node to its task.
async fn watch_pods(
    kubelet: Arc<Kubelet>,
    pods: Arc<Mutex<HashMap<String, pod::PodHandle>>>,
    stop: watch::Receiver<bool>,
) {
    let api: Api<Pod> = Api::all(kubelet.client.clone());
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut listed: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        if *stop.borrow() {
            return;
        }
        match event {
            Ok(watcher::Event::Init) => listed = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                listed.get_or_insert_default().insert(pod.metadata.uid.clone().unwrap_or_default());
                on_pod(&kubelet, &pods, pod, &stop).await;
            }
            Ok(watcher::Event::InitDone) => {
                let seen = listed.take().unwrap_or_default();
                let gone: Vec<String> =
                    pods.lock().expect("pods lock").keys().filter(|uid| !seen.contains(*uid)).cloned().collect();
                for uid in gone {
                    forget(&pods, &uid);
                }
            }
            Ok(watcher::Event::Apply(pod)) => on_pod(&kubelet, &pods, pod, &stop).await,
            Ok(watcher::Event::Delete(pod)) => forget(&pods, pod.metadata.uid.as_deref().unwrap_or_default()),
            Err(e) => eprintln!("process kubelet: watching pods: {e}"),
        }
    }
}

async fn on_pod(
    kubelet: &Arc<Kubelet>,
    pods: &Mutex<HashMap<String, pod::PodHandle>>,
    pod: Pod,
    stop: &watch::Receiver<bool>,
) {
    if scheduler::wants_binding(&pod) {
        scheduler::bind(&kubelet.client, &pod, &kubelet.node, &kubelet.scheduler_events).await;
        return;
    }
    if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(kubelet.node.as_str()) {
        return;
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut pods = pods.lock().expect("pods lock");
    match pods.get(&uid) {
        // Its task ended (the pod was deleted and waits for its finalizers).
        Some(handle) if handle.task.is_finished() => {}
        Some(handle) => {
            handle.updates.send_replace(Some(pod));
        }
        None => {
            let handle = pod::spawn(kubelet.clone(), pod, stop.clone());
            pods.insert(uid, handle);
        }
    }
}

/// The pod is gone from the API: its task kills its processes and ends.
fn forget(pods: &Mutex<HashMap<String, pod::PodHandle>>, uid: &str) {
    if let Some(handle) = pods.lock().expect("pods lock").remove(uid) {
        handle.updates.send_replace(None);
    }
}
