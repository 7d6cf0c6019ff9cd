//! One container of a pod as a local process: its argv from the image and spec, its
//! environment, its log and termination message, restarts with back-off, probes.

use std::{
    collections::BTreeMap,
    io::{Read, Seek, SeekFrom},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::process::Child;

use super::{
    Kubelet, env, events::Note, probe::Prober, rewrite::Rewrites, services, sources::Sources,
    volumes::SERVICE_ACCOUNT_PATH,
};
use crate::cluster::{KubeUser, kubeconfig_text};

/// The first wait before a restart, doubled up to [`MAX_BACKOFF`]. The real kubelet waits
/// 10 s doubling to 5 min; tests cannot wait that long.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A container that ran this long before exiting starts its back-off over.
const BACKOFF_RESET: Duration = Duration::from_secs(60);
/// A container that cannot start yet (missing ConfigMap, …) is tried again after this.
const RETRY: Duration = Duration::from_secs(1);
/// At most this much of the termination message file is read, as the kubelet does.
const MESSAGE_LIMIT: usize = 4096;

/// How one instance of a container ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub message: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub pid: u32,
}

/// What a container is doing, as its status reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Waiting { reason: String, message: Option<String> },
    Running { started_at: Timestamp },
    Terminated(Ended),
}

/// What a pod's sync needs to start a container.
pub struct PodContext<'a> {
    pub kubelet: &'a Kubelet,
    pub pod: &'a Pod,
    pub ip: Ipv4Addr,
    pub dir: &'a Path,
    /// Volume name → host folder.
    pub volumes: &'a BTreeMap<String, PathBuf>,
}

/// One container of a pod, across its restarts.
pub struct ContainerRun {
    pub spec: Container,
    pub state: State,
    pub last: Option<Ended>,
    pub restart_count: i32,
    /// Exited and will not run again.
    pub done: bool,
    pub pid: Option<u32>,
    child: Option<Child>,
    started: Option<(Instant, Timestamp)>,
    has_run: bool,
    backoff: Duration,
    not_before: Instant,
    kill_at: Option<Instant>,
    pub readiness: Prober,
    liveness: Prober,
    pub log: PathBuf,
    message_file: PathBuf,
    log_offset: u64,
    /// Events to record, taken by the pod.
    notes: Vec<Note>,
}

impl ContainerRun {
    /// A container not started yet; its log and message file go under `pod_dir`.
    pub fn new(spec: Container, pod_dir: &Path) -> Self {
        let readiness = Prober::new(spec.readiness_probe.clone(), true, &spec.name);
        let liveness = Prober::new(spec.liveness_probe.clone(), false, &spec.name);
        Self {
            log: pod_dir.join("logs").join(format!("{}.log", spec.name)),
            message_file: pod_dir.join("termination").join(&spec.name),
            spec,
            state: State::Waiting { reason: "ContainerCreating".into(), message: None },
            last: None,
            restart_count: 0,
            done: false,
            pid: None,
            child: None,
            started: None,
            has_run: false,
            backoff: FIRST_BACKOFF,
            not_before: Instant::now(),
            kill_at: None,
            readiness,
            liveness,
            log_offset: 0,
            notes: Vec::new(),
        }
    }

    /// Whether a process of it is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it is running and its readiness probe passes.
    pub fn ready(&self) -> bool {
        self.running() && self.readiness.healthy
    }

    /// Whether it has run, or runs (a pod whose containers all did is Running).
    pub fn has_run(&self) -> bool {
        self.has_run
    }

    /// The Events since the last call, about this container.
    pub fn take_notes(&mut self) -> Vec<Note> {
        let name = self.spec.name.clone();
        self.notes.drain(..).map(|n| Note { container: Some(name.clone()), ..n }).collect()
    }

    /// Reports a reason it cannot start (a pod-level problem, such as a volume).
    pub fn wait_for(&mut self, reason: &str, message: String) {
        if self.child.is_none() && !self.done {
            self.state = State::Waiting { reason: reason.into(), message: Some(message) };
        }
    }

