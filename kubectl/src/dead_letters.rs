//! `kubectl entrepot deadletters`: the commands of `entrepot deadletters` (the same clap
//! definitions and client, `entrepot::cli`), sent to a runner pod of the flow. Whatever
//! that CLI sends (filters, who asks, an audit reason) goes through unchanged.
//!
//! Who is asking: the user's own Kubernetes bearer token when the kubeconfig gives one
//! (`credentials.rs`: a `token`, a `tokenFile`, or an exec plugin's token), in
//! `x-entrepot-kube-token`; the runner asks the API server who it is and whether RBAC
//! lets them (`syncflows/deadletters`), and the audit trail names them. A kubeconfig
//! without a token (client certificates), or `--admin-token`, uses the
//! flow's admin token from its Secret instead (RBAC: `get secrets`).

use std::process::ExitCode;

use anyhow::Result;
use clap::ValueEnum;
use entrepot::{
    cli::{DeadLetterCommand, DeadLetterOutput, Remote, dead_letters_remote},
    runtime::{ADMIN_TOKEN_HEADER, KUBE_TOKEN_HEADER},
};
use kube::Client;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

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
    /// Use the flow's admin token (read from its Secret) even when the kubeconfig has a
    /// bearer token of your own; the audit trail then names the token, not you.
    #[arg(long, global = true)]
    admin_token: bool,
    /// `table` for people, `json` for scripts.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    output: DeadLetterOutput,
}

/// Runs one dead-letter command against a runner pod of the flow.
pub async fn run(client: &Client, user_token: Option<String>, namespace: &str, args: Args) -> Result<ExitCode> {
    let Some(flow) = args.syncflow else {
        anyhow::bail!(
            "--syncflow FLOW is required: the SyncFlow whose dead letters to use (`kubectl entrepot status` lists them)"
        );
    };
    let pod = runners::pick(client, namespace, &flow, args.pod.as_deref()).await?;
    let credential = match user_token.filter(|_| !args.admin_token) {
        Some(token) => Credential::User(token),
        None => Credential::Admin(runners::admin_token(client, namespace, &flow).await?),
    };
    let mut hint = format!("--syncflow {flow} -n {namespace}");
    if args.via == Via::Direct {
        hint.push_str(" --via direct");
    }
    let program = "kubectl entrepot deadletters";
    match args.via {
        Via::Proxy => {
            let headers = credential.headers(Via::Proxy)?;
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
            let headers = credential.headers(Via::Direct)?;
            dead_letters_remote(Remote { base: &base, headers, program, hint: &hint }, args.command, args.output).await
        }
    }
}

/// What the runner is shown.
enum Credential {
    /// The user's own Kubernetes bearer token.
    User(String),
    /// The flow's admin token.
    Admin(String),
}

impl Credential {
    /// The header carrying it on a request sent `via`, marked sensitive so no debug output
    /// shows it. The API server's proxy takes `Authorization` for itself, so there an
    /// admin token rides in its own header.
    fn headers(&self, via: Via) -> Result<HeaderMap> {
        let (name, value, what) = match (self, via) {
            (Self::User(token), _) => {
                (HeaderName::from_static(KUBE_TOKEN_HEADER), token.clone(), "your kubeconfig's token")
            }
            (Self::Admin(token), Via::Proxy) => {
                (HeaderName::from_static(ADMIN_TOKEN_HEADER), token.clone(), "the flow's admin token")
            }
            (Self::Admin(token), Via::Direct) => (AUTHORIZATION, format!("Bearer {token}"), "the flow's admin token"),
        };
        let mut value =
            HeaderValue::from_str(&value).map_err(|_| anyhow::anyhow!("{what} is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(HeaderMap::from_iter([(name, value)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_token_rides_in_its_own_header_and_an_admin_token_as_the_route_needs() {
        let header = |credential: Credential, via: Via| {
            let headers = credential.headers(via).unwrap();
            let (name, value) = headers.iter().next().unwrap();
            assert!(value.is_sensitive(), "{name} is marked sensitive");
            (name.to_string(), value.to_str().unwrap().to_string())
        };
        let user = |t: &str| Credential::User(t.into());
        assert_eq!(header(user("u"), Via::Proxy), (KUBE_TOKEN_HEADER.into(), "u".into()));
        assert_eq!(header(user("u"), Via::Direct), (KUBE_TOKEN_HEADER.into(), "u".into()));
        assert_eq!(header(Credential::Admin("a".into()), Via::Proxy), (ADMIN_TOKEN_HEADER.into(), "a".into()));
        assert_eq!(header(Credential::Admin("a".into()), Via::Direct), ("authorization".into(), "Bearer a".into()));
    }
}
