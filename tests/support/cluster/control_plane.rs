//! A real Kubernetes control plane for the cluster tests: upstream etcd, kube-apiserver
//! and kube-controller-manager (built from the Go modules pinned in `tests/cluster/` by
//! `scripts/build-control-plane.sh` into `.tools/bin`), started in a temporary folder on
//! free loopback ports, with a CA, service-account signing keys and an admin kubeconfig
//! of their own. What envtest gives Go operators, plus the controller manager, so that
//! Deployments, StatefulSets, Jobs, CronJobs and garbage collection are the real ones.
//!
//! There is no scheduler and no kubelet: [`super::kubelet::ProcessKubelet`] binds pods
//! and runs them as local processes.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::{
    Api, Client,
    api::PostParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use tempfile::TempDir;

use crate::{
    CliRun, free_port,
    pki::{self, Ca, Usage},
};

/// The Kubernetes version `tests/cluster/go.mod` pins (checked against the API server's
/// `/version` at start).
pub const KUBERNETES_VERSION: &str = "v1.37.2";
/// The Service network (the `kubernetes` Service takes its first address).
const SERVICE_CIDR: &str = "10.0.0.0/24";
/// The service-account token issuer.
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The folder of the control-plane binaries and kubectl: `ENTREPOT_TOOLS_BIN`, else the
/// repository's `.tools/bin`.
pub fn tools_bin() -> PathBuf {
    std::env::var_os("ENTREPOT_TOOLS_BIN").map(PathBuf::from).unwrap_or_else(|| crate::repo_root().join(".tools/bin"))
}

/// The path of one control-plane tool, or an error that says how to get it.
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let path = tools_bin().join(name);
    if !path.is_file() {
        bail!("{} is missing: run `bash scripts/build-control-plane.sh` (scripts/test.sh does)", path.display());
    }
    Ok(path)
}

/// A running control plane. Dropping it stops every process and removes the folder.
pub struct ControlPlane {
    processes: Vec<(&'static str, Child)>,
    server_url: String,
    ca_pem: String,
    kubeconfig: PathBuf,
    client: Client,
    // Last: dropped after the processes are gone.
    dir: TempDir,
}

/// Starts `program args`, its output into `<dir>/<name>.log`.
fn spawn(dir: &Path, name: &'static str, program: &Path, args: &[String]) -> anyhow::Result<(&'static str, Child)> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok((name, child))
}

/// A process's errors (klog `E` lines, etcd's error level) and last lines, for an
/// error message.
fn log_tail(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let errors: Vec<&str> =
        lines.iter().copied().filter(|l| l.starts_with('E') || l.contains("\"level\":\"error\"")).take(10).collect();
    format!("{}\n...\n{}", errors.join("\n"), lines[lines.len().saturating_sub(15)..].join("\n"))
}

/// A kubeconfig for `server` trusting `ca_pem`, whose user is `user`, in `namespace` by
/// default when given (JSON, which kubeconfig readers take as YAML).
pub fn kubeconfig_text(server: &str, ca_pem: &str, user: &KubeUser, namespace: Option<&str>) -> String {
    use base64::Engine as _;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let user = match user {
        KubeUser::Certificate(issued) => serde_json::json!({
            "client-certificate-data": b64(&std::fs::read(&issued.cert).unwrap()),
            "client-key-data": b64(&std::fs::read(&issued.key).unwrap()),
        }),
        KubeUser::TokenFile(path) => serde_json::json!({"tokenFile": path.display().to_string()}),
        // The plugin prints an ExecCredential with the file's token, as cloud plugins do.
        KubeUser::Exec(path) => serde_json::json!({"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "sh",
            "args": ["-c", "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%s\"}}' \"$(cat \"$TOKEN_FILE\")\""],
            "env": [{"name": "TOKEN_FILE", "value": path.display().to_string()}],
            "interactiveMode": "Never",
        }}),
    };
    let mut context = serde_json::json!({"cluster": "cluster", "user": "user"});
    if let Some(namespace) = namespace {
        context["namespace"] = namespace.into();
    }
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem.as_bytes())}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "context", "context": context}],
        "current-context": "context",
    });
    serde_json::to_string_pretty(&config).expect("a kubeconfig serializes")
}

/// Who a kubeconfig authenticates as.
pub enum KubeUser {
    /// A client certificate.
    Certificate(pki::Issued),
    /// A file holding a bearer token, read at each use (a service-account token the
    /// TokenRequest API issued).
    TokenFile(PathBuf),
    /// An exec credential plugin (as managed clusters use) that issues the token in this
    /// file.
    Exec(PathBuf),
}

