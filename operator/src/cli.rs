//! The `entrepot-operator` command line: prints the CRDs, or runs the controllers.
//! `src/main.rs` calls [`main`]; so does the end-to-end tests' copy of the binary.

use std::{net::SocketAddr, path::PathBuf};

use crate::{
    controllers::Controllers,
    leader::Candidate,
    metrics::Metrics,
    nats_io::{self, Connections},
    resources::render_crds,
    server,
    sync_flow::{self, build::RunnerDefaults},
};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "entrepot-operator", version, about = "Entrepot's Kubernetes operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as multi-document YAML.
    Crd,
    /// Run the controllers against the cluster in the current kubeconfig or service account.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(long, env = "ENTREPOT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Runner image for flows that name none (overridden by `image` in --runner-defaults).
    #[arg(long, env = "ENTREPOT_RUNNER_IMAGE", default_value_t = crate::default_runner_image())]
    runner_image: String,
    /// YAML file of runner defaults (the chart's `runner.*` and `nats.*` values): `image`,
    /// `imagePullPolicy`, `resources`, `queue: {storageClassName, size}`, `networkPolicy`,
    /// `nats: {url, replicas, credentialsSecret}`.
    #[arg(long, env = "ENTREPOT_RUNNER_DEFAULTS")]
    runner_defaults: Option<PathBuf>,
    /// NATS credentials file (`.creds`) the operator connects with to create, read and
    /// delete the streams of JetStream flows (the chart's `nats.operatorCredentialsSecret`,
    /// mounted into the operator's pod). Without it or --nats-token-file: no authentication.
    #[arg(long, env = "ENTREPOT_NATS_CREDENTIALS_FILE", conflicts_with = "nats_token_file")]
    nats_credentials_file: Option<PathBuf>,
    /// File holding a NATS token the operator connects with, for servers with token
    /// authentication (the chart's `nats.operatorTokenSecret`).
    #[arg(long, env = "ENTREPOT_NATS_TOKEN_FILE")]
    nats_token_file: Option<PathBuf>,
    /// Watch this namespace only (the Helm chart's `watchNamespace`); all when unset.
    #[arg(long, env = "ENTREPOT_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Run the controllers only while this replica holds the Lease, so several
    /// replicas can run safely.
    #[arg(long, env = "ENTREPOT_LEADER_ELECTION")]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "ENTREPOT_LEASE_NAME", default_value = "entrepot-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the election (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", render_crds().context("rendering the CRDs")?);
            Ok(())
        }
        Command::Run(args) => tokio::runtime::Runtime::new()?.block_on(run(*args)),
    }
}

/// How the operator authenticates to NATS: by the file one of the flags names.
fn nats_auth(args: &RunArgs) -> nats_io::Auth {
    match (&args.nats_credentials_file, &args.nats_token_file) {
        (Some(path), _) => nats_io::Auth::CredentialsFile(path.clone()),
        (None, Some(path)) => nats_io::Auth::TokenFile(path.clone()),
        (None, None) => nats_io::Auth::None,
    }
}

