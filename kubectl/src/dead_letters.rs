//! `kubectl entrepot deadletters`: the commands of `entrepot deadletters` (the same clap
//! definitions and client, `entrepot::cli`), sent to a runner pod of the flow with the
//! flow's admin token. Whatever that CLI sends (filters, who asks, an audit reason) goes
//! through unchanged.

use std::process::ExitCode;

use anyhow::Result;
use clap::ValueEnum;
use entrepot::{
    cli::{DeadLetterCommand, DeadLetterOutput, Remote, dead_letters_remote},
    runtime::ADMIN_TOKEN_HEADER,
};
use kube::Client;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::{forward, runners};

/// How the runner pod's admin port is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// The API server's pod proxy, with the user's kubeconfig: works wherever kubectl
    /// works (RBAC: `get pods/proxy` and `get secrets` in the namespace).
    Proxy,
    /// The pod's IP straight from this machine: for networks that route to pod IPs
    /// (and API servers that refuse to proxy to the pods' addresses).
    Direct,
}

/// Options of `kubectl entrepot deadletters`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DeadLetterCommand,
    /// The SyncFlow whose dead letters these are.
    #[arg(long, global = true, value_name = "FLOW")]
    syncflow: Option<String>,
    /// A runner pod of the flow (default: the first ready one).
    #[arg(long, global = true, value_name = "POD")]
    pod: Option<String>,
    /// How the runner's admin port is reached.
    #[arg(long, global = true, value_enum, default_value = "proxy")]
    via: Via,
    /// `table` for people, `json` for scripts.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    output: DeadLetterOutput,
}

/// Runs one dead-letter command against a runner pod of the flow.
pub async fn run(client: &Client, namespace: &str, args: Args) -> Result<ExitCode> {
    let Some(flow) = args.syncflow else {
        anyhow::bail!(
            "--syncflow FLOW is required: the SyncFlow whose dead letters to use (`kubectl entrepot status` lists them)"
        );
    };
    let pod = runners::pick(client, namespace, &flow, args.pod.as_deref()).await?;
    let token = runners::admin_token(client, namespace, &flow).await?;
    let mut hint = format!("--syncflow {flow} -n {namespace}");
    if args.via == Via::Direct {
        hint.push_str(" --via direct");
    }
    let program = "kubectl entrepot deadletters";
    match args.via {
        Via::Proxy => {
            // The API server takes `Authorization` for itself: the token rides in its own header.
            let headers = token_headers(ADMIN_TOKEN_HEADER, token)?;
            let prefix = forward::proxy_path(namespace, &pod.name, pod.admin_port);
            let forwarder = forward::start(client.clone(), prefix).await?;
            let remote = Remote { base: &forwarder.base, headers, program, hint: &hint };
            dead_letters_remote(remote, args.command, args.output).await
        }
        Via::Direct => {
            if pod.ip.is_empty() {
                anyhow::bail!("runner pod {} has no IP yet: try again when it runs, or use --via proxy", pod.name);
            }
            let base = format!("http://{}:{}", pod.ip, pod.admin_port);
            let headers = token_headers(AUTHORIZATION.as_str(), format!("Bearer {token}"))?;
            dead_letters_remote(Remote { base: &base, headers, program, hint: &hint }, args.command, args.output).await
        }
    }
}

/// `name: value`, marked sensitive so no debug output shows it.
fn token_headers(name: &'static str, value: String) -> Result<HeaderMap> {
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| anyhow::anyhow!("the flow's admin token is not a valid header value"))?;
    value.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    Ok(headers)
}
