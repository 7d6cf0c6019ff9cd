//! A flow whose queue is in NATS JetStream (`spec.runner.queue.jetstream`), the pure part:
//! the operator's defaults filled into the flow (so the rendered runner configuration
//! needs no operator configuration), the streams and buckets the flow needs (from
//! [`entrepot_api::jetstream`]: its own, and the quota bucket of each Connector it sends
//! to, which it shares with every other flow sending there), which of those Connector
//! buckets go with a deleted flow, and what to do with the flow's finalizer. The I/O with
//! NATS is in [`crate::nats_io`]; the reconcile steps that use both in [`super::queue`].

use entrepot_api::{
    config::FlowConfig,
    jetstream::{Layout, StreamPlan},
    resource::{JetStreamQueueSpec, SecretKeySelector, SyncFlowSpec},
};
use serde::Deserialize;

use super::validate::Invalid;
use crate::nats_io::redact;

/// The finalizer a JetStream flow carries, so that its streams and buckets are deleted
/// before the SyncFlow is. Only JetStream flows get it.
pub const FINALIZER: &str = "entrepot.io/jetstream";

/// Copies of each stream and bucket when neither the flow nor the chart says: what a
/// NATS cluster of three needs to keep an acknowledged record through the loss of one
/// server.
pub const DEFAULT_REPLICAS: u8 = 3;

/// The field that names a flow's NATS servers, for messages.
const URL_FIELD: &str = "spec.runner.queue.jetstream.url";

/// The chart's `nats.*` values, as the runner defaults file carries them: what a
/// JetStream flow gets unless it says otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsDefaults {
    /// NATS server URLs, comma-separated (Helm value `nats.url`).
    #[serde(default)]
    pub url: Option<String>,
    /// Copies of each stream and bucket (Helm value `nats.replicas`).
    #[serde(default)]
    pub replicas: Option<u8>,
    /// The credentials file the runners connect with (Helm value `nats.credentialsSecret`).
    #[serde(default)]
    pub credentials_secret: Option<SecretKeySelector>,
}

/// `config` with its JetStream settings complete: `url` and `replicas` from `defaults`
/// when the flow leaves them out, and the chart's credentials when the flow names
/// neither credentials nor a token. A flow without JetStream is returned as it is.
///
/// Refuses a JetStream flow whose servers nobody names, and server URLs that do not
/// parse or that carry a password (credentials belong in a Secret).
pub fn with_defaults(mut config: FlowConfig, defaults: &NatsDefaults) -> Result<FlowConfig, Invalid> {
    let Some(queue) = config.spec.runner.queue.jetstream.as_mut() else {
        return Ok(config);
    };
    let url = effective_url(Some(queue), defaults).ok_or_else(|| Invalid::Field {
        flow: config.name.clone(),
        field: URL_FIELD.into(),
        message: "the flow's queue is in NATS JetStream but no NATS server is named: set \
                  spec.runner.queue.jetstream.url, or the Helm value nats.url for every flow"
            .into(),
    })?;
    check_url(&url).map_err(|message| Invalid::Field {
        flow: config.name.clone(),
        field: if queue.url.as_deref().is_some_and(|u| !u.trim().is_empty()) {
            URL_FIELD.into()
        } else {
            "nats.url (Helm value)".into()
        },
        message,
    })?;
    queue.url = Some(url);
    queue.replicas = Some(queue.replicas.or(defaults.replicas).unwrap_or(DEFAULT_REPLICAS));
    if queue.credentials_secret_ref.is_none() && queue.token_secret_ref.is_none() {
        queue.credentials_secret_ref = defaults.credentials_secret.clone();
    }
    Ok(config)
}

/// The NATS servers of a flow: its own, else the operator's; `None` when neither names one.
pub fn effective_url(queue: Option<&JetStreamQueueSpec>, defaults: &NatsDefaults) -> Option<String> {
    let named = |url: Option<&String>| url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
    named(queue.and_then(|q| q.url.as_ref())).or_else(|| named(defaults.url.as_ref()))
}

