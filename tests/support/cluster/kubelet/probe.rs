//! Readiness and liveness probes: httpGet and tcpSocket against the pod's address, with
//! the probe's delays, periods, timeouts and thresholds. exec and grpc probes cannot run
//! here: they always fail, with a log line saying so.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::{ContainerPort, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::task::JoinHandle;

/// One probe of one container instance.
pub struct Prober {
    spec: Option<Probe>,
    what: &'static str,
    container: String,
    /// The probe's current verdict.
    pub healthy: bool,
    ever_succeeded: bool,
    next: Option<Instant>,
    successes: i32,
    failures: i32,
    inflight: Option<JoinHandle<Result<(), String>>>,
    /// Built on first use, in the runtime that uses it (a client's pool is tied to one).
    client: Option<reqwest::Client>,
}

impl Prober {
    /// A readiness probe (starts unready) or a liveness probe (starts healthy).
    pub fn new(spec: Option<Probe>, readiness: bool, container: &str) -> Self {
        let healthy = spec.is_none() || !readiness;
        let what = if readiness { "readiness" } else { "liveness" };
        Self {
            spec,
            what,
            container: container.into(),
            healthy,
            ever_succeeded: false,
            next: None,
            successes: 0,
            failures: 0,
            inflight: None,
            client: None,
        }
    }

    /// Starts over for a container instance that started at `started`.
    pub fn restart(&mut self, started: Instant) {
        let delay = self.spec.as_ref().and_then(|p| p.initial_delay_seconds).unwrap_or(0).max(0);
        *self = Self::new(self.spec.take(), self.what == "readiness", &self.container);
        self.next = Some(started + Duration::from_secs(delay as u64));
    }

    /// Stops probing (the container is not running).
    pub fn pause(&mut self) {
        if let Some(task) = self.inflight.take() {
            task.abort();
        }
        self.next = None;
    }

    /// Collects a finished probe and starts a due one; the failure, as an Event says it,
    /// when the finished one failed.
    pub fn poll(&mut self, ip: Ipv4Addr, ports: &[ContainerPort]) -> Option<String> {
        let spec = self.spec.clone()?;
        let mut failure = None;
        if self.inflight.as_ref().is_some_and(JoinHandle::is_finished) {
            let task = self.inflight.take().expect("checked above");
            let result = futures::FutureExt::now_or_never(task)
                .and_then(Result::ok)
                .unwrap_or(Err("the probe task died".into()));
            match result {
                Ok(()) => {
                    self.failures = 0;
                    self.successes += 1;
                    self.ever_succeeded = true;
                    if self.successes >= spec.success_threshold.unwrap_or(1).max(1) {
                        self.healthy = true;
                    }
                }
                Err(why) => {
                    self.successes = 0;
                    self.failures += 1;
                    eprintln!("process kubelet: {} probe of container {:?} failed: {why}", self.what, self.container);
                    let what = if self.what == "readiness" { "Readiness" } else { "Liveness" };
                    failure = Some(format!("{what} probe failed: {why}"));
                    if self.failures >= spec.failure_threshold.unwrap_or(3).max(1) {
                        self.healthy = false;
                    }
                }
            }
        }
        let now = Instant::now();
        if self.inflight.is_none() && self.next.is_some_and(|next| now >= next) {
            let period = Duration::from_secs(spec.period_seconds.unwrap_or(10).max(1) as u64);
            // Until the first success a readiness probe runs at least every second, so
            // a pod is Ready soon after its server listens (the kubelet waits a whole
            // period; only the time to Ready differs).
            let period = if self.what == "readiness" && !self.ever_succeeded {
                period.min(Duration::from_secs(1))
            } else {
                period
            };
            self.next = Some(now + period);
            let timeout = Duration::from_secs(spec.timeout_seconds.unwrap_or(1).max(1) as u64);
            let ports = ports.to_vec();
            let client = self.client.get_or_insert_with(client).clone();
            self.inflight = Some(tokio::spawn(async move {
                match tokio::time::timeout(timeout, probe_once(&client, &spec, ip, &ports)).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("timed out after {timeout:?}")),
                }
            }));
        }
        failure
    }

    /// Whether liveness failed past its threshold.
    pub fn failed(&self) -> bool {
        !self.healthy
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.pause();
    }
}

async fn probe_once(
    client: &reqwest::Client,
    spec: &Probe,
    ip: Ipv4Addr,
    ports: &[ContainerPort],
) -> Result<(), String> {
    if let Some(http) = &spec.http_get {
        let port = port(&http.port, ports)?;
        let host = http.host.clone().unwrap_or_else(|| ip.to_string());
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let path = if path.starts_with('/') { path } else { format!("/{path}") };
        let url = format!("{scheme}://{host}:{port}{path}");
        let mut request = client.get(&url);
        for header in http.http_headers.iter().flatten() {
            request = request.header(&header.name, &header.value);
        }
        let response = request.send().await.map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        return if (200..400).contains(&status) { Ok(()) } else { Err(format!("GET {url}: HTTP status {status}")) };
    }
    if let Some(tcp) = &spec.tcp_socket {
        let port = port(&tcp.port, ports)?;
        let host = tcp.host.clone().unwrap_or_else(|| ip.to_string());
        return tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map(drop)
            .map_err(|e| format!("connect {host}:{port}: {e}"));
    }
    if spec.exec.is_some() {
        return Err("exec probes are not supported by the process kubelet (use httpGet or tcpSocket)".into());
    }
    Err("only httpGet and tcpSocket probes are supported by the process kubelet".into())
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} is out of range")),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(n) => Ok(n),
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("the container has no port named {name:?}")),
        },
    }
}

/// The kubelet neither follows redirects elsewhere nor checks certificates.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(true)
        .build()
        .expect("the probe client builds")
}
