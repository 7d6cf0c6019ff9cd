//! A running flow: its compiled mappings and key expressions, its Connectors' clients,
//! its targets and poller, and the workers that move its records (poll: source → inbox;
//! prepare: inbox → outbox; deliver: outbox → target).

mod deliver;
mod lanes;
mod prepare;
mod refetch;
mod rotation_grace;
mod webhook_keys;

pub use refetch::{Refetched, Refetcher};
pub use webhook_keys::WebhookKeys;

use std::{collections::BTreeMap, sync::Arc};

use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};

pub use deliver::run_delivery;
pub use prepare::{report as report_prepared, run_prepare};

use crate::{
    connect::{ConnectError, ConnectorClient},
    metrics::Metrics,
    postgres::Database,
    queue::Queue,
    quota::Quota,
    secrets::{MissingSecret, Secrets},
    sink::{Sink, TargetCounters, TargetError},
    supervisor::{Lifetime, Supervisor},
};

use entrepot_api::{
    canonical::{UnknownEntity, Validator},
    config::FlowConfig,
    mapping::{CompileError, Program},
    resource::ConnectorType,
};

/// A task a flow runs.
type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A flow cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The webhook secret is empty (or only a line break).
    #[error(
        "SyncFlow {flow}: Connector {connector}: {field} names an empty secret; every webhook would be refused \
         (an empty key lets anyone sign): put the secret's value in it"
    )]
    EmptySecret {
        /// The flow.
        flow: String,
        /// The source Connector.
        connector: String,
        /// The field naming the secret.
        field: &'static str,
    },
    /// A mapping or key expression does not compile.
    #[error("SyncFlow {flow}: {field}: {source}")]
    Compile {
        /// The flow.
        flow: String,
        /// Where the program comes from.
        field: String,
        /// The compiler's message.
        source: CompileError,
    },
    /// The Mapping produces a canonical entity the model does not have.
    #[error("SyncFlow {flow}: Mapping {mapping} spec.produces: {source}")]
    Canonical {
        /// The flow.
        flow: String,
        /// The Mapping.
        mapping: String,
        /// Which entity.
        source: UnknownEntity,
    },
    /// The webhook signing secret is missing.
    #[error("SyncFlow {flow}: webhook signing secret: {source}")]
    Secret {
        /// The flow.
        flow: String,
        /// What is missing.
        source: Box<MissingSecret>,
    },
    /// A Connector's client (its credentials) cannot be set up.
    #[error("SyncFlow {flow}: {source}")]
    Connector {
        /// The flow.
        flow: String,
        /// Why.
        source: Box<ConnectError>,
    },
    /// A polled database cannot be set up.
    #[error("SyncFlow {flow}: {message}")]
    Database {
        /// The flow.
        flow: String,
        /// Why.
        message: String,
    },
    /// A target cannot be set up.
    #[error("SyncFlow {flow}: spec.targets[{index}]: {source}")]
    Target {
        /// The flow.
        flow: String,
        /// Which target.
        index: usize,
        /// Why.
        source: Box<TargetError>,
    },
}

/// One target with its mapping.
#[derive(Debug)]
pub struct FlowTarget {
    /// Its name (`spec.targets[].name`, or else its Connector's): what its queued
    /// records name it by.
    pub name: String,
    /// Where items go.
    pub sink: Sink,
    /// Canonical record → this target's payload.
    pub mapping: Option<Program>,
    /// The target Connector's quota, shared with every flow of this runner that sends
    /// to the same Connector.
    pub quota: Arc<Quota>,
    /// What it has done since the runner started (status).
    pub counters: TargetCounters,
    /// Wakes this target's delivery worker.
    pub wake: Notify,
}

/// The version compared by the stale guard when the flow's Mapping produces a canonical
/// entity and `spec.delivery.versionKey` is not set.
pub const DEFAULT_VERSION_KEY: &str = ".sourceVersion";