/// Each comma-separated server must parse as a NATS URL without a user or password.
fn check_url(url: &str) -> Result<(), String> {
    for server in url.split(',').map(str::trim) {
        let parsed: async_nats::ServerAddr = server.parse().map_err(|e| {
            format!("`{}` is not a NATS server URL ({e}); write it like nats://nats.nats:4222", redact(server))
        })?;
        if parsed.has_user_pass() {
            return Err(format!(
                "`{}` carries a user and password; put the credentials in a Secret and name it in \
                 credentialsSecretRef or tokenSecretRef",
                redact(server)
            ));
        }
    }
    Ok(())
}

/// Where a JetStream flow's queue lives and what it must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    /// The NATS servers (comma-separated).
    pub url: String,
    /// The names of the flow's streams and buckets.
    pub layout: Layout,
    /// What each of the flow's own streams and buckets must be.
    pub plans: Vec<StreamPlan>,
    /// The quota bucket of each Connector the flow sends to
    /// ([`Layout::connector_plan`]), shared with every other flow sending there.
    pub connector_plans: Vec<StreamPlan>,
}

/// The queue of a flow whose defaults [`with_defaults`] filled in; `None` for a flow
/// without JetStream.
pub fn queue_of(config: &FlowConfig) -> Option<Queue> {
    let queue = config.spec.runner.queue.jetstream.as_ref()?;
    let replicas = queue.replicas.unwrap_or(DEFAULT_REPLICAS);
    let layout = Layout::new(&config.namespace, &config.name);
    let plans = layout.plan(&config.spec, replicas);
    let connector_plans = target_connectors(&config.spec)
        .into_iter()
        .map(|connector| Layout::connector_plan(&config.namespace, connector, replicas))
        .collect();
    Some(Queue { url: queue.url.clone()?, layout, plans, connector_plans })
}

/// The Connectors a flow sends to (its targets' `connectorRef`s), each once: those whose
/// quota its runners share through NATS when its queue is in JetStream.
pub fn target_connectors(spec: &SyncFlowSpec) -> Vec<&str> {
    let mut connectors: Vec<&str> = Vec::new();
    for target in &spec.targets {
        if !connectors.contains(&target.connector_ref.as_str()) {
            connectors.push(&target.connector_ref);
        }
    }
    connectors
}

/// The Connectors whose quota bucket goes with `leaving`, a JetStream flow being deleted:
/// those it sends to that no flow in `staying` sends to through JetStream. `staying` is
/// every other SyncFlow of the namespace not being deleted, `None` for one whose spec
/// cannot be read (it may be one, so then no bucket goes).
///
/// Whatever NATS the other flows name: two URLs can reach one server, and a bucket
/// deleted under running runners stops their sending, where one left behind costs a few
/// bytes.
pub fn unshared_connectors<'a, 'b>(
    leaving: &'a SyncFlowSpec,
    staying: impl IntoIterator<Item = Option<&'b SyncFlowSpec>>,
) -> Vec<&'a str> {
    let mut unshared = target_connectors(leaving);
    for other in staying {
        let Some(other) = other else { return Vec::new() };
        if other.runner.queue.jetstream.is_some() {
            let theirs = target_connectors(other);
            unshared.retain(|connector| !theirs.contains(connector));
        }
    }
    unshared
}

/// What a reconcile does with the flow's [`FINALIZER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizerStep {
    /// A JetStream flow without it: add it before anything is created in NATS.
    Add,
    /// Nothing to do: it is there and needed, or absent and not needed.
    Keep,
    /// The flow is being deleted: delete its streams and buckets, then remove it.
    CleanUp,
    /// The flow no longer uses JetStream: remove it, leaving the streams (and whatever
    /// records they still hold) where they are.
    Release,
}

/// The step for a flow that has the finalizer or not, is being deleted or not, and uses
/// JetStream or not (as far as its spec can be read).
pub fn finalizer_step(has_finalizer: bool, deleting: bool, uses_jetstream: bool) -> FinalizerStep {
    match (has_finalizer, deleting, uses_jetstream) {
        (true, true, _) => FinalizerStep::CleanUp,
        (false, false, true) => FinalizerStep::Add,
        (true, false, false) => FinalizerStep::Release,
        _ => FinalizerStep::Keep,
    }
}

