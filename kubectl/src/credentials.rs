//! The user's own bearer token, from their kubeconfig, for the runner to check with the
//! API server (`x-entrepot-kube-token`): the `token`, the content of the `tokenFile` (a
//! pod's service account), or the token an exec plugin issues (`aws eks get-token`,
//! `gke-gcloud-auth-plugin`, `kubelogin`: most managed clusters), run as kubectl runs
//! it (`KUBERNETES_EXEC_INFO`, the configured arguments and environment). A client
//! certificate, or an exec plugin that issues one, gives none.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use kube::config::ExecConfig;
use secrecy::ExposeSecret;
use serde_json::json;

/// The bearer token the kubeconfig authenticates with, if it has one.
pub fn user_token(config: &kube::Config) -> Result<Option<String>> {
    let auth = &config.auth_info;
    if let Some(token) = &auth.token {
        return Ok(non_empty(token.expose_secret()));
    }
    if let Some(file) = &auth.token_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("the kubeconfig's tokenFile {file}"))?;
        return Ok(non_empty(&text));
    }
    match &auth.exec {
        Some(exec) => exec_token(exec),
        None => Ok(None),
    }
}

fn non_empty(token: &str) -> Option<String> {
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
}

/// Runs the exec plugin and takes the token of the `ExecCredential` it prints.
fn exec_token(exec: &ExecConfig) -> Result<Option<String>> {
    let Some(program) = &exec.command else {
        bail!("the kubeconfig's exec plugin names no command");
    };
    let mut command = Command::new(program);
    command.args(exec.args.iter().flatten());
    for name in exec.drop_env.iter().flatten() {
        command.env_remove(name);
    }
    for pair in exec.env.iter().flatten() {
        if let (Some(name), Some(value)) = (pair.get("name"), pair.get("value")) {
            command.env(name, value);
        }
    }
    let api_version = exec.api_version.as_deref().unwrap_or("client.authentication.k8s.io/v1");
    let info = json!({"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": false}});
    command.env("KUBERNETES_EXEC_INFO", info.to_string());
    // Its prompts and errors go to the user; only the credential is read.
    let out = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run the kubeconfig's exec plugin {program}"))?;
    if !out.status.success() {
        bail!("the kubeconfig's exec plugin {program} failed ({})", out.status);
    }
    let credential: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the kubeconfig's exec plugin {program} printed no ExecCredential"))?;
    Ok(credential["status"]["token"].as_str().and_then(non_empty))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config() -> kube::Config {
        kube::Config::new("https://127.0.0.1:6443".parse().unwrap())
    }

    #[test]
    fn the_token_then_the_token_file_is_the_users_and_a_certificate_gives_none() {
        let mut config = config();
        assert_eq!(user_token(&config).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        config.auth_info.token_file = Some(file.display().to_string());
        assert_eq!(user_token(&config).unwrap().as_deref(), Some("from-file"));
        config.auth_info.token = Some("inline".to_string().into());
        assert_eq!(user_token(&config).unwrap().as_deref(), Some("inline"));
    }

    fn exec(script: &str) -> ExecConfig {
        let mut exec: ExecConfig = serde_json::from_value(json!({"command": "sh"})).unwrap();
        exec.args = Some(vec!["-c".into(), script.into()]);
        exec.env = Some(vec![HashMap::from([("name".into(), "WHO".into()), ("value".into(), "ana".into())])]);
        exec
    }

    #[test]
    fn an_exec_plugins_token_is_taken_with_its_environment_and_exec_info() {
        let mut config = config();
        // The token depends on the configured variable and on KUBERNETES_EXEC_INFO.
        let script = r#"case "$KUBERNETES_EXEC_INFO" in *'"interactive":false'*) ;; *) exit 3;; esac
            printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-%s"}}' "$WHO""#;
        config.auth_info.exec = Some(exec(script));
        assert_eq!(user_token(&config).unwrap().as_deref(), Some("tok-ana"));
        config.auth_info.exec = Some(exec(r#"printf '{"status":{"clientCertificateData":"x"}}'"#));
        assert_eq!(user_token(&config).unwrap(), None, "a certificate is no token");
        config.auth_info.exec = Some(exec("exit 1"));
        let e = user_token(&config).unwrap_err().to_string();
        assert!(e.contains("exec plugin sh failed"), "{e}");
    }
}
