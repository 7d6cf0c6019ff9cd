//! The images, checked without a container engine (none runs on these machines): what the
//! `Dockerfile` says, that the binaries it copies need nothing the runtime base lacks, that
//! what the operator and the chart run in those images is a command the binaries accept,
//! that the chart installs the images `scripts/build-images.sh` builds, and that the
//! Dockerfile passes hadolint. An actual build and run is not checked here
//! (docs/images.md).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use entrepot_e2e::{
    chart::helm_template,
    image::{Dockerfile, Stage, app_version, dockerignore_patterns, ignored_by, linkage},
    repo_root,
};
use entrepot_operator::{
    reconcile_schedule::{self, build::cron_job},
    resources::{ReconcileSchedule, ReconcileScheduleSpec, SyncFlow, SyncFlowSpec},
    sync_flow::{
        build::{RunnerDefaults, Workload, children},
        validate::{References, validate},
    },
};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::Value;

const RUNNER: &str = env!("CARGO_BIN_EXE_entrepot-under-test");
const OPERATOR: &str = env!("CARGO_BIN_EXE_entrepot-operator-under-test");
/// Each image: its Dockerfile target, which is also its name, and its binary.
const IMAGES: [(&str, &str); 2] = [("entrepot", RUNNER), ("entrepot-operator", OPERATOR)];
/// The runtime base, without its digest.
const RUNTIME_BASE: &str = "gcr.io/distroless/cc-debian12:nonroot";
/// The `nonroot` user and group of distroless images.
const NONROOT: &str = "65532:65532";

fn dockerfile() -> Dockerfile {
    Dockerfile::parse(&std::fs::read_to_string(repo_root().join("Dockerfile")).expect("./Dockerfile"))
}

/// `ENTRYPOINT` or `CMD` in exec (JSON) form.
fn exec_form(stage: &Stage, instruction: &str) -> Vec<String> {
    let text = stage.last(instruction).unwrap_or_else(|| panic!("stage {:?} has no {instruction}", stage.name));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{instruction} {text}: not the exec (JSON) form: {e}"))
}