#[cfg(test)]
mod tests {
    use entrepot_api::{jetstream::StreamKind, resource::TargetSpec};

    use super::*;
    use crate::test_support::fixtures;

    fn config(jetstream: Option<JetStreamQueueSpec>) -> FlowConfig {
        let f = fixtures::orders();
        let mut spec = f.flow().spec.0.clone();
        spec.runner.queue.jetstream = jetstream;
        FlowConfig {
            name: "orders".into(),
            namespace: "retail".into(),
            spec,
            connectors: Default::default(),
            mappings: Default::default(),
        }
    }

    fn chart() -> NatsDefaults {
        NatsDefaults {
            url: Some("nats://nats.nats:4222".into()),
            replicas: Some(1),
            credentials_secret: Some(SecretKeySelector { name: "nats-runner".into(), key: "runner.creds".into() }),
        }
    }

    fn filled(config: &FlowConfig) -> &JetStreamQueueSpec {
        config.spec.runner.queue.jetstream.as_ref().unwrap()
    }

    #[test]
    fn a_flow_without_jetstream_is_left_alone() {
        let plain = config(None);
        assert_eq!(with_defaults(plain.clone(), &chart()).unwrap(), plain);
        assert_eq!(queue_of(&plain), None);
    }

    #[test]
    fn the_chart_fills_what_the_flow_leaves_out() {
        let c = with_defaults(config(Some(JetStreamQueueSpec::default())), &chart()).unwrap();
        let q = filled(&c);
        assert_eq!(q.url.as_deref(), Some("nats://nats.nats:4222"));
        assert_eq!(q.replicas, Some(1));
        assert_eq!(q.credentials_secret_ref.as_ref().map(|s| s.name.as_str()), Some("nats-runner"));
        // Nothing from the chart: three copies, no credentials.
        let bare = NatsDefaults { url: Some("nats://n:4222".into()), ..NatsDefaults::default() };
        let c = with_defaults(config(Some(JetStreamQueueSpec::default())), &bare).unwrap();
        assert_eq!((filled(&c).replicas, filled(&c).credentials_secret_ref.clone()), (Some(DEFAULT_REPLICAS), None));
    }

    #[test]
    fn what_the_flow_says_wins_over_the_chart() {
        let token = SecretKeySelector { name: "nats".into(), key: "token".into() };
        let own = JetStreamQueueSpec {
            url: Some("nats://a:4222,nats://b:4222".into()),
            token_secret_ref: Some(token.clone()),
            replicas: Some(5),
            ..JetStreamQueueSpec::default()
        };
        let c = with_defaults(config(Some(own)), &chart()).unwrap();
        let q = filled(&c);
        assert_eq!(q.url.as_deref(), Some("nats://a:4222,nats://b:4222"));
        assert_eq!(q.replicas, Some(5));
        assert_eq!(q.token_secret_ref, Some(token));
        assert_eq!(q.credentials_secret_ref, None, "a token of its own: the chart's credentials are not added");
    }

    #[test]
    fn no_server_anywhere_is_refused_naming_both_places() {
        let err = with_defaults(config(Some(JetStreamQueueSpec::default())), &NatsDefaults::default()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("spec.runner.queue.jetstream.url") && message.contains("nats.url"), "{message}");
        let blank = NatsDefaults { url: Some("  ".into()), ..NatsDefaults::default() };
        assert!(with_defaults(config(Some(JetStreamQueueSpec::default())), &blank).is_err());
    }