/// The runner defaults: the file's, else the image flag alone.
fn runner_defaults(args: &RunArgs) -> anyhow::Result<RunnerDefaults> {
    let Some(path) = &args.runner_defaults else {
        return Ok(RunnerDefaults::with_image(args.runner_image.clone()));
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading --runner-defaults {}", path.display()))?;
    serde_saphyr::from_str(&text)
        .with_context(|| format!("--runner-defaults {}: not a runner defaults file", path.display()))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // kube links both ring and aws-lc-rs; rustls will not choose between them.
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let defaults = runner_defaults(&args)?;
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let metrics = Metrics::new();
    let sync_flow = sync_flow::Context::new(client.clone(), defaults.clone(), metrics.clone())
        .with_nats(Connections::new(nats_auth(&args)));
    let controllers = Controllers::with_sync_flow(sync_flow);
    let ctx = controllers.sync_flow.clone();
    let namespace = args.watch_namespace.clone();
    tracing::info!(runner_image = defaults.image, namespace = namespace.as_deref().unwrap_or("(all)"), "starting");

    let (stop, stopped) = watch::channel(false);
    let signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Served from the start: a standby replica is alive and ready (to take over).
    let server = tokio::spawn(server::serve(args.metrics_addr, metrics, ctx.ready.clone(), signal(stopped.clone())));

    let mut candidate =
        if args.leader_election {
            let identity = args.identity.clone().unwrap_or_else(|| format!("entrepot-operator-{}", std::process::id()));
            Some(Candidate::join(client, &args.lease_name, &args.lease_namespace, &identity).await.with_context(
                || format!("joining the election for Lease {}/{}", args.lease_namespace, args.lease_name),
            )?)
        } else {
            None
        };
    if let Some(candidate) = candidate.as_mut() {
        ctx.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::select! {
            () = candidate.leading() => {}
            result = shutdown_signal() => {
                result?;
                let _ = stop.send(true);
                server.await.context("server task")?.context("serving metrics")?;
                return Ok(());
            }
        }
    }
    let controller = tokio::spawn(async move { controllers.run(namespace, stopped).await });

    let lost = async {
        match candidate.as_mut() {
            Some(c) => c.lost().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        result = shutdown_signal() => result.map(|()| "shutting down"),
        () = lost => Err(anyhow::anyhow!("lost the Lease to another replica; exiting so this one restarts as a candidate")),
    };
    tracing::info!("stopping the controllers");
    let _ = stop.send(true);
    controller.await.context("controller task")?;
    if let Some(candidate) = candidate {
        candidate.resign().await;
    }
    server.await.context("server task")?.context("serving metrics")?;
    outcome.map(|why| tracing::info!(why))
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `charts/entrepot` renders (templates/deployment.yaml and runner-defaults.yaml,
    /// with the production values): the binary must accept exactly that.
    #[test]
    fn the_charts_arguments_and_runner_defaults_file_are_understood() {
        let file = std::env::temp_dir().join(format!("runner-defaults-{}.yaml", std::process::id()));
        std::fs::write(
            &file,
            r#"image: "registry.example.com/mirror/entrepot@sha256:fedcba98"
imagePullPolicy: IfNotPresent
resources:
  limits:
    cpu: "2"
    memory: 1Gi
  requests:
    cpu: 250m
    memory: 256Mi
queue:
  storageClassName: "gp3-encrypted"
  size: "20Gi"
nats:
  url: "nats://nats.nats:4222"
  replicas: 3
  credentialsSecret:
    name: "nats-runner"
    key: "runner.creds"
"#,
        )
        .unwrap();
        let path = file.display().to_string();
        let cli = Cli::try_parse_from([
            "entrepot-operator",
            "run",
            "--runner-defaults",
            &path,
            "--leader-election",
            "--lease-name",
            "t-entrepot",
            "--nats-credentials-file",
            "/var/run/secrets/entrepot-nats/operator.creds",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else { panic!("run") };
        assert!(args.leader_election);
        assert_eq!(args.lease_name, "t-entrepot");
        let defaults = runner_defaults(&args).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(defaults.image, "registry.example.com/mirror/entrepot@sha256:fedcba98");
        assert_eq!(defaults.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(defaults.queue.storage_class_name.as_deref(), Some("gp3-encrypted"));
        assert_eq!(defaults.queue.size.as_deref(), Some("20Gi"));
        assert!(defaults.resources.unwrap().limits.unwrap().contains_key("memory"));
        assert_eq!(defaults.nats.url.as_deref(), Some("nats://nats.nats:4222"));
        assert_eq!(defaults.nats.replicas, Some(3));
        assert_eq!(
            defaults.nats.credentials_secret.map(|s| (s.name, s.key)),
            Some(("nats-runner".into(), "runner.creds".into()))
        );
        assert_eq!(
            nats_auth(&args),
            nats_io::Auth::CredentialsFile("/var/run/secrets/entrepot-nats/operator.creds".into())
        );
    }

    #[test]
    fn a_runner_defaults_file_with_a_typo_is_refused_with_its_path() {
        let file = std::env::temp_dir().join(format!("runner-defaults-typo-{}.yaml", std::process::id()));
        std::fs::write(&file, "image: x\nqueue:\n  storageClass: fast\n").unwrap();
        let path = file.display().to_string();
        let Command::Run(args) =
            Cli::try_parse_from(["entrepot-operator", "run", "--runner-defaults", &path]).unwrap().command
        else {
            panic!("run")
        };
        let error = format!("{:#}", runner_defaults(&args).unwrap_err());
        std::fs::remove_file(&file).unwrap();
        assert!(error.contains(&path) && error.contains("storageClass"), "{error}");
    }
}