/// A flow ready to run.
#[derive(Debug)]
pub struct Flow {
    /// The resolved configuration.
    pub config: FlowConfig,
    /// Source payload → canonical record.
    pub mapping: Option<Program>,
    /// The schema of the canonical entity the mapping `produces`, compiled once: the
    /// validation gate every mapped record passes before it is queued.
    pub canonical: Option<Validator>,
    /// `delivery.orderingKey`.
    pub ordering_key: Option<Program>,
    /// `delivery.idempotencyKey`.
    pub idempotency_key: Option<Program>,
    /// `delivery.versionKey`.
    pub version_key: Option<Program>,
    /// The targets, in `spec.targets` order.
    pub targets: Vec<FlowTarget>,
    /// For a webhook trigger: how the source signs webhooks, and its keys (read again
    /// as the Secret rotates).
    pub webhook_keys: Option<WebhookKeys>,
    /// For a `sql` poll trigger: the source database (the poller reads it).
    pub source_database: Option<Database>,
    /// For a webhook trigger with `refetch`: how the full record is read.
    pub refetch: Option<Refetcher>,
    /// The clients of the Connectors this flow calls (targets, a polled source), by
    /// name: one per Connector, so a token or a failure is shared by all its uses.
    pub connectors: BTreeMap<String, Arc<ConnectorClient>>,
    /// Backpressure: a poll run or a file import pauses while the flow's backlog is
    /// above this (`spec.runner.queue.maxPending`), or the whole queue holds more than
    /// `spec.runner.queue.maxBytes` ([`Flow::queue_full`]).
    pub max_pending: Option<u64>,
    /// Wakes the prepare worker.
    pub wake: Notify,
    /// Tests set it to make the prepare worker panic: a real worker dying.
    #[cfg(test)]
    pub(crate) fail_prepare: std::sync::atomic::AtomicBool,
}

impl Flow {
    /// Why this flow's sources should stop adding to the queue for now, if they should:
    /// its backlog is above `max` records, or the queue holds more than
    /// `spec.runner.queue.maxBytes` (what makes a webhook answer 503). Reads the queue:
    /// call it on a blocking thread.
    pub fn queue_full(&self, queue: &Queue, max: u64) -> Option<String> {
        let max_bytes = self.config.spec.runner.queue.max_bytes;
        let held = queue.held_bytes();
        if held > max_bytes {
            return Some(format!("the queue holds {held} bytes, more than maxBytes ({max_bytes})"));
        }
        match queue.pending(self.name()) {
            Ok(pending) if pending > max => Some(format!("{pending} records wait, more than maxPending ({max})")),
            Ok(_) => None,
            Err(e) => {
                // Not knowing the backlog is no reason to stop reading the source.
                tracing::warn!(flow = %self.name(), error = %e, "cannot read the backlog; reading the source on");
                None
            }
        }
    }

    /// Whether this runner reads the flow's source `role` (`poll`, `file`) now: on a
    /// queue shared by several runners one of them does at a time (the others ask again
    /// every few seconds, and take over when it is gone).
    pub async fn leads(&self, queue: &Queue, role: &'static str) -> bool {
        let name = self.name().to_string();
        match queue.off_thread(move |q| q.leads(&name, role)).await {
            Ok(leads) => leads,
            Err(e) => {
                tracing::warn!(flow = %self.name(), source = role, error = %e, "cannot ask who reads the source");
                false
            }
        }
    }