/// Runs `binary args... --help`: clap refuses an unknown subcommand or flag before it
/// prints the help, so success means every argument is one the program knows.
fn accepts(binary: &str, args: &[String]) -> Result<(), String> {
    let out = Command::new(binary).args(args).arg("--help").output().expect("the binary runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{binary} {args:?} --help: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// What `scripts/build-images.sh --list` prints: the runner's image, then the operator's.
fn script_images(env: &[(&str, &str)]) -> [String; 2] {
    let script = repo_root().join("scripts/build-images.sh");
    let out = run(Command::new("bash").arg(script).arg("--list").envs(env.iter().copied()));
    assert!(out.status.success(), "build-images.sh --list: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    lines.try_into().expect("two image references")
}

fn tool(name: &str) -> PathBuf {
    let path = repo_root().join(".tools/bin").join(name);
    assert!(path.exists(), "{} is missing: run scripts/install-tools.sh", path.display());
    path
}

#[test]
fn each_image_runs_its_binary_as_the_nonroot_user_on_a_pinned_distroless_base() {
    let file = dockerfile();
    for (target, _) in IMAGES {
        let stage = file.stage(target);
        let (base, digest) = stage.from.split_once('@').unwrap_or((&stage.from, ""));
        assert_eq!(base, RUNTIME_BASE, "{target}: the runtime base");
        let pinned = digest.starts_with("sha256:") && digest.len() == 71;
        assert!(pinned, "{target}: the base is pinned by digest: {}", stage.from);
        let path = format!("/usr/local/bin/{target}");
        assert_eq!(
            exec_form(stage, "ENTRYPOINT"),
            std::slice::from_ref(&path),
            "{target}: the binary is the entrypoint"
        );
        let copies = stage.all("COPY");
        let copied =
            copies.iter().any(|c| c.starts_with("--from=builder ") && c.ends_with(&format!("/out/{target} {path}")));
        assert!(copied, "{target}: the builder's binary is copied to {path}: {copies:?}");
        assert_eq!(stage.last("USER"), Some(NONROOT), "{target}: runs as distroless' nonroot user");
        // The base has no shell: a RUN would fail to build.
        assert!(stage.all("RUN").is_empty(), "{target}: no RUN in a stage without a shell");
        let labels = stage.pairs("LABEL");
        for key in ["title", "description", "source", "licenses", "version", "revision"] {
            assert!(labels.contains_key(&format!("org.opencontainers.image.{key}")), "{target}: no OCI label {key}");
        }
        assert_eq!(labels["org.opencontainers.image.title"], target);
        assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0", "the workspace's license");
    }
}

#[test]
fn the_builder_builds_both_binaries_on_the_runtime_s_debian_release() {
    let file = dockerfile();
    let builder = file.stage("builder");
    // The binaries link against the builder's glibc: its Debian release must be the
    // runtime's, or they may ask for symbol versions the runtime's glibc lacks.
    let (image, digest) = builder.from.split_once('@').unwrap_or((&builder.from, ""));
    assert!(digest.starts_with("sha256:"), "the builder is pinned by digest: {}", builder.from);
    let version = image
        .strip_prefix("rust:")
        .and_then(|t| t.strip_suffix("-slim-bookworm"))
        .unwrap_or_else(|| panic!("the builder is an official rust:<version>-slim-bookworm image: {image}"));
    assert!(RUNTIME_BASE.contains("-debian12"), "bookworm is Debian 12");
    // At least the workspace's rust-version.
    let numbers = |v: &str| v.split('.').map(|n| n.parse::<u32>().unwrap()).collect::<Vec<_>>();
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let msrv = manifest.lines().find_map(|l| l.strip_prefix("rust-version = ")).unwrap().trim_matches('"');
    assert!(numbers(version) >= numbers(msrv), "rust {version} is older than the workspace's rust-version {msrv}");

    let build = builder.all("RUN").join("\n");
    assert!(build.contains("cargo build --release --locked -p entrepot -p entrepot-operator"), "{build}");
    for (target, _) in IMAGES {
        assert!(build.contains(&format!("target/release/{target}")), "the builder copies out {target}: {build}");
    }
}

/// The shared libraries of the runtime base, gcr.io/distroless/cc-debian12: its `base`
/// image's libc6 and libssl3, and the `cc` packages over it, libgcc-s1, libstdc++6 and
/// libgomp1 (GoogleContainerTools/distroless, cc/config.bzl and base/README.md).
const RUNTIME_LIBRARIES: &[&str] = &[
    // libc6
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libutil.so.1",
    "libresolv.so.2",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    // libgcc-s1, libstdc++6, libgomp1
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libgomp.so.1",
    // libssl3
    "libssl.so.3",
    "libcrypto.so.3",
];

/// The loader libc6 installs, by architecture.
fn runtime_interpreter() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "/lib64/ld-linux-x86-64.so.2",
        "aarch64" => "/lib/ld-linux-aarch64.so.1",
        other => panic!("no distroless loader path known for {other}"),
    }
}

#[test]
fn the_binaries_need_nothing_the_runtime_base_lacks() {
    // These are the test profile's builds, the image's are release builds: the profile
    // changes code generation, not which libraries are linked, so NEEDED is the same.
    for (target, binary) in IMAGES {
        let linked = linkage(Path::new(binary));
        assert_eq!(linked.interpreter.as_deref(), Some(runtime_interpreter()), "{target}: its loader");
        let missing: Vec<&String> = linked.needed.iter().filter(|l| !RUNTIME_LIBRARIES.contains(&l.as_str())).collect();
        assert!(missing.is_empty(), "{target} needs {missing:?}, which {RUNTIME_BASE} does not ship");
        assert!(
            linked.needed.iter().any(|l| l == "libc.so.6"),
            "{target}: read its NEEDED entries: {:?}",
            linked.needed
        );
    }
}

/// The containers the operator renders for every example: runners (continuous and batch)
/// and reconcile runs.
fn rendered_containers() -> Vec<(String, Container, PodSpec)> {
    let image = entrepot_operator::default_runner_image();
    let defaults = RunnerDefaults::with_image(image.clone());
    let mut out = Vec::new();
    for dir in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let dir = dir.unwrap().path();
        let manifests = entrepot::manifest::Manifests::load_dir(&dir).unwrap();
        let refs = References {
            connectors: manifests.connectors.iter().map(|(k, c)| (k.name.clone(), Ok(c.clone()))).collect(),
            mappings: manifests.mappings.iter().map(|(k, m)| (k.name.clone(), Ok(m.clone()))).collect(),
        };
        let uid = "5f1c1a52-0000-4000-8000-000000000001";
        for (key, spec) in &manifests.flows {
            let mut flow = SyncFlow::new(&key.name, SyncFlowSpec(spec.clone()));
            flow.metadata.namespace = Some(key.namespace.clone());
            flow.metadata.uid = Some(uid.into());
            let config = validate(&key.name, &key.namespace, spec, &refs)
                .unwrap_or_else(|e| panic!("{}: flow {} is invalid: {e:?}", dir.display(), key.name));
            let built = children(&flow, &config, &defaults).unwrap();
            let (kind, template) = match built.workload {
                Workload::Continuous { stateful_set, .. } => ("runner", stateful_set.spec.unwrap().template),
                Workload::Shared { deployment, .. } => ("runner", deployment.spec.unwrap().template),
                Workload::Batch { cron_job, .. } => {
                    ("batch runner", cron_job.spec.unwrap().job_template.spec.unwrap().template)
                }
            };
            let pod = template.spec.unwrap();
            for c in &pod.containers {
                out.push((format!("{} {kind} {}", dir.display(), key.name), c.clone(), pod.clone()));
            }
        }
        for (key, spec) in &manifests.schedules {
            let mut schedule = ReconcileSchedule::new(&key.name, ReconcileScheduleSpec(spec.clone()));
            schedule.metadata.namespace = Some(key.namespace.clone());
            schedule.metadata.uid = Some(uid.into());
            let flow = manifests.flows.iter().find(|(k, _)| k.name == spec.sync_flow_ref).map(|(_, f)| Ok(f.clone()));
            let valid = reconcile_schedule::validate::validate(&key.name, &key.namespace, spec, &flow, &refs)
                .unwrap_or_else(|e| panic!("{}: schedule {} is invalid: {e:?}", dir.display(), key.name));
            let cron = cron_job(&schedule, &valid.flow, &defaults).unwrap();
            let pod = cron.spec.unwrap().job_template.spec.unwrap().template.spec.unwrap();
            for c in &pod.containers {
                out.push((format!("{} reconcile {}", dir.display(), key.name), c.clone(), pod.clone()));
            }
        }
    }
    out
}

