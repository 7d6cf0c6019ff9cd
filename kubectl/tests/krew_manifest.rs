//! The krew manifest (`krew/entrepot.yaml`) parses as a krew Plugin and installs the
//! binary this crate builds, from the release archives the release job uploads.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Plugin {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    version: String,
    homepage: String,
    short_description: String,
    description: String,
    platforms: Vec<Platform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Platform {
    selector: Selector,
    uri: String,
    sha256: String,
    bin: String,
    files: Vec<File>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    match_labels: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    from: String,
    to: String,
}

fn read(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn the_krew_manifest_installs_the_binary_cargo_builds_on_each_platform() {
    let plugin: Plugin = serde_saphyr::from_str(&read("../krew/entrepot.yaml")).expect("krew/entrepot.yaml parses");
    assert_eq!(plugin.api_version, "krew.googlecontainertools.github.com/v1alpha2");
    assert_eq!(plugin.kind, "Plugin");
    // krew installs `kubectl-<name>`: the plugin's name and the binary agree.
    assert_eq!(format!("kubectl-{}", plugin.metadata.name), kubectl_entrepot::BINARY);
    assert_eq!(plugin.spec.version, "RELEASE_VERSION", "the release job fills the version in");
    assert!(plugin.spec.homepage.starts_with("https://") && !plugin.spec.short_description.is_empty());
    assert!(plugin.spec.description.contains("kubectl entrepot status"));

    // The binary Cargo builds: the [[bin]] of this crate.
    let cargo = read("Cargo.toml");
    assert!(cargo.contains(&format!("[[bin]]\nname = \"{}\"", kubectl_entrepot::BINARY)), "Cargo.toml builds it");

    let mut seen = Vec::new();
    for p in &plugin.spec.platforms {
        let (os, arch) = (&p.selector.match_labels["os"], &p.selector.match_labels["arch"]);
        seen.push(format!("{os}/{arch}"));
        assert_eq!(p.bin, kubectl_entrepot::BINARY, "{os}/{arch}");
        assert!(p.files.iter().any(|f| f.from == p.bin && f.to == "."), "{os}/{arch} unpacks the binary");
        let archive = format!("kubectl-entrepot-RELEASE_VERSION-{os}-{arch}.tar.gz");
        assert_eq!(
            p.uri,
            format!("https://github.com/entrepot-io/entrepot/releases/download/RELEASE_VERSION/{archive}"),
        );
        assert_eq!(p.sha256, format!("SHA256_{}_{}", os.to_uppercase(), arch.to_uppercase()));
    }
    assert_eq!(seen, ["linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"]);
}