    /// Compiles the flow's programs and sets up its targets.
    pub fn new(config: FlowConfig, secrets: &Secrets) -> Result<Self, FlowError> {
        let flow = config.name.clone();
        let compile = |field: String, code: &str, lookups| {
            Program::compile(code, lookups).map_err(|source| FlowError::Compile { flow: flow.clone(), field, source })
        };
        let no_lookups = Default::default();
        let mapping = match &config.spec.mapping_ref {
            Some(name) => {
                let m = config.mapping(name);
                Some(compile(format!("Mapping {name}"), &m.program, &m.lookups)?)
            }
            None => None,
        };
        let canonical = match config.spec.mapping_ref.as_ref().map(|name| (name, config.mapping(name))) {
            Some((name, m)) => match &m.produces {
                Some(p) => Some(Validator::new(&p.entity, &p.version).map_err(|source| FlowError::Canonical {
                    flow: flow.clone(),
                    mapping: name.clone(),
                    source,
                })?),
                None => None,
            },
            None => None,
        };
        let delivery = &config.spec.delivery;
        let ordering_key = match &delivery.ordering_key {
            Some(code) => Some(compile("spec.delivery.orderingKey".into(), code, &no_lookups)?),
            None => None,
        };
        let idempotency_key = match &delivery.idempotency_key {
            Some(code) => Some(compile("spec.delivery.idempotencyKey".into(), code, &no_lookups)?),
            None => None,
        };
        // Every canonical entity carries its source version: a flow whose Mapping produces
        // one gets the stale guard without having to ask for it.
        let version_key = match (&delivery.version_key, &canonical) {
            (Some(code), _) => Some(compile("spec.delivery.versionKey".into(), code, &no_lookups)?),
            (None, Some(_)) => {
                Some(compile("spec.delivery.versionKey (default)".into(), DEFAULT_VERSION_KEY, &no_lookups)?)
            }
            (None, None) => None,
        };
        let connectors = clients(&config, secrets)?;
        let mut targets = Vec::new();
        for (index, spec) in config.spec.targets.iter().enumerate() {
            let client = connectors[&spec.connector_ref].clone();
            let sink = Sink::new(&config, spec, client, secrets).map_err(|source| FlowError::Target {
                flow: flow.clone(),
                index,
                source: Box::new(source),
            })?;
            let mapping = match &spec.mapping_ref {
                Some(name) => {
                    let m = config.mapping(name);
                    Some(compile(format!("Mapping {name}"), &m.program, &m.lookups)?)
                }
                None => None,
            };
            let quota =
                Arc::new(Quota::new(sink.limits(config.connector(&spec.connector_ref).limits.as_ref()).as_ref()));
            targets.push(FlowTarget {
                name: spec.name().to_string(),
                sink,
                mapping,
                quota,
                counters: TargetCounters::default(),
                wake: Notify::new(),
            });
        }
        let source_name = &config.spec.source.connector_ref;
        let source = config.connector(source_name);
        let webhook_keys = match (&config.spec.source.trigger.webhook, &source.webhook) {
            (Some(_), Some(verification)) => Some(WebhookKeys::new(
                &flow,
                source_name,
                &config.namespace,
                verification.signature,
                &verification.secret_ref,
                verification.previous_secret_ref.as_ref(),
                secrets,
            )?),
            _ => None,
        };
        // The poll trigger itself is compiled by its poller (sources read flows, not the
        // reverse); its jq paths were checked when the flow was resolved.
        let source_database = match &config.spec.source.trigger.poll {
            Some(_) if source.kind == ConnectorType::Postgres => {
                let name = &config.spec.source.connector_ref;
                let database = Database::new(name, &config.namespace, source, secrets)
                    .map_err(|message| FlowError::Database { flow: flow.clone(), message })?;
                Some(database)
            }
            _ => None,
        };
        let refetch = match config.spec.source.trigger.webhook.as_ref().and_then(|w| w.refetch.as_ref()) {
            Some(refetch) => {
                let source = &config.spec.source.connector_ref;
                let quota = Arc::new(Quota::new(config.connector(source).limits.as_ref()));
                let retry = config.spec.delivery.retry.clone();
                Some(Refetcher::new(refetch, connectors[source].clone(), quota, retry).map_err(|source| {
                    FlowError::Compile {
                        flow: flow.clone(),
                        field: "spec.source.trigger.webhook.refetch.id".into(),
                        source,
                    }
                })?)
            }
            None => None,
        };
        let max_pending = config.spec.runner.queue.max_pending;
        Ok(Self {
            refetch,
            webhook_keys,
            config,
            mapping,
            canonical,
            ordering_key,
            idempotency_key,
            version_key,
            targets,
            source_database,
            connectors,
            max_pending: Some(max_pending),
            wake: Notify::new(),
            #[cfg(test)]
            fail_prepare: Default::default(),
        })
    }