/// A kube client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> anyhow::Result<Client> {
    // kube links both ring and aws-lc-rs; rustls will not choose between them.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config =
        kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(kubeconfig)?, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until the API
    /// server is ready and the controller manager has made the `default` namespace's
    /// service account.
    pub async fn start() -> anyhow::Result<Self> {
        let started = Instant::now();
        let (etcd, apiserver, kcm) = (tool("etcd")?, tool("kube-apiserver")?, tool("kube-controller-manager")?);
        let dir = tempfile::Builder::new().prefix("entrepot-cluster-").tempdir()?;
        let root = dir.path().to_path_buf();
        let pki_dir = root.join("pki");
        let ca = Ca::new(&pki_dir, "entrepot test cluster CA");
        let serving = ca.issue(
            "apiserver",
            Usage::Server,
            "kube-apiserver",
            &[],
            &[
                "127.0.0.1",
                "localhost",
                "10.0.0.1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        );
        let admin = ca.issue("admin", Usage::Client, "entrepot-test-admin", &["system:masters"], &[]);
        let kcm_user = ca.issue("controller-manager", Usage::Client, "system:kube-controller-manager", &[], &[]);
        let sa = pki::signing_key(&pki_dir, "service-accounts");
        let ca_pem = ca.pem();
        let path = |p: &Path| p.display().to_string();

        let mut processes = Vec::new();
        let (etcd_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        processes.push(spawn(
            &root,
            "etcd",
            &etcd,
            &[
                "--name=test".into(),
                format!("--data-dir={}", path(&root.join("etcd"))),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=test={peer_url}"),
                // A test cluster's data is thrown away; fsync only costs time here.
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
        )?);

        let port = free_port();
        let server_url = format!("https://127.0.0.1:{port}");
        processes.push(spawn(
            &root,
            "kube-apiserver",
            &apiserver,
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                // The `kubernetes` Service's endpoints may not be a loopback address; our pods
                // reach the API server through their kubeconfig, not through that Service.
                "--endpoint-reconciler-type=none".into(),
                // The process kubelet's Node is reached at its InternalIP (127.0.0.1) for
                // `kubectl logs`; its Hostname is not in any DNS.
                "--kubelet-preferred-address-types=InternalIP".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", path(&root.join("apiserver"))),
                format!("--tls-cert-file={}", path(&serving.cert)),
                format!("--tls-private-key-file={}", path(&serving.key)),
                format!("--client-ca-file={}", path(&ca.cert())),
                format!("--service-account-issuer={ISSUER}"),
                format!("--service-account-key-file={}", path(&sa.cert)),
                format!("--service-account-signing-key-file={}", path(&sa.key)),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--authorization-mode=RBAC".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
                // One tenant: fairness queues only cost CPU on two cores.
                "--enable-priority-and-fairness=false".into(),
            ],
        )?);

        let kubeconfig = root.join("admin.kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&server_url, &ca_pem, &KubeUser::Certificate(admin), None))?;
        let kcm_kubeconfig = root.join("controller-manager.kubeconfig");
        std::fs::write(&kcm_kubeconfig, kubeconfig_text(&server_url, &ca_pem, &KubeUser::Certificate(kcm_user), None))?;
        let client = client_from(&kubeconfig).await?;
        let mut me = Self { processes, server_url, ca_pem, kubeconfig, client, dir };
        me.wait_ready().await?;
        let api_ready = started.elapsed();

        let kcm_port = free_port();
        me.processes.push(spawn(
            me.dir.path(),
            "kube-controller-manager",
            &kcm,
            &[
                format!("--kubeconfig={}", path(&kcm_kubeconfig)),
                format!("--authentication-kubeconfig={}", path(&kcm_kubeconfig)),
                format!("--authorization-kubeconfig={}", path(&kcm_kubeconfig)),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={kcm_port}"),
                format!("--cert-dir={}", path(&root.join("controller-manager"))),
                "--leader-elect=false".into(),
                // Each controller acts as its own service account with its own bootstrap role,
                // as kubeadm sets it up (the controller manager's user alone may do little).
                "--use-service-account-credentials=true".into(),
                format!("--service-account-private-key-file={}", path(&sa.key)),
                // Published into every namespace as ConfigMap kube-root-ca.crt.
                format!("--root-ca-file={}", path(&ca.cert())),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--profiling=false".into(),
                // Quick to notice finished Jobs' pods and to resync in a test.
                "--concurrent-gc-syncs=5".into(),
            ],
        )?);
        me.service_account("default", "default").await?;
        // Measured figures for docs/testing.md (shown with --nocapture or on failure).
        eprintln!(
            "control plane up: API server ready after {:.1} s, controller manager working after {:.1} s ({})",
            api_ready.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            me.dir().display()
        );
        Ok(me)
    }

    /// Waits for `/readyz`, checking that no process has died, then checks `/version`.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            self.check_alive()?;
            let request = http::Request::get("/readyz").body(Vec::new())?;
            if self.client.request_text(request).await.is_ok_and(|body| body.trim() == "ok") {
                break;
            }
            if Instant::now() > deadline {
                bail!("kube-apiserver is not ready after 90 s:\n{}", log_tail(self.dir.path(), "kube-apiserver"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let version = self.client.apiserver_version().await?;
        if version.git_version != KUBERNETES_VERSION {
            bail!("the API server reports {}, expected {KUBERNETES_VERSION}", version.git_version);
        }
        Ok(())
    }

    /// An error naming the first process that has exited, with its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.processes {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited ({status}):\n{}", log_tail(self.dir.path(), name));
            }
        }
        Ok(())
    }

    /// An admin client (group system:masters).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        self.server_url.clone()
    }

    /// The cluster CA (PEM).
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    /// The temporary folder: logs (`<process>.log`), PKI, etcd's data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `kubectl ARGS` as the admin (`--kubeconfig` is added).
    pub async fn kubectl(&self, args: &[&str]) -> CliRun {
        self.kubectl_as(&self.kubeconfig, args, None).await
    }

    /// Runs `kubectl ARGS` with `kubeconfig`, `stdin` piped in when given.
    pub async fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> CliRun {
        run_tool(&tool("kubectl").unwrap(), kubeconfig, args, stdin).await
    }

    /// Creates namespace `name` and waits until its `default` service account and the
    /// `kube-root-ca.crt` ConfigMap exist (pods can be created then).
    pub async fn namespace(&self, name: &str) -> anyhow::Result<()> {
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("namespace {name}"))?;
        self.service_account(name, "default").await?;
        let config_maps = Api::<ConfigMap>::namespaced(self.client(), name);
        poll(Duration::from_secs(60), &format!("ConfigMap {name}/kube-root-ca.crt"), || async {
            Ok(config_maps.get_opt("kube-root-ca.crt").await?.is_some())
        })
        .await
    }

    /// Waits until service account `namespace/name` exists.
    pub async fn service_account(&self, namespace: &str, name: &str) -> anyhow::Result<()> {
        let api = Api::<ServiceAccount>::namespaced(self.client(), namespace);
        poll(Duration::from_secs(60), &format!("ServiceAccount {namespace}/{name}"), || async {
            Ok(api.get_opt(name).await?.is_some())
        })
        .await
    }
}