#[test]
fn what_the_operator_renders_runs_in_the_runner_image() {
    let file = dockerfile();
    let runner = file.stage("entrepot");
    let user: i64 = NONROOT.split(':').next().unwrap().parse().unwrap();
    let env = runner.pairs("ENV");
    let containers = rendered_containers();
    let mut subcommands = BTreeSet::new();
    let mut refused = Vec::new();
    for (what, c, pod) in &containers {
        assert_eq!(c.image.as_deref(), Some(entrepot_operator::default_runner_image().as_str()), "{what}");
        // No `command`: the image's ENTRYPOINT, the runner, runs the arguments.
        assert_eq!(c.command, None, "{what}: the container overrides the image's ENTRYPOINT");
        let args = c.args.clone().unwrap_or_default();
        subcommands.insert(args.first().cloned().unwrap_or_default());
        if let Err(e) = accepts(RUNNER, &args) {
            refused.push(e);
        }
        // The pod runs as the image's user, with a read-only root: the runner writes only to
        // its data directory, which must then be a mounted volume, and /tmp.
        let security = pod.security_context.as_ref().unwrap();
        assert_eq!(security.run_as_user, Some(user), "{what}: the image's USER");
        assert_eq!(c.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true), "{what}");
        let mounts: Vec<&str> = c.volume_mounts.iter().flatten().map(|m| m.mount_path.as_str()).collect();
        if let Some(at) = args.iter().position(|a| a == "--data-dir") {
            let data = &args[at + 1];
            assert!(mounts.contains(&data.as_str()), "{what}: --data-dir {data} is not a volume: {mounts:?}");
            assert_eq!(&env["ENTREPOT_DATA_DIR"], data, "the image's default data directory is the operator's");
            assert!(mounts.contains(&"/tmp"), "{what}: /tmp is not a volume: {mounts:?}");
        }
    }
    assert!(refused.is_empty(), "the runner refuses what the operator renders:\n{}", refused.join("\n"));
    let want: BTreeSet<String> = ["serve", "reconcile"].map(String::from).into();
    assert_eq!(subcommands, want, "runners and reconcile runs, from {} containers", containers.len());
    assert!(
        containers.iter().any(|(_, c, _)| c.args.as_ref().unwrap().contains(&"--once".to_string())),
        "a batch runner"
    );

    // The image's ENV are variables the runner reads.
    let help = run(Command::new(RUNNER).args(["serve", "--help"]));
    let help = String::from_utf8_lossy(&help.stdout);
    for name in env.keys() {
        assert!(help.contains(&format!("env: {name}=")), "the runner does not read {name}:\n{help}");
    }
    // Without arguments the image prints the help rather than an error.
    let cmd = exec_form(runner, "CMD");
    assert!(accepts(RUNNER, &cmd[..cmd.len() - 1]).is_ok() && cmd.last().map(String::as_str) == Some("--help"));
}