    #[test]
    fn a_url_with_a_password_or_garbage_is_refused_without_repeating_the_password() {
        let with_password =
            JetStreamQueueSpec { url: Some("nats://runner:hunter2@nats:4222".into()), ..JetStreamQueueSpec::default() };
        let message = with_defaults(config(Some(with_password)), &chart()).unwrap_err().to_string();
        assert!(message.contains(URL_FIELD) && message.contains("Secret"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let garbage = JetStreamQueueSpec { url: Some("nats://bad host:x".into()), ..JetStreamQueueSpec::default() };
        assert!(with_defaults(config(Some(garbage)), &chart()).unwrap_err().to_string().contains(URL_FIELD));
        assert_eq!(redact("nats://u:p@h:4222/x,t@g"), "nats://***@h:4222/x,***@g");
        assert_eq!(redact("h:4222, nats://b:4222"), "h:4222, nats://b:4222");
    }

    #[test]
    fn the_queue_is_the_layouts_plan_with_the_effective_replicas() {
        let c = with_defaults(config(Some(JetStreamQueueSpec::default())), &chart()).unwrap();
        let queue = queue_of(&c).unwrap();
        assert_eq!(queue.url, "nats://nats.nats:4222");
        assert_eq!(queue.plans, Layout::new("retail", "orders").plan(&c.spec, 1));
        let kinds: Vec<(&str, StreamKind)> = queue.plans.iter().map(|p| (p.name.as_str(), p.kind)).collect();
        assert_eq!(kinds[0], ("entrepot_retail_orders_work", StreamKind::Stream));
        assert!(queue.plans.iter().all(|p| p.replicas == 1));
        // And the quota bucket of its one target Connector, the source's left out.
        assert_eq!(queue.connector_plans, [Layout::connector_plan("retail", "erp", 1)]);
        assert_eq!(queue.connector_plans[0].name, "entrepot_retail_connector_erp_quota");
    }

    /// The fixture's spec with targets sending to `connectors`, its queue in JetStream or not.
    fn sending_to(connectors: &[&str], jetstream: bool) -> SyncFlowSpec {
        let mut spec = config(jetstream.then(JetStreamQueueSpec::default)).spec;
        let target = spec.targets[0].clone();
        spec.targets = connectors
            .iter()
            .enumerate()
            .map(|(i, c)| TargetSpec { name: Some(format!("t{i}")), connector_ref: (*c).into(), ..target.clone() })
            .collect();
        spec
    }

    #[test]
    fn each_target_connector_gets_one_quota_bucket() {
        let spec = sending_to(&["erp", "wms", "erp"], true);
        assert_eq!(target_connectors(&spec), ["erp", "wms"]);
        let c = with_defaults(FlowConfig { spec, ..config(None) }, &chart()).unwrap();
        let names: Vec<String> = queue_of(&c).unwrap().connector_plans.into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["entrepot_retail_connector_erp_quota", "entrepot_retail_connector_wms_quota"]);
    }

    #[test]
    fn a_connector_bucket_goes_only_when_no_staying_jetstream_flow_sends_there() {
        let leaving = sending_to(&["erp", "wms", "tax"], true);
        assert_eq!(unshared_connectors(&leaving, []), ["erp", "wms", "tax"], "alone: all go");
        let jetstream_to_erp = sending_to(&["erp"], true);
        let embedded_to_wms = sending_to(&["wms"], false);
        assert_eq!(
            unshared_connectors(&leaving, [Some(&jetstream_to_erp), Some(&embedded_to_wms)]),
            ["wms", "tax"],
            "erp is still shared; an embedded flow shares no quota through NATS"
        );
        assert_eq!(
            unshared_connectors(&leaving, [Some(&jetstream_to_erp), None]),
            Vec::<&str>::new(),
            "a flow that cannot be read may send anywhere: every bucket stays"
        );
    }

    #[test]
    fn the_finalizer_goes_with_jetstream_and_holds_the_flow_until_its_streams_are_gone() {
        use FinalizerStep::*;
        assert_eq!(finalizer_step(false, false, true), Add);
        assert_eq!(finalizer_step(true, false, true), Keep);
        assert_eq!(finalizer_step(false, false, false), Keep, "an embedded flow never gets it");
        assert_eq!(finalizer_step(true, false, false), Release);
        assert_eq!(finalizer_step(true, true, true), CleanUp);
        assert_eq!(finalizer_step(true, true, false), CleanUp, "an unreadable flow is still cleaned up");
        assert_eq!(finalizer_step(false, true, true), Keep, "deleted before it was added: nothing was created");
    }
}
