//! Opening the flows' queue in NATS JetStream (`runner.queue.jetstream`): the servers and
//! the login from the flows' spec, this runner's name among the flow's runners, and the
//! streams and buckets created when missing (the operator creates them in a cluster; the
//! same plan, so this changes nothing there). Each target Connector's quota is then shared
//! with every runner sending to it (docs/scaling.md, "Shared quota").

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use entrepot_api::jetstream::Layout;

use crate::{
    flow::Flow,
    queue::{
        JetStreamFlow, JetStreamOptions, JetStreamQueue, LeaseTiming, NatsAuth, Queue, QueueError, SharedConnector,
    },
    secrets::Secrets,
};

/// Why the flows' JetStream queue cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    /// One runner's flows must share one queue.
    #[error(
        "flows {0} and {1} use different queues (embedded, or other NATS servers or logins): one runner's flows \
         share one queue; run them in separate runners"
    )]
    Mixed(String, String),
    /// No server to connect to.
    #[error(
        "SyncFlow {0}: spec.runner.queue.jetstream.url is not set (in a cluster, the operator fills it from the Helm value nats.url)"
    )]
    NoUrl(String),
    /// A credential cannot be read.
    #[error("SyncFlow {flow}: {field}: {message}")]
    Secret {
        /// The flow.
        flow: String,
        /// The field naming the Secret.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The lease timings in `ENTREPOT_JETSTREAM_LEASES` cannot be read.
    #[error("ENTREPOT_JETSTREAM_LEASES: {0}")]
    Leases(String),
    /// NATS refused or failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The queue of `flows` when they use JetStream; `None` when they all use the embedded
/// queue.
pub(super) fn open(flows: &BTreeMap<String, Arc<Flow>>, secrets: &Secrets) -> Result<Option<Queue>, JetStreamError> {
    let uses = |f: &Arc<Flow>| f.config.spec.runner.queue.jetstream.is_some();
    let (Some(embedded), Some(shared)) = (flows.iter().find(|(_, f)| !uses(f)), flows.iter().find(|(_, f)| uses(f)))
    else {
        if !flows.values().any(uses) {
            return Ok(None);
        }
        return open_shared(flows, secrets).map(Some);
    };
    Err(JetStreamError::Mixed(embedded.0.clone(), shared.0.clone()))
}

fn open_shared(flows: &BTreeMap<String, Arc<Flow>>, secrets: &Secrets) -> Result<Queue, JetStreamError> {
    let mut chosen: Option<(String, String, NatsAuth)> = None;
    let mut jetstream_flows = Vec::new();
    for (name, flow) in flows {
        let Some(js) = &flow.config.spec.runner.queue.jetstream else { continue };
        let url = js.url.clone().filter(|u| !u.trim().is_empty()).ok_or_else(|| JetStreamError::NoUrl(name.clone()))?;
        let namespace = &flow.config.namespace;
        let secret = |field: &'static str, selector| {
            secrets.get(namespace, selector).map_err(|e| JetStreamError::Secret {
                flow: name.clone(),
                field,
                message: e.to_string(),
            })
        };
        let auth = match (&js.credentials_secret_ref, &js.token_secret_ref) {
            (Some(creds), _) => {
                NatsAuth::Credentials(secret("spec.runner.queue.jetstream.credentialsSecretRef", creds)?)
            }
            (None, Some(token)) => {
                NatsAuth::Token(secret("spec.runner.queue.jetstream.tokenSecretRef", token)?.trim().to_string())
            }
            (None, None) => NatsAuth::None,
        };
        let login = format!("{url}|{:?}|{:?}", js.credentials_secret_ref, js.token_secret_ref);
        match &chosen {
            Some((other, same, _)) if *same != login => return Err(JetStreamError::Mixed(other.clone(), name.clone())),
            Some(_) => {}
            None => chosen = Some((name.clone(), login, auth)),
        }
        let layout = Layout::new(namespace, name);
        jetstream_flows.push((
            url,
            JetStreamFlow {
                name: name.clone(),
                namespace: namespace.clone(),
                partitions: js.partitions,
                create: Some(layout.plan(&flow.config.spec, js.replicas.unwrap_or(1))),
            },
        ));
    }
    let (Some((_, _, auth)), Some((servers, _))) = (chosen, jetstream_flows.first()) else {
        unreachable!("called with at least one JetStream flow")
    };
    let servers = servers.clone();
    let options = JetStreamOptions {
        servers,
        auth,
        member: member(),
        flows: jetstream_flows.into_iter().map(|(_, f)| f).collect(),
        leases: leases()?,
        connectors: shared_connectors(flows),
    };
    // NATS may be starting too (a cluster electing its leaders, a server restarting):
    // try for a while before giving up, and say so.
    let started = std::time::Instant::now();
    loop {
        match JetStreamQueue::connect(options.clone()) {
            Ok(queue) => return Ok(Queue::new(queue)),
            Err(e) if started.elapsed() < CONNECT_PATIENCE => {
                tracing::warn!(servers = %options.servers, error = %e, "NATS JetStream not ready; trying again");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The target Connectors whose quota this runner shares with the other runners sending to
/// them: the flows of this runner that send to one Connector share one quota, with their
/// priorities.
fn shared_connectors(flows: &BTreeMap<String, Arc<Flow>>) -> Vec<SharedConnector> {
    let mut connectors: Vec<SharedConnector> = Vec::new();
    for flow in flows.values() {
        let Some(js) = &flow.config.spec.runner.queue.jetstream else { continue };
        let (priority, namespace) = (flow.config.spec.delivery.priority, &flow.config.namespace);
        let replicas = js.replicas.unwrap_or(1);
        for target in &flow.targets {
            match connectors.iter_mut().find(|c| Arc::ptr_eq(&c.quota, &target.quota)) {
                Some(shared) => {
                    if !shared.priorities.contains(&priority) {
                        shared.priorities.push(priority);
                    }
                    if let Some(plan) = &mut shared.create {
                        plan.replicas = plan.replicas.max(usize::from(replicas.max(1)));
                    }
                }
                None => connectors.push(SharedConnector {
                    namespace: namespace.clone(),
                    name: target.sink.connector().to_string(),
                    quota: target.quota.clone(),
                    priorities: vec![priority],
                    create: Some(Layout::connector_plan(namespace, target.sink.connector(), replicas)),
                }),
            }
        }
    }
    connectors
}

/// How long a starting runner waits for NATS before it gives up (and is restarted).
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// This runner's name among its flow's runners: `ENTREPOT_RUNNER_NAME`, else the pod's
/// name (`POD_NAME`, set by the operator), else the host's name and the process id.
fn member() -> String {
    let named = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    named("ENTREPOT_RUNNER_NAME").or_else(|| named("POD_NAME")).unwrap_or_else(|| {
        let host = named("HOSTNAME").unwrap_or_else(|| "runner".into());
        format!("{host}-{}", std::process::id())
    })
}

/// The lease timings: the defaults, or `ENTREPOT_JETSTREAM_LEASES=<ttl>,<tick>,<grace>`
/// in milliseconds (how fast partitions move when a runner dies; see docs/scaling.md).
fn leases() -> Result<LeaseTiming, JetStreamError> {
    let Ok(text) = std::env::var("ENTREPOT_JETSTREAM_LEASES") else { return Ok(LeaseTiming::default()) };
    let parts: Vec<u64> =
        text.split(',').map(|p| p.trim().parse::<u64>()).collect::<Result<_, _>>().map_err(|e| {
            JetStreamError::Leases(format!("`{text}`: {e} (want <ttl>,<tick>,<grace> in milliseconds)"))
        })?;
    match parts[..] {
        [ttl, tick, grace] if tick > 0 && tick < ttl => Ok(LeaseTiming {
            ttl: Duration::from_millis(ttl),
            tick: Duration::from_millis(tick),
            grace: Duration::from_millis(grace),
        }),
        _ => {
            Err(JetStreamError::Leases(format!("`{text}`: want <ttl>,<tick>,<grace> in milliseconds, tick below ttl")))
        }
    }
}