    /// The flow's name (its key in the queue, metrics and the webhook path).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether the flow carries inventory: its Mapping produces `InventorySnapshot`. Each
    /// of its targets is then a sales channel, whose freshness the metrics report.
    pub fn is_inventory(&self) -> bool {
        let mapping = self.config.spec.mapping_ref.as_ref().map(|name| self.config.mapping(name));
        mapping.and_then(|m| m.produces.as_ref()).is_some_and(|p| p.entity == "InventorySnapshot")
    }
}

/// A client for each Connector the flow calls: every target's, and the source's when
/// it is polled or thin webhooks are refetched from it.
fn clients(config: &FlowConfig, secrets: &Secrets) -> Result<BTreeMap<String, Arc<ConnectorClient>>, FlowError> {
    let source = &config.spec.source;
    let refetched = source.trigger.webhook.as_ref().is_some_and(|w| w.refetch.is_some());
    let polled = (source.trigger.poll.is_some() || refetched).then_some(source.connector_ref.as_str());
    let targets = config.spec.targets.iter().map(|t| t.connector_ref.as_str());
    let mut clients = BTreeMap::new();
    for name in polled.into_iter().chain(targets) {
        if clients.contains_key(name) {
            continue;
        }
        let client = ConnectorClient::new(name, &config.namespace, config.connector(name), secrets)
            .map_err(|source| FlowError::Connector { flow: config.name.clone(), source: Box::new(source) })?;
        clients.insert(name.to_string(), Arc::new(client));
    }
    Ok(clients)
}

/// How long a previous webhook secret is accepted after a rotation (Shopify: 1 hour).
pub const ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// What the workers share.
#[derive(Clone, Debug)]
pub struct Workers {
    /// The queue.
    pub queue: Queue,
    /// The metrics.
    pub metrics: Metrics,
    /// Flips to `true` on shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// How often a runner that does not read its flow's source asks again whether it should.
pub const FOLLOWER_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// How sources run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceMode {
    /// Again and again, every interval, until shutdown.
    #[default]
    Continuous,
    /// One pass (a complete poll run, one scan of the directory), then the source task
    /// ends: a batch run (`entrepot serve --once`).
    Once,
}

/// Starts the prepare worker and one delivery worker per target, each supervised. (The
/// flow's source is started by the runtime: sources depend on flows, not the reverse.)
pub fn spawn(flow: Arc<Flow>, workers: &Workers, supervisor: &Supervisor) -> Vec<JoinHandle<()>> {
    let name = flow.name();
    let supervised = |worker: &str, task| {
        supervisor.spawn(Some(name), worker, Lifetime::UntilShutdown, workers.shutdown.clone(), task)
    };
    let mut spawned = vec![supervised("prepare", Box::pin(run_prepare(flow.clone(), workers.clone())) as Task)];
    for (index, target) in flow.targets.iter().enumerate() {
        let delivery = run_delivery(flow.clone(), index, workers.clone());
        spawned.push(supervised(&format!("delivery to target {}", target.name), Box::pin(delivery)));
    }
    spawned
}

/// Waits for `notify`, a shutdown, or `timeout`, whichever comes first; returns `false`
/// on shutdown.
async fn wait(notify: &Notify, shutdown: &mut watch::Receiver<bool>, timeout: std::time::Duration) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = notify.notified() => true,
        _ = tokio::time::sleep(timeout) => true,
        _ = shutdown.changed() => false,
    }
}
