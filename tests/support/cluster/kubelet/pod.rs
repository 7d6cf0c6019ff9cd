//! One pod on this node, in its own task: its address and folder, volumes, init
//! containers then containers, status patches, and its end when it is deleted.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::{HostIP, Pod, PodIP, PodStatus},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use tokio::{sync::watch, task::JoinHandle};

use super::{
    Kubelet,
    container::{ContainerRun, PodContext, State, grace_period},
    events::Note,
    status::{self, Conditions},
    volumes::Volumes,
};

/// How often a pod looks at its processes and probes.
const TICK: Duration = Duration::from_millis(200);
/// How often volumes are re-synced (ConfigMap changes reach the files this fast).
const VOLUME_SYNC: Duration = Duration::from_secs(2);
/// How long after a failed status patch the next one is tried.
const PATCH_RETRY: Duration = Duration::from_secs(2);
/// How long a stopping kubelet gives processes between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The task of one pod and the way to tell it of changes (`None`: the pod is gone).
pub struct PodHandle {
    pub updates: watch::Sender<Option<Pod>>,
    pub task: JoinHandle<()>,
}

/// Starts the task of `pod`, which is bound to this node.
pub fn spawn(kubelet: Arc<Kubelet>, pod: Pod, stop: watch::Receiver<bool>) -> PodHandle {
    let (updates, rx) = watch::channel(Some(pod.clone()));
    let task = tokio::spawn(async move {
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let address = if host_network {
            Address { kubelet: kubelet.clone(), ip: Ipv4Addr::LOCALHOST, own: false }
        } else {
            let Some(address) = Address::take(&kubelet).await else { return };
            address
        };
        let run = PodRun::new(kubelet, pod, address);
        run.run(rx, stop).await;
    });
    PodHandle { updates, task }
}

/// The pod's loopback address, given back when the pod ends; the host's for a pod on
/// the host network.
struct Address {
    kubelet: Arc<Kubelet>,
    ip: Ipv4Addr,
    own: bool,
}

impl Address {
    async fn take(kubelet: &Arc<Kubelet>) -> Option<Self> {
        for _ in 0..600 {
            if let Some(ip) = kubelet.allocate_ip() {
                return Some(Self { kubelet: kubelet.clone(), ip, own: true });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        eprintln!("process kubelet: no free loopback address for a pod after 10 min");
        None
    }
}

impl Drop for Address {
    fn drop(&mut self) {
        if self.own {
            self.kubelet.release_ip(self.ip);
        }
    }
}

struct PodRun {
    kubelet: Arc<Kubelet>,
    pod: Pod,
    address: Address,
    dir: PathBuf,
    volumes: Volumes,
    volume_error: Option<String>,
    volumes_ready: bool,
    volumes_synced: Option<Instant>,
    init: Vec<ContainerRun>,
    containers: Vec<ContainerRun>,
    conditions: Conditions,
    start_time: Timestamp,
    /// The pod was already over when this kubelet met it: nothing runs again.
    frozen: bool,
    last_patch: Option<serde_json::Value>,
    /// When a status patch last failed (retried after [`PATCH_RETRY`]).
    failed_patch: Option<Instant>,
}

impl PodRun {
    fn new(kubelet: Arc<Kubelet>, pod: Pod, address: Address) -> Self {
        let meta = &pod.metadata;
        let dir = kubelet.root.join("pods").join(format!(
            "{}_{}_{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
            meta.uid.as_deref().unwrap_or_default()
        ));
        let spec = pod.spec.clone().unwrap_or_default();
        let init = spec.init_containers.unwrap_or_default().into_iter().map(|c| ContainerRun::new(c, &dir)).collect();
        let containers = spec.containers.into_iter().map(|c| ContainerRun::new(c, &dir)).collect();
        let frozen = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        Self {
            kubelet,
            pod,
            address,
            dir,
            volumes: Volumes::default(),
            volume_error: None,
            volumes_ready: false,
            volumes_synced: None,
            init,
            containers,
            conditions: Conditions::default(),
            start_time: Timestamp::now(),
            frozen,
            last_patch: None,
            failed_patch: None,
        }
    }

    async fn run(mut self, mut updates: watch::Receiver<Option<Pod>>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            eprintln!("process kubelet: cannot create {}: {e}", self.dir.display());
        }
        loop {
            tokio::select! {
                _ = async { drop(stop.wait_for(|stopping| *stopping).await) } => {
                    self.shutdown(STOP_GRACE).await;
                    return;
                }
                changed = updates.changed() => {
                    let latest = updates.borrow_and_update().clone();
                    match (changed, latest) {
                        (Ok(()), Some(pod)) => self.pod = pod,
                        // Gone from the API: nothing to report to.
                        _ => {
                            self.shutdown(Duration::ZERO).await;
                            return;
                        }
                    }
                }
                _ = tick.tick() => {}
            }
            if self.pod.metadata.deletion_timestamp.is_some() {
                self.shutdown(grace_period(&self.pod)).await;
                self.report().await;
                self.record().await;
                self.delete().await;
                return;
            }
            self.sync().await;
            self.report().await;
            self.record().await;
        }
    }

    /// Records the Events of the containers since the last time.
    async fn record(&mut self) {
        let notes: Vec<_> =
            self.init.iter_mut().chain(self.containers.iter_mut()).flat_map(ContainerRun::take_notes).collect();
        for note in notes {
            self.kubelet.events.record(&self.pod, note).await;
        }
    }

    fn restart_policy(&self) -> String {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into())
    }