    /// Notices an exit, restarts, probes and liveness kills. `restart_policy` is the
    /// pod's (an init container never restarts after success).
    pub async fn step(&mut self, ctx: &PodContext<'_>, restart_policy: &str, init: bool) {
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(Some(status)) => self.exited(ctx, status, restart_policy, init),
                Ok(None) => self.probe(ctx),
                Err(e) => eprintln!("process kubelet: cannot wait on container {:?}: {e}", self.spec.name),
            }
            return;
        }
        if self.done || Instant::now() < self.not_before {
            return;
        }
        if init && self.spec.restart_policy.as_deref() == Some("Always") {
            let message =
                "native sidecars (initContainers with restartPolicy Always) are not supported by the process kubelet";
            self.state = State::Waiting { reason: "CreateContainerConfigError".into(), message: Some(message.into()) };
            self.not_before = Instant::now() + RETRY;
            return;
        }
        match self.start(ctx).await {
            Ok(()) => {}
            Err((reason, message)) => {
                let state = State::Waiting { reason: reason.into(), message: Some(message.clone()) };
                if self.state != state {
                    self.notes.push(Note::warning("Failed", format!("Error: {reason}: {message}")));
                }
                self.state = state;
                self.not_before = Instant::now() + RETRY;
            }
        }
    }

    fn probe(&mut self, ctx: &PodContext<'_>) {
        let ports = self.spec.ports.clone().unwrap_or_default();
        let failures = [self.readiness.poll(ctx.ip, &ports), self.liveness.poll(ctx.ip, &ports)];
        self.notes.extend(failures.into_iter().flatten().map(|f| Note::warning("Unhealthy", f)));
        if self.liveness.failed() && self.kill_at.is_none() {
            let message = format!("Container {} failed liveness probe, will be restarted", self.spec.name);
            eprintln!("process kubelet: {message}");
            self.notes.push(Note::normal("Killing", message));
            self.terminate(grace_period(ctx.pod));
        }
        if self.kill_at.is_some_and(|at| Instant::now() >= at) {
            self.signal(libc::SIGKILL);
        }
    }

    /// SIGTERM now, SIGKILL once `grace` is over (checked by [`step`](Self::step) and
    /// [`stop`](Self::stop)).
    pub fn terminate(&mut self, grace: Duration) {
        if self.child.is_some() && self.kill_at.is_none() {
            self.signal(libc::SIGTERM);
            self.kill_at = Some(Instant::now() + grace);
        }
    }

    fn signal(&self, signal: i32) {
        kill_group(self.pid, signal);
    }

    /// Terminates the process, waits up to `grace`, kills it, and records how it ended.
    /// It will not run again.
    pub async fn stop(&mut self, ctx: &PodContext<'_>, grace: Duration) {
        self.done = true;
        if self.child.is_some() {
            self.notes.push(Note::normal("Killing", format!("Stopping container {}", self.spec.name)));
        }
        self.terminate(grace);
        while let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(Some(status)) => self.exited(ctx, status, "Never", false),
                Ok(None) if self.kill_at.is_some_and(|at| Instant::now() >= at) => {
                    kill_group(self.pid, libc::SIGKILL);
                    let status = child.wait().await;
                    match status {
                        Ok(status) => self.exited(ctx, status, "Never", false),
                        Err(_) => self.child = None,
                    }
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => self.child = None,
            }
        }
        // A container that never started stays waiting, as the kubelet reports it.
    }

    fn exited(&mut self, ctx: &PodContext<'_>, status: ExitStatus, restart_policy: &str, init: bool) {
        use std::os::unix::process::ExitStatusExt;
        let pid = self.pid.take().unwrap_or_default();
        self.child = None;
        self.kill_at = None;
        self.readiness.pause();
        self.liveness.pause();
        // Whatever it left behind in its group goes with it.
        kill_group(Some(pid), libc::SIGKILL);
        ctx.kubelet.exited(ctx.pod, &self.spec.name, pid);
        let (exit_code, signal) = match (status.code(), status.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            (None, None) => (255, None),
        };
        let (ran_for, started_at) = self.started.take().unwrap_or((Instant::now(), Timestamp::now()));
        let ended = Ended {
            exit_code,
            signal,
            message: self.termination_message(exit_code),
            started_at,
            finished_at: Timestamp::now(),
            pid,
        };
        let restart = match restart_policy {
            "Always" if !init => true,
            "Always" | "OnFailure" => exit_code != 0,
            _ => false,
        };
        if !restart {
            self.done = true;
            self.state = State::Terminated(ended);
            return;
        }
        // Counted when the restart is decided, so a container in CrashLoopBackOff shows it,
        // as `kubectl get pods` does.
        self.restart_count += 1;
        let pod = ctx.pod.metadata.name.as_deref().unwrap_or_default();
        self.notes.push(Note::warning(
            "BackOff",
            format!("Back-off restarting failed container {} in pod {pod}", self.spec.name),
        ));
        if ran_for.elapsed() >= BACKOFF_RESET {
            self.backoff = FIRST_BACKOFF;
        }
        self.state = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!(
                "back-off {}s restarting failed container={} pod={}",
                self.backoff.as_secs(),
                self.spec.name,
                ctx.pod.metadata.name.as_deref().unwrap_or_default()
            )),
        };
        self.last = Some(ended);
        self.not_before = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// The message file's content, or with `FallbackToLogsOnError` after an error the
    /// log's tail (80 lines, 2 KiB), as the kubelet reports them.
    fn termination_message(&self, exit_code: i32) -> Option<String> {
        let mut text = Vec::new();
        if let Ok(file) = std::fs::File::open(&self.message_file) {
            let _ = file.take(MESSAGE_LIMIT as u64).read_to_end(&mut text);
        }
        if text.is_empty()
            && exit_code != 0
            && self.spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
            && let Ok(mut log) = std::fs::File::open(&self.log)
        {
            let _ = log.seek(SeekFrom::Start(self.log_offset));
            let _ = log.read_to_end(&mut text);
            let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
            let lines = if lines.last().is_some_and(|l| l.is_empty()) { &lines[..lines.len() - 1] } else { &lines[..] };
            let mut tail = lines[lines.len().saturating_sub(80)..].join(&b'\n');
            if tail.len() > 2048 {
                tail.drain(..tail.len() - 2048);
            }
            text = tail;
        }
        (!text.is_empty()).then(|| String::from_utf8_lossy(&text).into_owned())
    }

    /// Starts a new instance; the error is a waiting reason and its message.
    async fn start(&mut self, ctx: &PodContext<'_>) -> Result<(), (&'static str, String)> {
        let argv = self.argv(ctx)?;
        let namespace = ctx.pod.metadata.namespace.clone().unwrap_or_default();
        let mut sources = Sources::new(&ctx.kubelet.client, &namespace);
        let vars = env::environment(ctx.pod, &self.spec, ctx.ip, &mut sources)
            .await
            .map_err(|m| ("CreateContainerConfigError", m))?;
        let rewrites = self.rewrites(ctx, &vars).await?;
        let args: Vec<String> = argv.1.iter().map(|a| rewrites.apply(&env::expand(a, &vars))).collect();
        let mut vars: BTreeMap<String, String> = vars.into_iter().map(|(k, v)| (k, rewrites.apply(&v))).collect();
        if !vars.contains_key("PATH") {
            vars.insert("PATH".into(), std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()));
        }
        vars.entry("HOSTNAME".into()).or_insert_with(|| ctx.pod.metadata.name.clone().unwrap_or_default());
        // As the kubelet does for every pod, service links or not: where the API server is.
        let port = ctx.kubelet.server_url.rsplit(':').next().unwrap_or("443").trim_end_matches('/').to_string();
        vars.insert("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into());
        vars.insert("KUBERNETES_SERVICE_PORT".into(), port.clone());
        vars.insert("KUBERNETES_SERVICE_PORT_HTTPS".into(), port);
        let mounts = self.spec.volume_mounts.iter().flatten();
        if let Some(mount) = mounts.into_iter().find(|m| m.mount_path.trim_end_matches('/') == SERVICE_ACCOUNT_PATH) {
            let token = ctx.volumes.get(&mount.name).map(|d| d.join("token")).unwrap_or_default();
            let kubeconfig = write_kubeconfig(ctx, &token).map_err(|e| ("CreateContainerError", e))?;
            vars.insert("KUBECONFIG".into(), kubeconfig.display().to_string());
        }

        let fail = |what: &str, e: std::io::Error| ("RunContainerError", format!("{what}: {e}"));
        for dir in [self.log.parent(), self.message_file.parent()].into_iter().flatten() {
            std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the pod folder", e))?;
        }
        std::fs::write(&self.message_file, b"").map_err(|e| fail("cannot create the termination message file", e))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| fail("cannot open the log", e))?;
        self.log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log.try_clone().map_err(|e| fail("cannot open the log", e))?;
        let child = tokio::process::Command::new(&argv.0)
            .args(&args)
            .env_clear()
            .envs(&vars)
            .current_dir(ctx.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(&format!("cannot run {}", argv.0.display()), e))?;
        let pid = child.id().unwrap_or_default();
        ctx.kubelet.started(ctx.pod, &self.spec.name, pid, &self.log);
        let image = self.spec.image.clone().unwrap_or_default();
        self.notes.push(Note::normal("Pulled", format!("Container image {image:?} already present on machine")));
        self.notes.push(Note::normal("Started", format!("Started container {} (pid {pid})", self.spec.name)));
        self.has_run = true;
        self.child = Some(child);
        self.pid = Some(pid);
        let now = (Instant::now(), Timestamp::now());
        self.started = Some(now);
        self.state = State::Running { started_at: now.1 };
        self.readiness.restart(now.0);
        self.liveness.restart(now.0);
        Ok(())
    }

    /// The host binary and the arguments before expansion.
    fn argv(&self, ctx: &PodContext<'_>) -> Result<(PathBuf, Vec<String>), (&'static str, String)> {
        let reference = self.spec.image.clone().unwrap_or_default();
        let Some(image) = ctx.kubelet.images.get(&reference) else {
            let known: Vec<&str> = ctx.kubelet.images.keys().map(String::as_str).collect();
            return Err((
                "ErrImagePull",
                format!(
                    "image {reference:?} cannot be pulled: this process kubelet runs only the known images {known:?}"
                ),
            ));
        };
        let mut rest: Vec<String> = match self.spec.command.as_deref() {
            Some([first, tail @ ..]) => {
                if image.entrypoint.first() != Some(first) {
                    return Err((
                        "CreateContainerError",
                        format!(
                            "command {first:?} is not in image {reference:?} (its entrypoint is {:?})",
                            image.entrypoint
                        ),
                    ));
                }
                tail.to_vec()
            }
            _ => image.entrypoint.iter().skip(1).cloned().collect(),
        };
        rest.extend(self.spec.args.iter().flatten().cloned());
        Ok((image.binary.clone(), rest))
    }

    /// The container's mounts, termination message file and the Services, as rewrites.
    async fn rewrites(
        &self,
        ctx: &PodContext<'_>,
        vars: &BTreeMap<String, String>,
    ) -> Result<Rewrites, (&'static str, String)> {
        let mut paths = Vec::new();
        for mount in self.spec.volume_mounts.iter().flatten() {
            let Some(dir) = ctx.volumes.get(&mount.name) else {
                return Err((
                    "CreateContainerConfigError",
                    format!("volume mount {:?} names no volume of the pod", mount.name),
                ));
            };
            let sub = match (&mount.sub_path, &mount.sub_path_expr) {
                (Some(p), _) if !p.is_empty() => p.clone(),
                (_, Some(e)) if !e.is_empty() => env::expand(e, vars),
                _ => String::new(),
            };
            if sub.split('/').any(|part| part == "..") || sub.starts_with('/') {
                return Err((
                    "CreateContainerConfigError",
                    format!("subPath {sub:?} must be relative and must not contain '..'"),
                ));
            }
            let host = if sub.is_empty() { dir.clone() } else { dir.join(&sub) };
            paths.push((mount.mount_path.clone(), host));
        }
        let message_path = self.spec.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
        paths.push((message_path, self.message_file.clone()));
        let namespace = ctx.pod.metadata.namespace.clone().unwrap_or_default();
        Ok(Rewrites::new(paths, ctx.ip, services::endpoints(&ctx.kubelet.client, &namespace).await))
    }
}

/// Sends `signal` to the process group `pid` leads.
fn kill_group(pid: Option<u32>, signal: i32) {
    if let Some(pid) = pid.filter(|p| *p > 1) {
        // SAFETY: killpg only sends a signal; the group is the one the process leads.
        unsafe { libc::killpg(pid as i32, signal) };
    }
}

/// How long a pod's processes get between SIGTERM and SIGKILL: its grace period, at
/// most 5 s (tests do not wait 30 s).
pub fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .clamp(0, 5);
    Duration::from_secs(seconds as u64)
}

/// A kubeconfig in the pod folder for the API server, with the service-account token.
fn write_kubeconfig(ctx: &PodContext<'_>, token: &Path) -> Result<PathBuf, String> {
    let namespace = ctx.pod.metadata.namespace.as_deref();
    let user = KubeUser::TokenFile(token.to_path_buf());
    let config = kubeconfig_text(&ctx.kubelet.server_url, &ctx.kubelet.ca_pem, &user, namespace);
    let path = ctx.dir.join("kubeconfig");
    std::fs::write(&path, config).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}