/// Runs a Kubernetes command line tool (kubectl, helm) with `KUBECONFIG` set.
pub async fn run_tool(program: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> CliRun {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        // helm keeps its caches and repositories under HOME; keep them out of the user's.
        .env("HELM_CACHE_HOME", kubeconfig.with_extension("helm-cache"))
        .env("HELM_CONFIG_HOME", kubeconfig.with_extension("helm-config"))
        .env("HELM_DATA_HOME", kubeconfig.with_extension("helm-data"))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = child.wait_with_output().await.unwrap();
    CliRun {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Calls `check` every 200 ms until it says true, or fails after `timeout` naming `what`.
pub async fn poll<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    wait_for(timeout, what, || {
        let done = check();
        async move { Ok(done.await?.then_some(())) }
    })
    .await
}

/// Calls `check` every 200 ms until it gives a value, or fails after `timeout` naming
/// `what` and the last error `check` returned.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            let why = last_error.map(|e| format!(" (last error: {e:#})")).unwrap_or_default();
            bail!("{what}: not there after {} s{why}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The controller manager first, etcd last.
        for (_, child) in self.processes.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failed test leaves its logs (and etcd's data) for a look.
        if std::thread::panicking() || std::env::var_os("ENTREPOT_KEEP_CLUSTER").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("a temporary folder")).keep();
            eprintln!("the control plane's folder (logs, PKI, etcd data) is kept: {}", kept.display());
        }
    }
}
