//! `entrepot-operator`: prints the CRDs, or runs the controllers.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use entrepot_operator::{
    metrics::Metrics,
    resources::render_crds,
    server,
    sync_flow::{self, Context, build::RunnerDefaults},
};
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
    Run {
        /// Where `/healthz`, `/readyz` and `/metrics` are served.
        #[arg(long, env = "ENTREPOT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
        metrics_addr: SocketAddr,
        /// Runner image for flows that name none.
        #[arg(long, env = "ENTREPOT_RUNNER_IMAGE", default_value_t = entrepot_operator::default_runner_image())]
        runner_image: String,
        /// Watch this namespace only (the Helm chart's `watchNamespace`); all when unset.
        #[arg(long, env = "ENTREPOT_WATCH_NAMESPACE")]
        watch_namespace: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", render_crds().context("rendering the CRDs")?);
            Ok(())
        }
        Command::Run { metrics_addr, runner_image, watch_namespace } => {
            tokio::runtime::Runtime::new()?.block_on(run(metrics_addr, runner_image, watch_namespace))
        }
    }
}

async fn run(metrics_addr: SocketAddr, runner_image: String, namespace: Option<String>) -> anyhow::Result<()> {
    // kube links both ring and aws-lc-rs; rustls will not choose between them.
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let metrics = Metrics::new();
    let ctx = Arc::new(Context::new(client, RunnerDefaults { image: runner_image.clone() }, metrics.clone()));
    tracing::info!(runner_image, namespace = namespace.as_deref().unwrap_or("(all)"), "starting");

    let (stop, stopped) = watch::channel(false);
    let signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn(server::serve(metrics_addr, metrics, ctx.ready.clone(), signal(stopped.clone())));
    let controller = tokio::spawn({
        let ctx = ctx.clone();
        let shutdown = signal(stopped);
        async move { sync_flow::run(ctx, namespace.as_deref(), shutdown).await }
    });

    shutdown_signal().await?;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    controller.await.context("controller task")?;
    server.await.context("server task")?.context("serving metrics")?;
    Ok(())
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
