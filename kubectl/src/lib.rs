//! `kubectl entrepot`: the on-call view of Entrepot from a workstation, with the user's
//! kubeconfig and nothing installed in the cluster beyond the operator.
//!
//! - `status`: every SyncFlow with its readiness, backlog and last error, from the status
//!   the operator writes (`status.rs`);
//! - `describe FLOW`: one flow, its targets' and Connectors' health and its conditions
//!   (`describe.rs`);
//! - `deadletters list|show|replay|discard --syncflow FLOW`: the commands of `entrepot
//!   deadletters`, sent to one of the flow's runner pods through the API server's pod
//!   proxy (`runners.rs` finds the pod, `forward.rs` carries the requests), as the user:
//!   their own bearer token, which the runner checks with the API server and RBAC and
//!   records in the audit trail; or, for a kubeconfig without one, the flow's admin token.
//!
//! In the library so the end-to-end tests build the same program as a binary of their own.

#![warn(missing_docs)]

mod credentials;
mod dead_letters;
mod describe;
mod forward;
mod runners;
mod status;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kube::{Client, Config, config::KubeConfigOptions};

pub use dead_letters::Via;

/// The binary krew installs and kubectl finds on PATH.
pub const BINARY: &str = "kubectl-entrepot";

#[derive(Parser)]
#[command(name = "kubectl entrepot", version, about = "Entrepot flows: status, dead letters, details")]
struct Cli {
    /// The namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n', global = true, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every SyncFlow: readiness, backlog (pending, oldest pending, dead letters) and last error.
    Status {
        /// SyncFlows of every namespace.
        #[arg(long, short = 'A')]
        all_namespaces: bool,
    },
    /// One SyncFlow: source, targets' and Connectors' health, backlog, runner and conditions.
    Describe {
        /// The SyncFlow's name.
        flow: String,
    },
    /// List, show, replay (after a fix) or discard a flow's dead letters, through one of
    /// its runner pods' admin API.
    #[command(name = "deadletters", alias = "dead-letters")]
    DeadLetters(Box<dead_letters::Args>),
}

/// Runs the plugin with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let result = runtime.map_err(anyhow::Error::from).and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    // kube links both ring and aws-lc-rs; rustls will not choose between them.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube_config(cli.context.as_deref()).await?;
    let client = Client::try_from(config.clone()).context("cannot build a Kubernetes client from the configuration")?;
    let namespace = cli.namespace.unwrap_or_else(|| client.default_namespace().to_string());
    match cli.command {
        Command::Status { all_namespaces } => {
            let scope = if all_namespaces { None } else { Some(namespace.as_str()) };
            print!("{}", status::table(&status::flows(&client, scope).await?, all_namespaces));
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe { flow } => {
            let found = describe::flow(&client, &namespace, &flow).await?;
            print!("{}", describe::render(&found, status::now()));
            Ok(ExitCode::SUCCESS)
        }
        Command::DeadLetters(args) => {
            let token = credentials::user_token(&config)?;
            dead_letters::run(&client, token, &namespace, *args).await
        }
    }
}

/// The user's kubeconfig (`KUBECONFIG`, `~/.kube/config`) or, in a pod, its service
/// account; `context` picks a kubeconfig context.
async fn kube_config(context: Option<&str>) -> Result<Config> {
    Ok(match context {
        None => Config::infer().await.context("cannot find a Kubernetes configuration (KUBECONFIG, ~/.kube/config)")?,
        Some(name) => {
            let options = KubeConfigOptions { context: Some(name.to_string()), ..KubeConfigOptions::default() };
            Config::from_kubeconfig(&options).await.with_context(|| format!("--context {name}: not usable"))?
        }
    })
}