#[test]
fn the_chart_runs_the_operator_with_arguments_it_accepts_and_the_images_the_script_builds() {
    let [runner_image, operator_image] = script_images(&[]);
    let values = [
        vec![],
        vec!["-f", "charts/entrepot/ci/minimal-values.yaml"],
        vec!["-f", "charts/entrepot/ci/production-values.yaml"],
        vec!["--set", "operator.replicas=1", "--set", "operator.leaderElection.enabled=false"],
        vec!["--set", "watchNamespace=retail"],
    ];
    for args in values {
        let docs = helm_template(&args);
        let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("the operator's Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert!(c.get("command").is_none(), "{args:?}: the chart overrides the image's ENTRYPOINT");
        let container_args: Vec<String> = serde_json::from_value(c["args"].clone()).unwrap();
        accepts(OPERATOR, &container_args).unwrap_or_else(|e| panic!("values {args:?}: {e}"));
        if args.is_empty() {
            // The defaults: the images the script builds, run as the image's user.
            assert_eq!(c["image"], operator_image.as_str());
            let env = c["env"].as_array().unwrap();
            let runner_env = env.iter().find(|e| e["name"] == "ENTREPOT_RUNNER_IMAGE").unwrap();
            assert_eq!(runner_env["value"], runner_image.as_str());
            let key = "runner-defaults.yaml";
            let config_map = docs.iter().find(|d| d["kind"] == "ConfigMap" && d["data"].get(key).is_some());
            let text = config_map.expect("the runner defaults ConfigMap")["data"][key].as_str().unwrap();
            let defaults: RunnerDefaults = serde_saphyr::from_str(text).unwrap();
            assert_eq!(defaults.image, runner_image, "the image the operator puts into runners");
            // Each flow's NetworkPolicy admits the operator's own pods to the admin port.
            let policy = &defaults.network_policy;
            let operator = policy.operator.as_ref().expect("the operator's pods as a NetworkPolicy peer");
            let labels = operator.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
            let pod_labels = deployment["spec"]["template"]["metadata"]["labels"].as_object().unwrap();
            assert!(policy.enabled && labels.iter().all(|(k, v)| pod_labels[k.as_str()] == v.as_str()), "{labels:?}");
            let user = pod["securityContext"]["runAsUser"].as_i64().unwrap();
            assert_eq!(format!("{user}:{}", pod["securityContext"]["runAsGroup"]), NONROOT);
        }
    }
}

#[test]
fn the_script_builds_the_images_the_chart_and_the_operator_default_to() {
    let app_version = app_version();
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo_root().join("charts/entrepot/values.yaml")).unwrap())
            .unwrap();
    let from_values = |image: &Value| {
        assert_eq!(image["tag"], "", "an empty tag means the chart's appVersion");
        assert_eq!(image["digest"], "");
        format!("{}:{app_version}", image["repository"].as_str().unwrap())
    };
    let [runner, operator] = script_images(&[]);
    assert_eq!(runner, from_values(&values["runner"]["image"]));
    assert_eq!(operator, from_values(&values["image"]));
    assert_eq!(runner, entrepot_operator::default_runner_image(), "the operator's default runner image");
    assert_eq!(runner, format!("ghcr.io/entrepot-io/entrepot:{app_version}"));
    // REGISTRY and TAG override the defaults.
    let overridden = script_images(&[("REGISTRY", "registry.example.com/mirror/"), ("TAG", "1.2.3")]);
    let want = ["registry.example.com/mirror/entrepot:1.2.3", "registry.example.com/mirror/entrepot-operator:1.2.3"];
    assert_eq!(overridden, want);
}

/// Runs `bash scripts/build-images.sh args` with only `bin` on PATH.
fn build_images(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    // bash found on this process's PATH: the child's PATH is `bin` alone.
    let bash = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("bash"))
        .find(|p| p.is_file())
        .expect("bash on PATH");
    run(Command::new(bash)
        .arg(repo_root().join("scripts/build-images.sh"))
        .args(args)
        .env_clear()
        .env("PATH", bin)
        .envs(env.iter().copied()))
}

