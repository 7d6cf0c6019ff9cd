//! `entrepot deadletters list|show|replay|discard|history`: dead letters, either straight
//! from a data directory's queue file (only while no runner holds it: redb locks the
//! file) or through a running runner's admin API. A replay or discard needs `--why`, and
//! `history` shows the audit trail: every replay, discard, injection and repair.

mod render;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use crate::{
    queue::{
        ActionReport, AuditAction, AuditEntry, AuditFilter, Caller, DeadLetterAction, DeadLetterEntry, DeadLetterPage,
        DeadLetterReason, Queue, QueueError, RedbQueue, Selection, now_ms, parse_instant,
    },
    runtime::{REQUESTED_BY_HEADER, admin_auth},
};
use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use serde::de::DeserializeOwned;

/// The command these hints name, unless run for `kubectl entrepot`.
const CLI_PROGRAM: &str = "entrepot deadletters";

/// Options of `entrepot deadletters`.
#[derive(clap::Args)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    command: Command,
    /// The runner's data directory (default `.entrepot/data`): its queue file is opened
    /// directly, which only works while no runner is using it.
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "admin")]
    data_dir: Option<PathBuf>,
    /// A queue file to open directly instead of a data directory's: one a runner set
    /// aside as corrupt (`queue.redb.corrupt-<time>`, see `queue.setAside` in
    /// `/v1/status`), to read what it still holds.
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["admin", "data_dir"])]
    queue_file: Option<PathBuf>,
    /// A running runner's admin address (its --admin-listen), e.g. http://127.0.0.1:9090.
    #[arg(long, global = true, value_name = "URL")]
    admin: Option<String>,
    /// A file holding the runner's admin token, sent with --admin as
    /// `Authorization: Bearer` (the runner's --admin-token-file; in a cluster the flow's
    /// `<runner>-admin-token` Secret, key `token`).
    #[arg(long, global = true, value_name = "FILE", env = "ENTREPOT_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// `table` for people, `json` for scripts.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    output: Output,
}

