//! The Helm chart rendered offline, for the tests of what it holds.

use std::process::Command;

use serde_json::Value;

/// `helm template` of `charts/entrepot` (release `t`, namespace `entrepot-system`) with
/// `args`, as JSON documents.
pub fn helm_template(args: &[&str]) -> Vec<Value> {
    let helm = crate::cluster::tool("helm").unwrap_or_else(|e| panic!("{e:#}; scripts/install-tools.sh installs helm"));
    let out = Command::new(helm)
        .args(["template", "t", "charts/entrepot", "--namespace", "entrepot-system"])
        .args(args)
        .current_dir(crate::repo_root())
        .output()
        .expect("helm runs");
    assert!(out.status.success(), "helm template {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_saphyr::from_multiple::<Value>(&String::from_utf8(out.stdout).unwrap())
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}
