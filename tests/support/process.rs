//! The runner as a child process, for tests that kill it.

use std::{
    net::TcpListener as StdListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

/// Path of the `entrepot` program: this crate's `entrepot-under-test` binary.
pub fn runner_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| test_binary("entrepot-under-test")).clone()
}

/// Path of one of this crate's binaries (`entrepot-under-test`,
/// `entrepot-operator-under-test`), which cargo builds next to the test executables'
/// `deps/` folder before running them.
pub fn test_binary(name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(format!("NEXTEST_BIN_EXE_{name}")) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().and_then(Path::parent).expect("tests run from <target>/<profile>/deps");
    let bin = dir.join(name);
    assert!(bin.exists(), "{} is missing: run the tests through cargo (nextest or test)", bin.display());
    bin
}

/// What one run of a command (`entrepot`, kubectl, helm) did.
#[derive(Debug)]
pub struct CliRun {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit status (`None` when a signal ended it).
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl CliRun {
    /// Panics with both streams unless it succeeded; returns stdout.
    pub fn expect_ok(self, what: &str) -> String {
        assert!(self.success, "{what} failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self.stdout
    }
}

/// Runs `entrepot ARGS` to completion without blocking the async runtime (an
/// in-process runner it talks to keeps answering).
pub async fn run_cli(args: &[&str]) -> CliRun {
    run_cli_with(args, &[]).await
}

/// As [`run_cli`], with `env` added to the command's environment.
pub async fn run_cli_with(args: &[&str], env: &[(&str, &str)]) -> CliRun {
    let out = tokio::process::Command::new(runner_binary())
        .args(args)
        .env("ENTREPOT_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("the entrepot binary runs");
    CliRun {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Copies the quickstart manifests into `dir` with the ERP endpoint at `erp_url`.
pub fn write_quickstart(dir: &Path, erp_url: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(super::repo_root().join("examples/quickstart")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap().replace("http://127.0.0.1:8081", erp_url);
            std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
        }
    }
}

/// Copies the manifests of `examples/orders-reconciliation` into `dir`, with the
/// storefront at `shop_url`, the ERP at `erp_url`, and pages of two records so that
/// every listing follows its pagination.
pub fn write_reconciliation_example(dir: &Path, shop_url: &str, erp_url: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(super::repo_root().join("examples/orders-reconciliation")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("https://entrepot-demo.myshopify.com", shop_url)
            .replace("http://127.0.0.1:8081", erp_url)
            .replace("limit: \"250\"", "limit: \"2\"")
            .replace("pageSize: 1000", "pageSize: 2");
        std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
    }
}

/// `entrepot run` in a child process.
pub struct RunnerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` of the webhook server.
    pub webhook_url: String,
    /// `http://127.0.0.1:PORT` of the admin server.
    pub admin_url: String,
}

impl RunnerProcess {
    /// Starts `entrepot run manifests --data-dir data` and waits until it is ready.
    pub async fn start(manifests: &Path, data: &Path) -> Self {
        let args = vec!["run".into(), manifests.display().to_string(), "--data-dir".into(), data.display().to_string()];
        Self::spawn(args, Vec::new()).await
    }

    /// Starts the runner with `args` (without listen addresses: loopback ports are
    /// added) and environment `env`, and waits until it is ready.
    pub async fn spawn(args: Vec<String>, env: Vec<(String, String)>) -> Self {
        Self::launch(args, env, Stdio::inherit(), None).await
    }

    /// As [`spawn`](Self::spawn), with the runner's log (stderr) appended to `log` (a runner
    /// started again under the same log adds to what its predecessor said). Set
    /// `ENTREPOT_LOG` in `env` for more than warnings.
    pub async fn spawn_logged(args: Vec<String>, env: Vec<(String, String)>, log: &Path) -> Self {
        let file = std::fs::File::options().create(true).append(true).open(log).expect("the log file can be opened");
        Self::launch(args, env, Stdio::from(file), Some(log)).await
    }

    async fn launch(args: Vec<String>, env: Vec<(String, String)>, stderr: Stdio, log: Option<&Path>) -> Self {
        let (web, admin) = (free_port(), free_port());
        let child = Command::new(runner_binary())
            .args(&args)
            .args(["--listen", &format!("127.0.0.1:{web}"), "--admin-listen", &format!("127.0.0.1:{admin}")])
            .env("ENTREPOT_LOG", "warn")
            .envs(env)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the runner starts");
        let mut me = Self {
            child,
            webhook_url: format!("http://127.0.0.1:{web}"),
            admin_url: format!("http://127.0.0.1:{admin}"),
        };
        let ready = format!("{}/readyz", me.admin_url);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exit) = me.child.try_wait().expect("the runner can be waited on") {
                let said = log.and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
                panic!("the runner exited before it was ready: {exit}\n{said}");
            }
            if reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) {
                return me;
            }
            assert!(std::time::Instant::now() < deadline, "the runner is not ready after 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The URL of a flow's webhook.
    pub fn webhook(&self, flow: &str) -> String {
        format!("{}/webhooks/{flow}", self.webhook_url)
    }

    /// SIGTERM, then waits (at most 30 s) for the runner to shut down cleanly.
    pub async fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success(), "SIGTERM sent to the runner");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("the runner can be waited on").is_none() {
            assert!(std::time::Instant::now() < deadline, "the runner did not stop within 30 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