/// How results are printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// The dead-letter commands, shared with `kubectl entrepot deadletters`.
#[derive(Subcommand)]
pub enum Command {
    /// List dead letters, lowest ids first.
    List {
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only ids above this one (the next page).
        #[arg(long, value_name = "ID")]
        after: Option<u64>,
    },
    /// Show one dead letter: payload, reason, the target's answer, every attempt.
    Show {
        /// The dead letter's id, as listed.
        id: u64,
    },
    /// Put dead letters back into their flow's pipeline (after fixing the Mapping or the
    /// target): each goes through prepare and delivery again, as a new record.
    Replay(ActArgs),
    /// Delete dead letters for good.
    Discard(ActArgs),
    /// Write dead letters' payloads as JSON lines, personal data masked (names, emails,
    /// phones, addresses): samples for `entrepot preview`.
    Export {
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
        /// The file to write (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The audit trail: who replayed, discarded or injected records, when, what and why
    /// (oldest first; kept as long as the flow's dead letters).
    History {
        /// Of this SyncFlow.
        #[arg(long)]
        flow: Option<String>,
        /// Only this action.
        #[arg(long, value_enum)]
        action: Option<AuditAction>,
        /// Written at or after: RFC 3339, a date, or a duration ago (2h, 7d).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// The latest this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// Which dead letters a replay or discard acts on.
#[derive(clap::Args)]
pub struct ActArgs {
    /// Dead letter ids, as listed.
    ids: Vec<u64>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Every dead letter (of --flow, when given): needed when no id or filter is given.
    #[arg(long)]
    all: bool,
    /// Why (required): kept in the audit trail with who and what (`history`). Not to be
    /// confused with --reason, which selects dead letters by their failure.
    #[arg(long, value_name = "TEXT", required = true)]
    why: Option<String>,
}

/// Filters: every one given must hold.
#[derive(clap::Args)]
pub struct FilterArgs {
    /// Of this SyncFlow.
    #[arg(long)]
    flow: Option<String>,
    /// Of this reason: mapping, rejected or retries_exhausted.
    #[arg(long)]
    reason: Option<DeadLetterReason>,
    /// Failed at this target: its name (spec.targets[].name, by default its Connector), or
    /// (with --admin) its index in spec.targets or its Connector.
    #[arg(long)]
    target: Option<String>,
    /// Dead-lettered at or after: RFC 3339, a date, or a duration ago (2h, 7d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Dead-lettered before: same forms as --since.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Text in the message, correlation id, record id or delivery id (any case).
    #[arg(long)]
    text: Option<String>,
}

impl FilterArgs {
    fn selection(self) -> Selection {
        Selection {
            flow: self.flow,
            reason: self.reason,
            target: self.target,
            since: self.since,
            until: self.until,
            text: self.text,
            ..Selection::default()
        }
    }
}

impl ActArgs {
    fn selection(self) -> Selection {
        Selection { ids: self.ids, all: self.all, why: self.why, ..self.filter.selection() }
    }
}

/// Where the dead letters are read and changed.
enum Backend {
    /// The queue file, opened by this process.
    Local { queue: Queue, location: String },
    /// A running runner's admin API; `program` and `hint` are how the user reaches it
    /// again (`entrepot deadletters` and `--admin URL`).
    Admin { base: String, client: reqwest::Client, program: String, hint: String },
}

pub async fn run(args: DeadLettersArgs) -> Result<ExitCode> {
    let backend = Backend::connect(args.data_dir, args.queue_file, args.admin, args.admin_token_file.as_deref())?;
    execute(backend, args.command, args.output).await
}

/// A runner's admin API reached by another program (`kubectl entrepot deadletters`).
pub struct Remote<'a> {
    /// Where the admin API answers: the runner itself, or a forwarder to it.
    pub base: &'a str,
    /// Sent with every request: the admin token (marked sensitive), never printed.
    pub headers: reqwest::header::HeaderMap,
    /// The command the hints printed name, e.g. `kubectl entrepot deadletters`.
    pub program: &'a str,
    /// The options that reach the same runner again, e.g. `--syncflow FLOW -n NS`.
    pub hint: &'a str,
}

/// Runs `command` against the admin API of `remote`, sending what `entrepot deadletters
/// --admin` sends.
pub async fn run_remote(remote: Remote<'_>, command: Command, output: Output) -> Result<ExitCode> {
    let Remote { base, headers, program, hint } = remote;
    let client = admin_client(headers)?;
    let (base, program, hint) = (base.trim_end_matches('/').to_string(), program.to_string(), hint.to_string());
    let backend = Backend::Admin { base, client, program, hint };
    execute(backend, command, output).await
}

async fn execute(backend: Backend, command: Command, output: Output) -> Result<ExitCode> {
    let json = output == Output::Json;
    match command {
        Command::List { filter, limit, after } => {
            let selection = Selection { limit: Some(limit), after, ..filter.selection() };
            let page = backend.list(&selection).await?;
            if json {
                print_json(&page.entries)?;
            } else {
                print!("{}", render::table(&page.entries, now_ms()));
            }
            if let Some(hint) = render::more(&page, backend.program(), &backend.hint()) {
                eprintln!("{hint}");
            }
        }
        Command::Show { id } => {
            let entry = backend.show(id).await?;
            if json {
                print_json(&entry)?;
            } else {
                print!(
                    "{}{}",
                    render::show(&entry, now_ms()),
                    render::next_steps(&entry, backend.program(), &backend.hint())
                );
            }
        }
        Command::Replay(act) => return backend.act(DeadLetterAction::Replay, act.selection(), json).await,
        Command::Discard(act) => return backend.act(DeadLetterAction::Discard, act.selection(), json).await,
        Command::Export { filter, out } => {
            let mut lines = String::new();
            let mut selection = Selection { limit: Some(500), ..filter.selection() };
            loop {
                let page = backend.list(&selection).await?;
                for e in &page.entries {
                    lines.push_str(&export_line(e));
                    lines.push('\n');
                }
                match page.next_after {
                    Some(next) => selection.after = Some(next),
                    None => break,
                }
            }
            match out {
                Some(file) => {
                    std::fs::write(&file, lines).with_context(|| format!("cannot write {}", file.display()))?
                }
                None => print!("{lines}"),
            }
        }
        Command::History { flow, action, since, limit } => {
            let since_ms = since.as_deref().map(|s| parse_instant("since", s, now_ms())).transpose()?;
            let entries = backend.history(&AuditFilter { flow, action, since_ms, limit: Some(limit) }).await?;
            if json {
                print_json(&entries)?;
            } else {
                print!("{}", render::history(&entries));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One dead letter as an export line: its id, flow, reason and masked payload (a
/// payload that is not JSON is kept as masked text).
fn export_line(e: &DeadLetterEntry) -> String {
    let bytes = &e.dead_letter.envelope.payload;
    let payload = serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()));
    let payload = match payload {
        serde_json::Value::String(text) => serde_json::Value::String(super::mask::mask_text(&text)),
        json => super::mask::mask(&json),
    };
    let line = serde_json::json!({
        "id": format!("deadletter-{}", e.id), "flow": e.flow, "reason": e.dead_letter.reason.as_str(), "payload": payload,
    });
    line.to_string()
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The operating-system user running the CLI.
fn os_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown user".into())
}

/// Who asks, as the CLI names itself to a runner (the runner records the token that
/// authenticated it as the identity).
fn requested_by() -> String {
    format!("cli ({})", os_user())
}

impl Backend {
    fn connect(
        data_dir: Option<PathBuf>,
        queue_file: Option<PathBuf>,
        admin: Option<String>,
        token_file: Option<&Path>,
    ) -> Result<Self> {
        if let Some(url) = admin {
            let base = url.trim_end_matches('/').to_string();
            if !base.starts_with("http://") && !base.starts_with("https://") {
                bail!("--admin {url}: give the runner's admin address as a URL, e.g. http://127.0.0.1:9090");
            }
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(file) = token_file {
                let mut value: reqwest::header::HeaderValue = format!("Bearer {}", admin_auth::read_token(file)?)
                    .parse()
                    .with_context(|| format!("the admin token in {} is not a valid header value", file.display()))?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            let hint = format!("--admin {base}");
            let program = CLI_PROGRAM.to_string();
            return Ok(Self::Admin { base, client: admin_client(headers)?, program, hint });
        }
        if let Some(path) = queue_file {
            let queue =
                RedbQueue::open(&path).with_context(|| format!("cannot open the queue file {}", path.display()))?;
            return Ok(Self::Local { queue, location: format!("--queue-file {}", path.display()) });
        }
        let dir = data_dir.unwrap_or_else(|| PathBuf::from(".entrepot/data"));
        let path = dir.join("queue.redb");
        if !path.is_file() {
            bail!(
                "no queue in {}: give the data directory of the runner (its --data-dir), or --admin URL to ask a running runner",
                dir.display()
            );
        }
        match RedbQueue::open(&path) {
            Ok(queue) => Ok(Self::Local { queue, location: format!("--data-dir {}", dir.display()) }),
            Err(QueueError::InUse { .. }) => bail!(
                "a runner is using {} (its queue file is locked): ask that runner instead with --admin URL \
                 (its --admin-listen address, e.g. --admin http://127.0.0.1:9090), or stop it first",
                dir.display()
            ),
            Err(e) => Err(e).with_context(|| format!("cannot open the queue in {}", dir.display())),
        }
    }

    /// The command that reaches dead letters, for the hints printed.
    fn program(&self) -> &str {
        match self {
            Self::Local { .. } => CLI_PROGRAM,
            Self::Admin { program, .. } => program,
        }
    }

    /// The option that reaches the same dead letters again, for the hints printed.
    fn hint(&self) -> String {
        match self {
            Self::Local { location, .. } => location.clone(),
            Self::Admin { hint, .. } => hint.clone(),
        }
    }

    async fn list(&self, selection: &Selection) -> Result<DeadLetterPage> {
        match self {
            Self::Local { queue, .. } => Ok(queue.find_dead_letters(&selection.filter(now_ms())?)?),
            Self::Admin { base, client, .. } => {
                let mut url = reqwest::Url::parse(&format!("{base}/v1/deadletters"))?;
                query_pairs(&mut url, selection)?;
                let response = send(client.get(url), base).await?;
                let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()?.parse().ok());
                let (total, next_after) = (header("x-total-count"), header("x-next-after"));
                let entries: Vec<DeadLetterEntry> = body(response, base).await?;
                Ok(DeadLetterPage { total: total.map_or(entries.len(), |t| t as usize), next_after, entries })
            }
        }
    }

    async fn show(&self, id: u64) -> Result<DeadLetterEntry> {
        let found = match self {
            Self::Local { queue, .. } => queue.dead_letter_by_id(id)?,
            Self::Admin { base, client, .. } => {
                let response = client
                    .get(format!("{base}/v1/deadletters/{id}"))
                    .send()
                    .await
                    .map_err(|e| cannot_reach(base, e))?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    None
                } else {
                    Some(body(check(response, base).await?, base).await?)
                }
            }
        };
        found.with_context(|| format!("no dead letter {id}: list them with `{} list {}`", self.program(), self.hint()))
    }

    /// Replays or discards; prints the report; fails when ids asked for were not found.
    async fn act(&self, action: DeadLetterAction, selection: Selection, json: bool) -> Result<ExitCode> {
        let filter = selection.filter_to(action.verb(), now_ms())?;
        let report = match self {
            Self::Local { queue, location } => {
                // Whoever can open the queue file is who the file system says they are.
                let identity = format!("queue file ({location}), os user {}", os_user());
                let caller = Caller::new(identity, None, selection.why.as_deref())?;
                let affected = queue.act_on_dead_letters(action, &filter, &caller)?;
                ActionReport::new(action, &filter.ids, &affected)
            }
            Self::Admin { base, client, .. } => {
                let request = client
                    .post(format!("{base}/v1/deadletters/{}", action.verb()))
                    .header(REQUESTED_BY_HEADER, requested_by())
                    .json(&selection);
                body(send(request, base).await?, base).await?
            }
        };
        if json {
            print_json(&report)?;
        } else {
            print!(
                "{}",
                render::report(action, &report, matches!(self, Self::Local { .. }), self.program(), &self.hint())
            );
        }
        if !report.missing.is_empty() {
            let ids: Vec<String> = report.missing.iter().map(u64::to_string).collect();
            bail!(
                "no dead letter {} (already replayed or discarded, or never there): list them with `{} list {}`",
                ids.join(", "),
                self.program(),
                self.hint()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The HTTP client of the admin API, sending `headers` with every request.
fn admin_client(headers: reqwest::header::HeaderMap) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .default_headers(headers)
        // The admin API never redirects; whoever does is not the runner.
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

impl Backend {
    /// The audit entries `filter` selects, oldest first.
    async fn history(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        match self {
            Self::Local { queue, .. } => Ok(queue.audit_trail(filter)?),
            Self::Admin { base, client, .. } => {
                let mut url = reqwest::Url::parse(&format!("{base}/v1/audit"))?;
                {
                    let mut pairs = url.query_pairs_mut();
                    if let Some(flow) = &filter.flow {
                        pairs.append_pair("flow", flow);
                    }
                    if let Some(action) = filter.action {
                        pairs.append_pair("action", action.as_str());
                    }
                    if let Some(since) = filter.since_ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()) {
                        pairs.append_pair("since", &since.to_string());
                    }
                    if let Some(limit) = filter.limit {
                        pairs.append_pair("limit", &limit.to_string());
                    }
                }
                body(send(client.get(url), base).await?, base).await
            }
        }
    }
}

/// Adds the selection's fields to `url` as query parameters (ids comma-separated).
fn query_pairs(url: &mut reqwest::Url, selection: &Selection) -> Result<()> {
    let serde_json::Value::Object(fields) = serde_json::to_value(selection)? else { return Ok(()) };
    let mut pairs = url.query_pairs_mut();
    for (name, value) in fields {
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Array(items) => items.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            other => other.to_string(),
        };
        pairs.append_pair(&name, &text);
    }
    Ok(())
}

fn cannot_reach(base: &str, e: reqwest::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach the runner's admin server at {base}: {e}; is the runner running, and is this its --admin-listen address?"
    )
}

async fn send(request: reqwest::RequestBuilder, base: &str) -> Result<reqwest::Response> {
    check(request.send().await.map_err(|e| cannot_reach(base, e))?, base).await
}

/// The response if it is a success; otherwise the runner's `{"error"}` as the error.
async fn check(response: reqwest::Response, base: &str) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or(text);
    bail!("the runner at {base} answered {status}: {message}")
}

async fn body<T: DeserializeOwned>(response: reqwest::Response, base: &str) -> Result<T> {
    response
        .json()
        .await
        .with_context(|| format!("the runner at {base} sent an answer this CLI cannot read (another version?)"))
}
