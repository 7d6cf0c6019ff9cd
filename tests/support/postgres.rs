//! A private PostgreSQL for the tests: `initdb` into a temporary directory, `postgres`
//! on a free loopback port with password (SCRAM) logins, stopped and removed on drop.
//!
//! The binaries are the newest under `/usr/lib/postgresql/*/bin` (Debian's layout).
//! PostgreSQL refuses to run as root, so when the tests run as root the server runs as
//! the `postgres` user (`runuser`), which owns the data directory.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tokio_postgres::{Client, NoTls};

/// The login the tests use.
pub const PG_USER: &str = "entrepot";
/// Its password: the Secret value of examples/orders-to-postgres-warehouse.
pub const PG_PASSWORD: &str = "demo-warehouse-password";
/// The database the tests use.
pub const PG_DATABASE: &str = "warehouse";

/// A running PostgreSQL server of the tests' own.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    server: Option<Child>,
    /// With TLS: the PEM certificate of the CA that signed the server's certificate
    /// (issued for 127.0.0.1).
    pub ca_pem: Option<String>,
}

impl Postgres {
    /// Creates a cluster with the `warehouse` database and starts it.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// The same, taking TLS as well as plain connections, with a certificate for
    /// 127.0.0.1 from a CA of its own (`ca_pem`).
    pub async fn start_with_tls() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Self {
        let bin = binaries();
        let dir = tempfile::Builder::new().prefix("entrepot-pg-").tempdir().unwrap();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PG_PASSWORD).unwrap();
        let ca_pem = tls.then(|| issue_certificates(dir.path()));
        if is_root() {
            let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(chown.success(), "chown of the test database directory to postgres failed");
        }
        let data = dir.path().join("data");
        let initdb = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", PG_USER, "--auth=scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        let mut pg = Self { bin, dir, port: super::free_port(), server: None, ca_pem };
        pg.resume().await;
        pg.client("postgres").await.batch_execute(&format!("CREATE DATABASE {PG_DATABASE}")).await.unwrap();
        pg
    }

    /// `postgres://127.0.0.1:PORT/warehouse`: a Connector's endpoint (no credentials).
    pub fn endpoint(&self) -> String {
        format!("postgres://127.0.0.1:{}/{PG_DATABASE}", self.port)
    }

    /// A connection to `database` as the tests' user.
    pub async fn client(&self, database: &str) -> Client {
        let (client, connection) = self.config(database).connect(NoTls).await.expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(self.port).user(PG_USER).password(PG_PASSWORD).dbname(database);
        config
    }

    /// Stops the server (fast shutdown: sessions are cut, as in an outage).
    pub fn stop(&mut self) {
        let Some(mut server) = self.server.take() else { return };
        if let Some(pid) = self.postmaster_pid() {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
        let _ = server.wait();
    }

    /// Starts the server again on the same port and data, and waits until it takes
    /// connections.
    pub async fn resume(&mut self) {
        assert!(self.server.is_none(), "the server is running");
        let mut server = as_server_user(&self.bin.join("postgres"));
        server.arg("-D").arg(self.dir.path().join("data")).arg("-k").arg(self.dir.path()).args([
            "-p",
            &self.port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ]);
        if self.ca_pem.is_some() {
            let file = |name: &str| self.dir.path().join(name).display().to_string();
            server.args(["-c", "ssl=on", "-c", &format!("ssl_cert_file={}", file("server.crt"))]);
            server.args(["-c", &format!("ssl_key_file={}", file("server.key"))]);
        }
        let server = server.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("postgres starts");
        self.server = Some(server);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((client, connection)) = self.config("postgres").connect(NoTls).await {
                drop(client);
                drop(connection);
                return;
            }
            let exited = self.server.as_mut().and_then(|s| s.try_wait().ok().flatten());
            assert!(exited.is_none(), "postgres exited at start: {exited:?}");
            assert!(tokio::time::Instant::now() < deadline, "postgres did not accept connections within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn postmaster_pid(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok()?;
        text.lines().next().map(|l| l.trim().to_string())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it (`server.crt`, `server.key`),
/// in `dir`; the CA's PEM.
fn issue_certificates(dir: &Path) -> String {
    let ca = crate::pki::Ca::new(dir, "entrepot test CA");
    ca.issue("server", crate::pki::Usage::Server, "127.0.0.1", &[], &["127.0.0.1"]);
    ca.pem()
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and `postgres`.
fn binaries() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse::<f64>().ok()?, e.path().join("bin"))))
            .filter(|(_, bin)| bin.join("initdb").is_file() && bin.join("postgres").is_file())
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, bin)| bin)
    });
    newest.unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed: the postgres tests start a private server with initdb and postgres from \
             /usr/lib/postgresql/<version>/bin. Install the Debian package `postgresql` (apt-get install postgresql)."
        )
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program`, run as the `postgres` user when we are root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}
