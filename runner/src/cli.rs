//! The command line of the `entrepot` binary: `run`, `serve`, `test`,
//! `deadletters`, `reconcile`, `schema`, `preview`. In the library so the end-to-end tests can build the same program as
//! a binary of their own.

mod dead_letters;
mod mask;
mod preview;
mod reconcile;
mod schema;
mod test;

pub use dead_letters::{
    Command as DeadLetterCommand, Output as DeadLetterOutput, Remote, run_remote as dead_letters_remote,
};

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use crate::{
    manifest::Manifests,
    runtime::{AdminAuth, AdminServer, BatchEnd, KubeUsers, Runtime, admin_auth},
    secrets::{DEFAULT_SECRETS_DIR, Secrets},
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use entrepot_api::config::RunnerConfig;
use tokio::{net::TcpListener, sync::watch};
use tracing::{info, warn};

#[derive(Parser)]
#[command(name = "entrepot", version, about = "Entrepot runner: keeps retail systems in sync")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text", env = "ENTREPOT_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Local mode: load the manifests in DIR (Connectors, Mappings, SyncFlows, Secrets)
    /// and run every SyncFlow in this process.
    Run {
        /// Directory of manifests (searched recursively for *.yaml / *.yml).
        dir: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// In a pod: run the configuration the operator rendered.
    Serve {
        /// The rendered runner configuration (YAML).
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lint the manifests in DIR and run every Mapping's examples, offline. Exits
    /// non-zero when a manifest is invalid or an example fails.
    Test {
        /// Directory of manifests.
        dir: PathBuf,
    },
    /// List, show, replay (after a fix) or discard dead letters, from a data directory
    /// or through a running runner's admin API.
    #[command(name = "deadletters", alias = "dead-letters")]
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Run a ReconcileSchedule once: compare the flow's source and target over the
    /// window, report drift (and repair it with `--action repair`). Prints a JSON summary.
    Reconcile(reconcile::ReconcileArgs),
    /// Preview a Mapping change on recorded payloads: the old and the new version side
    /// by side, a per-field diff, the schema violations it introduces, a markdown summary
    /// for the pull request; exits 2 when it breaks records that passed.
    Preview(preview::PreviewArgs),
    /// Print the JSON Schema of a canonical entity (`entrepot schema SalesOrder`), list
    /// the entities, or write every schema to a directory (`--write DIR`).
    Schema(schema::SchemaArgs),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where the durable queue lives.
    #[arg(long, default_value = ".entrepot/data", env = "ENTREPOT_DATA_DIR")]
    data_dir: PathBuf,
    /// Address of the webhook server.
    #[arg(long, default_value = "127.0.0.1:8080", env = "ENTREPOT_LISTEN")]
    listen: SocketAddr,
    /// Address of the admin server (/metrics, /v1/status, /healthz, /readyz).
    #[arg(long, default_value = "127.0.0.1:9090", env = "ENTREPOT_ADMIN_LISTEN")]
    admin_listen: SocketAddr,
    /// Where mounted Secrets are read from, as `<dir>/<secret name>/<key>`: after the
    /// `ENTREPOT_SECRET_*` environment, before Secret manifests (local mode). Read at
    /// use time, so a rotated Secret needs no restart.
    #[arg(long, default_value = DEFAULT_SECRETS_DIR, env = "ENTREPOT_SECRETS_DIR")]
    secrets_dir: PathBuf,
    /// A file holding the admin token: the admin server's dead-letter and record routes
    /// then need `Authorization: Bearer <token>` (read per request, so a rotated file
    /// applies at once). Without it the admin server must listen on loopback.
    #[arg(long, env = "ENTREPOT_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Also let Kubernetes users through the admin routes, by their own bearer token
    /// (header `x-entrepot-kube-token`) and RBAC on `syncflows/deadletters`,
    /// `syncflows/records` and `syncflows/audit`, asked of the API server with that token;
    /// the audit trail then records the person. FILE is the API server's CA bundle (in a
    /// pod, the `kube-root-ca.crt` ConfigMap the operator mounts).
    #[arg(long, env = "ENTREPOT_KUBE_USERS_CA", value_name = "FILE", requires = "kube_users_namespace")]
    kube_users_ca: Option<PathBuf>,
    /// The SyncFlow's namespace, where RBAC is asked (with --kube-users-ca).
    #[arg(long, env = "ENTREPOT_KUBE_USERS_NAMESPACE", value_name = "NAMESPACE")]
    kube_users_namespace: Option<String>,
    /// The API server that authenticates users (with --kube-users-ca); in a pod, by
    /// default, `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`.
    #[arg(long, env = "ENTREPOT_KUBE_API", value_name = "URL")]
    kube_api: Option<String>,
    /// A batch run (`mode: batch`): each poll or file source takes one pass, what it
    /// queued is delivered (or dead-lettered), a JSON summary is printed, and the runner
    /// exits: 0 when the queue is empty, 3 when stopped first (the records stay queued
    /// for the next run). No webhook server is started.
    #[arg(long)]
    once: bool,
}

/// Exit code of a batch run stopped with records still queued.
pub const EXIT_STOPPED_WITH_BACKLOG: u8 = 3;

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let traces = init_logging(cli.log_format);
    let outcome = match cli.command {
        Command::Test { dir } => test::run(&dir),
        Command::Run { dir, server } => runtime().and_then(|rt| rt.block_on(run_local(dir, server))),
        Command::Serve { config, server } => runtime().and_then(|rt| rt.block_on(serve(config, server))),
        Command::DeadLetters(args) => runtime().and_then(|rt| rt.block_on(dead_letters::run(args))),
        Command::Reconcile(args) => runtime().and_then(|rt| rt.block_on(reconcile::run(args))),
        Command::Schema(args) => schema::run(args),
        Command::Preview(args) => preview::run(args),
    };
    // The runtime is gone: what the spans' exporter still holds is sent now.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// The log on stderr, filtered by `ENTREPOT_LOG`, and the spans exported over OTLP when
/// an endpoint is configured (`telemetry`): the exporter to flush at exit, if any.
fn init_logging(format: LogFormat) -> Option<crate::telemetry::Traces> {
    use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENTREPOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = match format {
        LogFormat::Text => log.with_filter(filter).boxed(),
        LogFormat::Json => log.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let (spans, traces) = crate::telemetry::layer().unzip();
    tracing_subscriber::registry().with(log).with(spans).init();
    traces
}

async fn run_local(dir: PathBuf, server: ServerArgs) -> Result<ExitCode> {
    let manifests = Manifests::load_dir(&dir)?;
    let config = resolve(&manifests)?;
    if config.flows.is_empty() {
        bail!("no SyncFlow in {}", dir.display());
    }
    let secrets = Secrets::with_manifests(manifests.secrets.clone()).with_dir(&server.secrets_dir);
    run_config(config, &secrets, server).await
}

async fn serve(path: PathBuf, server: ServerArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let config: RunnerConfig =
        serde_saphyr::from_str(&text).with_context(|| format!("{} is not a runner configuration", path.display()))?;
    let secrets = Secrets::from_env().with_dir(&server.secrets_dir);
    run_config(config, &secrets, server).await
}

/// Every SyncFlow of `manifests`, resolved, or all the reasons they cannot be at once.
pub fn resolve(manifests: &Manifests) -> Result<RunnerConfig> {
    manifests
        .runner_config()
        .map_err(|errors| anyhow::anyhow!(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))
}

/// How the admin API is guarded: the token file if one is given (it must hold a token
/// now), else open, but only on a loopback address.
fn admin_auth(server: &ServerArgs) -> Result<AdminAuth> {
    match &server.admin_token_file {
        Some(file) => {
            admin_auth::read_token(file)?;
            Ok(AdminAuth::TokenFile(file.clone()))
        }
        None if server.admin_listen.ip().is_loopback() => Ok(AdminAuth::Open),
        None => bail!(
            "the admin server would listen on {} without a token, and it can read payloads and inject records: \
             give --admin-token-file FILE (ENTREPOT_ADMIN_TOKEN_FILE), or listen on a loopback address",
            server.admin_listen
        ),
    }
}

/// How Kubernetes users are authenticated, when `--kube-users-ca` asks for it: RBAC is
/// asked about the runner's flow by name when it serves one (a pod does).
fn kube_users(server: &ServerArgs, config: &RunnerConfig) -> Option<KubeUsers> {
    let (Some(ca), Some(namespace)) = (&server.kube_users_ca, &server.kube_users_namespace) else {
        return None;
    };
    let flow = match config.flows.as_slice() {
        [one] => Some(one.name.clone()),
        _ => None,
    };
    let users = KubeUsers::new(server.kube_api.clone(), ca, namespace.clone(), flow);
    if let Err(e) = users.check() {
        // Not fatal: the admin token still works; a user's request is refused saying this.
        warn!(error = %e, "Kubernetes users cannot be authenticated on the admin API yet");
    }
    Some(users)
}

async fn run_config(config: RunnerConfig, secrets: &Secrets, server: ServerArgs) -> Result<ExitCode> {
    let auth = admin_auth(&server)?;
    let users = kube_users(&server, &config);
    let guarded = |rt: std::sync::Arc<Runtime>| -> Result<std::sync::Arc<Runtime>> {
        rt.set_admin_auth(auth).map_err(|_| anyhow::anyhow!("the admin API's guard was already set"))?;
        if let Some(users) = users {
            rt.set_kube_users(users).map_err(|_| anyhow::anyhow!("the admin API's user check was already set"))?;
        }
        Ok(rt)
    };
    if server.once {
        let rt = guarded(Runtime::new(config, secrets, &server.data_dir)?)?;
        return run_once(rt, server).await;
    }
    // Bound before the queue opens, which can take long (a repair): the probes get an
    // answer ("opening the queue") rather than a refused connection.
    let admin = TcpListener::bind(server.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", server.admin_listen))?;
    let admin_addr = admin.local_addr()?;
    let admin = AdminServer::start(admin);
    let rt = guarded(tokio::task::block_in_place(|| Runtime::new(config, secrets, &server.data_dir))?)?;
    let webhooks =
        TcpListener::bind(server.listen).await.with_context(|| format!("cannot listen on {}", server.listen))?;
    info!(webhooks = %webhooks.local_addr()?, admin = %admin_addr, data_dir = %server.data_dir.display(), "runner started");
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = stop.send(true);
    });
    crate::runtime::serve_with_admin(rt, webhooks, admin, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `--once`: one batch run, then a summary on stdout.
async fn run_once(rt: std::sync::Arc<Runtime>, server: ServerArgs) -> Result<ExitCode> {
    if let Some(flow) = rt.webhook_flows().next() {
        bail!("SyncFlow {flow} has a webhook source, which cannot run --once (it must stay up to answer its sender)");
    }
    let admin = TcpListener::bind(server.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", server.admin_listen))?;
    info!(admin = %admin.local_addr()?, data_dir = %server.data_dir.display(), "batch run started");
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("stopping the batch run");
        let _ = stop.send(true);
    });
    let end = crate::runtime::serve_once(rt.clone(), admin, shutdown).await?;
    let status = rt.status().await?;
    let flows: Vec<serde_json::Value> = status
        .flows
        .iter()
        .map(|f| {
            serde_json::json!({
                "flow": f.name, "received": f.received, "deduplicated": f.deduplicated, "delivered": f.delivered,
                "stale": f.stale, "deadLettered": f.dead_lettered_total, "pending": f.pending,
            })
        })
        .collect();
    let (result, code) = match end {
        BatchEnd::Drained => ("drained", ExitCode::SUCCESS),
        BatchEnd::Stopped { .. } => ("stopped", ExitCode::from(EXIT_STOPPED_WITH_BACKLOG)),
    };
    println!("{}", serde_json::json!({"result": result, "flows": flows}));
    Ok(code)
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