    async fn sync(&mut self) {
        if self.frozen || matches!(self.phase(), "Succeeded" | "Failed") {
            return;
        }
        if self.volumes_synced.is_none_or(|at| at.elapsed() >= VOLUME_SYNC) {
            self.volumes_synced = Some(Instant::now());
            match self.volumes.sync(&self.kubelet, &self.pod, self.address.ip, &self.dir).await {
                Ok(()) => {
                    self.volumes_ready = true;
                    self.volume_error = None;
                }
                Err(message) => {
                    if self.volume_error.as_ref() != Some(&message) {
                        self.kubelet.events.record(&self.pod, Note::warning("FailedMount", message.clone())).await;
                    }
                    self.volume_error = Some(message);
                }
            }
        }
        if !self.volumes_ready {
            let message = self.volume_error.clone().unwrap_or_default();
            for c in self.init.iter_mut().chain(self.containers.iter_mut()) {
                c.wait_for("ContainerCreating", message.clone());
            }
            return;
        }
        let policy = self.restart_policy();
        let ctx = PodContext {
            kubelet: &self.kubelet,
            pod: &self.pod,
            ip: self.address.ip,
            dir: &self.dir,
            volumes: &self.volumes.dirs,
        };
        for c in &mut self.init {
            if !init_succeeded(c) {
                c.step(&ctx, &policy, true).await;
            }
            if !init_succeeded(c) {
                for c in &mut self.containers {
                    if !c.has_run() {
                        c.state = State::Waiting { reason: "PodInitializing".into(), message: None };
                    }
                }
                return;
            }
        }
        for c in &mut self.containers {
            c.step(&ctx, &policy, false).await;
        }
    }

    fn phase(&self) -> &'static str {
        if self.frozen {
            return match self.pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Succeeded") => "Succeeded",
                _ => "Failed",
            };
        }
        status::phase(&self.init, &self.containers, &self.restart_policy())
    }

    /// Patches the pod's status when it changed.
    async fn report(&mut self) {
        if self.frozen {
            return;
        }
        let phase = self.phase();
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let initialized = self.init.iter().all(init_succeeded);
        let ready = !terminal && self.containers.iter().all(ContainerRun::ready);
        let not_ready = if terminal { "PodCompleted" } else { "ContainersNotReady" };
        self.conditions.set("PodScheduled", true, None);
        self.conditions.set("Initialized", initialized, Some("ContainersNotInitialized"));
        self.conditions.set("ContainersReady", ready, Some(not_ready));
        self.conditions.set("Ready", ready, Some(not_ready));
        let image_id = |c: &ContainerRun| {
            let image = c.spec.image.as_deref().unwrap_or_default();
            self.kubelet.images.get(image).map(|i| format!("process://{}", i.binary.display())).unwrap_or_default()
        };
        let ip = self.address.ip.to_string();
        let status = PodStatus {
            phase: Some(phase.into()),
            conditions: Some(self.conditions.to_vec()),
            host_ip: Some("127.0.0.1".into()),
            host_ips: Some(vec![HostIP { ip: "127.0.0.1".into() }]),
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            start_time: Some(Time(self.start_time)),
            init_container_statuses: (!self.init.is_empty())
                .then(|| self.init.iter().map(|c| status::container_status(c, &image_id(c))).collect()),
            container_statuses: Some(
                self.containers.iter().map(|c| status::container_status(c, &image_id(c))).collect(),
            ),
            ..PodStatus::default()
        };
        let mut patch = serde_json::json!({ "status": status });
        // Replaced, not merged by IP: a pod another kubelet ran had another address.
        for list in ["podIPs", "hostIPs"] {
            if let Some(ips) = patch["status"][list].as_array_mut() {
                ips.push(serde_json::json!({ "$patch": "replace" }));
            }
        }
        if self.last_patch.as_ref() == Some(&patch) || self.failed_patch.is_some_and(|at| at.elapsed() < PATCH_RETRY) {
            return;
        }
        let api: Api<Pod> =
            Api::namespaced(self.kubelet.client.clone(), self.pod.metadata.namespace.as_deref().unwrap_or_default());
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        // Strategic merge, as the kubelet does: conditions other controllers add stay.
        match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => {
                self.last_patch = Some(patch);
                self.failed_patch = None;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                eprintln!("process kubelet: cannot patch the status of pod {name:?}: {e}");
                self.failed_patch = Some(Instant::now());
            }
        }
    }

    /// Stops every process (SIGTERM, SIGKILL after `grace`); nothing runs again.
    async fn shutdown(&mut self, grace: Duration) {
        let ctx = PodContext {
            kubelet: &self.kubelet,
            pod: &self.pod,
            ip: self.address.ip,
            dir: &self.dir,
            volumes: &self.volumes.dirs,
        };
        for c in self.init.iter_mut().chain(self.containers.iter_mut()) {
            c.terminate(grace);
        }
        for c in self.init.iter_mut().chain(self.containers.iter_mut()) {
            c.stop(&ctx, grace).await;
        }
    }

    /// Deletes the pod for good, as the kubelet does once its processes are gone.
    async fn delete(&self) {
        let api: Api<Pod> =
            Api::namespaced(self.kubelet.client.clone(), self.pod.metadata.namespace.as_deref().unwrap_or_default());
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: self.pod.metadata.uid.clone(), resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => eprintln!("process kubelet: cannot delete pod {name:?}: {e}"),
        }
    }
}

fn init_succeeded(c: &ContainerRun) -> bool {
    c.done && matches!(&c.state, State::Terminated(e) if e.exit_code == 0)
}