/// A stand-in engine in `bin`: logs its arguments to `log`; `info` fails when `up` is false.
fn fake_engine(bin: &Path, name: &str, log: &Path, up: bool) {
    use std::os::unix::fs::PermissionsExt;
    let path = bin.join(name);
    let info = if up { "" } else { "[ \"$1\" = info ] && { echo 'Cannot connect to the daemon' >&2; exit 1; }\n" };
    std::fs::write(&path, format!("#!/bin/sh\n{info}echo \"$*\" >>'{}'\n", log.display())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_build_script_finds_an_engine_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("engine.log");

    let out = build_images(&bin, &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for says in ["no usable container engine", "docker: not found", "podman: not found"] {
        assert!(stderr.contains(says), "{stderr}");
    }

    // A docker client without a daemon (these machines) is not an engine.
    fake_engine(&bin, "docker", &log, false);
    let out = build_images(&bin, &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("docker is installed, but 'docker info' failed (Cannot connect to the daemon)"),
        "{stderr}"
    );

    // ... so podman, which answers, builds both targets and pushes both images.
    fake_engine(&bin, "podman", &log, true);
    let out = build_images(&bin, &["--push"], &[("REGISTRY", "registry.example.com/x"), ("TAG", "9.9.9")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = repo_root();
    let root = root.display();
    let log = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = log.lines().filter(|l| *l != "info").collect();
    let build = |target: &str| {
        format!(
            "build --file {root}/Dockerfile --target {target} --tag registry.example.com/x/{target}:9.9.9 \
             --build-arg VERSION=9.9.9 --build-arg REVISION=unknown {root}"
        )
    };
    assert_eq!(
        calls,
        [
            build("entrepot"),
            build("entrepot-operator"),
            "push registry.example.com/x/entrepot:9.9.9".into(),
            "push registry.example.com/x/entrepot-operator:9.9.9".into(),
        ]
    );
}

#[test]
fn the_build_context_holds_what_the_build_reads() {
    let patterns = dockerignore_patterns(&std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap());
    assert!(patterns.iter().all(|p| !p.starts_with('!')), "support/image.rs does not read exceptions (!)");
    let mut read = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    for member in ["api", "runner", "operator", "sim", "demo", "tests"] {
        read.push(format!("{member}/Cargo.toml"));
    }
    // Every file the workspace's crates include at compile time (cargo reads every member).
    let include = regex::Regex::new(r#"include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)"#).unwrap();
    let mut sources = Vec::new();
    for member in ["api/src", "runner/src", "operator/src", "sim/src", "demo/src"] {
        collect_rs(&repo_root().join(member), &mut sources);
    }
    for source in sources {
        let text = std::fs::read_to_string(&source).unwrap();
        let rel = source.strip_prefix(repo_root()).unwrap().to_string_lossy().into_owned();
        read.push(rel.clone());
        for cap in include.captures_iter(&text) {
            let included = source.parent().unwrap().join(&cap[1]);
            let included =
                std::fs::canonicalize(&included).unwrap_or_else(|e| panic!("{rel}: {}: {e}", included.display()));
            let root = std::fs::canonicalize(repo_root()).unwrap();
            read.push(included.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(read.iter().any(|p| p.starts_with("examples/")), "the demo includes examples: {read:?}");
    let excluded: Vec<String> = read
        .iter()
        .filter_map(|p| {
            let by = ignored_by(&patterns, p);
            (!by.is_empty()).then(|| format!("{p} (by {by:?})"))
        })
        .collect();
    assert!(excluded.is_empty(), ".dockerignore leaves out what the build reads: {excluded:?}");
    // ... and keeps out what it must not send.
    for p in ["target/debug/x", ".git/HEAD", ".tools/bin/helm", "q.redb", "runner/.entrepot/data/q.redb"] {
        assert!(!ignored_by(&patterns, p).is_empty(), "{p} is sent to the engine");
    }
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let hadolint = tool("hadolint");
    let out = run(Command::new(&hadolint).args(["--no-color", "Dockerfile"]).current_dir(repo_root()));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "hadolint Dockerfile:\n{report}");
    // ... and it does find problems: an untagged base and an unpinned apt-get install.
    let mut child = Command::new(&hadolint)
        .args(["--no-color", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(b"FROM debian\nRUN apt-get install curl\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && report.contains("DL3006") && report.contains("DL3008"), "{report}");
}
