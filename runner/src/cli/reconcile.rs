//! `entrepot reconcile`: one run of a ReconcileSchedule. The summary is one JSON line on
//! stdout and, for Kubernetes, the pod's termination message; the exit status is 0 when
//! the run finished (drift or not) and 1 when it could not (a system unreachable, a bad
//! manifest), with the reason in the termination message as `{"error": ...}`.
//!
//! In a pod (the operator's CronJob): `--config` is the flow's rendered runner
//! configuration, the schedule comes from `ENTREPOT_RECONCILE_NAME` and
//! `ENTREPOT_RECONCILE_SPEC`, Secrets from the environment. Locally: `--dir` is a
//! directory of manifests holding the schedule, its flow and what the flow references.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;

use crate::{
    manifest::Manifests,
    reconcile::{ReconcileFailure, Reconciler, RunnerClient, TERMINATION_MESSAGE_LIMIT},
    secrets::{DEFAULT_SECRETS_DIR, Secrets},
};

use entrepot_api::{
    config::{FlowConfig, RunnerConfig},
    resource::{ReconcileAction, ReconcileScheduleSpec},
};

/// Where Kubernetes reads a container's termination message by default.
const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

#[derive(clap::Args)]
pub struct ReconcileArgs {
    /// The flow's rendered runner configuration (in a pod, from the flow's ConfigMap).
    #[arg(long, required_unless_present = "dir", conflicts_with = "dir")]
    config: Option<PathBuf>,
    /// A directory of manifests holding the ReconcileSchedule, its SyncFlow, the
    /// Connectors and Mappings it references, and (locally) its Secrets.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The ReconcileSchedule's name. With `--dir`, which one to run (default: the only one).
    #[arg(long, env = "ENTREPOT_RECONCILE_NAME")]
    schedule: Option<String>,
    /// The ReconcileSchedule's spec as JSON, with `--config` (the operator sets it).
    #[arg(long, env = "ENTREPOT_RECONCILE_SPEC")]
    spec: Option<String>,
    /// Overrides the schedule's `spec.action`.
    #[arg(long, value_enum)]
    action: Option<ActionArg>,
    /// The admin API of the flow's runner, e.g. `http://orders-runner:9090` (the flow's
    /// Service). Needed to repair.
    #[arg(long, env = "ENTREPOT_RUNNER_URL")]
    runner: Option<String>,
    /// A file holding the runner's admin token, sent as `Authorization: Bearer` with a
    /// repair (in a pod, the flow's `<runner>-admin-token` Secret, mounted by the operator).
    #[arg(long, env = "ENTREPOT_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Where the summary is also written for Kubernetes. Default `/dev/termination-log`
    /// when it exists.
    #[arg(long, env = "ENTREPOT_TERMINATION_LOG")]
    termination_log: Option<PathBuf>,
    /// Why this repair is run, for the runner's audit trail (default: a scheduled repair
    /// by the ReconcileSchedule, of the records its target lacks or holds differently).
    #[arg(long, value_name = "TEXT", env = "ENTREPOT_RECONCILE_WHY")]
    why: Option<String>,
    /// Where mounted Secrets are read from, as `<dir>/<secret name>/<key>`.
    #[arg(long, default_value = DEFAULT_SECRETS_DIR, env = "ENTREPOT_SECRETS_DIR")]
    secrets_dir: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum ActionArg {
    Report,
    Repair,
}

/// Runs the schedule and reports; see the module documentation for the exit status.
pub async fn run(args: ReconcileArgs) -> Result<ExitCode> {
    let termination = args
        .termination_log
        .clone()
        .or_else(|| Path::new(DEFAULT_TERMINATION_LOG).exists().then(|| DEFAULT_TERMINATION_LOG.into()));
    match reconcile(&args).await {
        Ok(line) => {
            println!("{line}");
            if let Some(path) = &termination {
                write_termination(path, &line)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if let Some(path) = &termination {
                let mut error = format!("{e:#}");
                // Room for the JSON around it.
                if let Some((cut, _)) = error.char_indices().nth(TERMINATION_MESSAGE_LIMIT / 2) {
                    error.truncate(cut);
                }
                let line = serde_json::to_string(&ReconcileFailure { error }).expect("a failure always serializes");
                // The run's own error is what matters; a failure to record it is only logged.
                if let Err(write) = write_termination(path, &line) {
                    tracing::warn!(error = %write, "cannot write the termination message");
                }
            }
            Err(e)
        }
    }
}

async fn reconcile(args: &ReconcileArgs) -> Result<String> {
    let (name, mut spec, flow, secrets) = match (&args.config, &args.dir) {
        (Some(config), _) => from_config(args, config)?,
        (None, Some(dir)) => from_dir(args, dir)?,
        (None, None) => bail!("give --config (a rendered runner configuration) or --dir (a manifests directory)"),
    };
    if let Some(action) = args.action {
        spec.action = match action {
            ActionArg::Report => ReconcileAction::Report,
            ActionArg::Repair => ReconcileAction::Repair,
        };
    }
    let runner = match (spec.action, &args.runner) {
        (ReconcileAction::Repair, None) => {
            bail!("ReconcileSchedule {name}: action repair needs --runner, the admin API of the flow's runner")
        }
        (ReconcileAction::Repair, Some(url)) => Some(
            RunnerClient::new(url, &format!("entrepot reconcile {name}"))
                .map_err(|e| anyhow!(e))?
                .with_token_file(args.admin_token_file.clone())
                .for_repair(&name, args.why.clone().unwrap_or_else(|| {
                    format!("scheduled repair by ReconcileSchedule {name}: records the target lacks or holds differently")
                })),
        ),
        (ReconcileAction::Report, _) => None,
    };
    let reconciler = Reconciler::new(&name, &spec, flow, &secrets, jiff::Timestamp::now())?;
    let summary = reconciler.run(runner.as_ref()).await?;
    Ok(summary.to_line())
}

type Loaded = (String, ReconcileScheduleSpec, FlowConfig, Secrets);

fn from_config(args: &ReconcileArgs, path: &Path) -> Result<Loaded> {
    let name = args.schedule.clone().context("--schedule (or ENTREPOT_RECONCILE_NAME) names the ReconcileSchedule")?;
    let text =
        args.spec.as_deref().context("--spec (or ENTREPOT_RECONCILE_SPEC) holds the ReconcileSchedule's spec")?;
    let spec: ReconcileScheduleSpec =
        serde_json::from_str(text).with_context(|| format!("ReconcileSchedule {name}: the spec is invalid"))?;
    let config_text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config: RunnerConfig = serde_saphyr::from_str(&config_text)
        .with_context(|| format!("{} is not a runner configuration", path.display()))?;
    let flow = config.flows.into_iter().find(|f| f.name == spec.sync_flow_ref).with_context(|| {
        format!(
            "ReconcileSchedule {name}: spec.syncFlowRef: SyncFlow `{}` is not in {}",
            spec.sync_flow_ref,
            path.display()
        )
    })?;
    let secrets = Secrets::from_env().with_dir(&args.secrets_dir);
    Ok((name, spec, flow, secrets))
}

fn from_dir(args: &ReconcileArgs, dir: &Path) -> Result<Loaded> {
    let manifests = Manifests::load_dir(dir)?;
    let (key, spec) = match &args.schedule {
        Some(name) => manifests.schedules.iter().find(|(k, _)| &k.name == name),
        None if manifests.schedules.len() == 1 => manifests.schedules.iter().next(),
        None => {
            bail!("{} holds {} ReconcileSchedules: name one with --schedule", dir.display(), manifests.schedules.len())
        }
    }
    .with_context(|| format!("no ReconcileSchedule {} in {}", args.schedule.as_deref().unwrap_or(""), dir.display()))?;
    let flow = flow_of(&manifests, &key.namespace, &key.name, spec)?;
    let secrets = Secrets::with_manifests(manifests.secrets.clone()).with_dir(&args.secrets_dir);
    Ok((key.name.clone(), spec.clone(), flow, secrets))
}

/// The resolved SyncFlow a schedule of `namespace` names.
pub(crate) fn flow_of(
    manifests: &Manifests,
    namespace: &str,
    name: &str,
    spec: &ReconcileScheduleSpec,
) -> Result<FlowConfig> {
    let config = super::resolve(manifests)?;
    config.flows.into_iter().find(|f| f.namespace == namespace && f.name == spec.sync_flow_ref).with_context(|| {
        format!(
            "ReconcileSchedule {namespace}/{name}: spec.syncFlowRef refers to SyncFlow `{}`, which does not exist in namespace {namespace}",
            spec.sync_flow_ref
        )
    })
}

fn write_termination(path: &Path, line: &str) -> Result<()> {
    let mut file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(line.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
