//! Validation: whether a SyncFlow and what it references can be run. Pure: the
//! referenced objects are passed in, already read.

use crate::error::Category;
use std::collections::{BTreeMap, BTreeSet};

use entrepot_api::{
    config::{FlowConfig, ResolveError},
    mapping::{Program, test_compiled},
    resource::{MappingSpec, SecretKeySelector, SyncFlowSpec},
};

use super::{names::RUNNER_SUFFIX, reason::Reason};

/// The Connectors and Mappings a SyncFlow references, as read from its namespace: a
/// name is absent when the object does not exist, and maps to an error text when the
/// object exists but cannot be read as its kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct References {
    /// Connectors by name.
    pub connectors: BTreeMap<String, Result<entrepot_api::resource::ConnectorSpec, String>>,
    /// Mappings by name.
    pub mappings: BTreeMap<String, Result<MappingSpec, String>>,
}

/// Why a SyncFlow cannot be run as written. Reported as `Stalled=True` on the flow;
/// it takes a change to the flow or to what it references to get further.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// A reference is missing or does not fit (the runner's own resolution rules).
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The SyncFlow itself cannot be read as a SyncFlow.
    #[error("SyncFlow {flow}: the spec cannot be read: {error}; fix the field it names")]
    UnreadableSpec {
        /// The flow.
        flow: String,
        /// The parser's message.
        error: String,
    },
    /// A referenced object exists but cannot be read as its kind.
    #[error("SyncFlow {flow}: {kind} `{name}` cannot be read: {error}; fix the field it names in that {kind}")]
    UnreadableReference {
        /// The flow.
        flow: String,
        /// `Connector` or `Mapping`.
        kind: &'static str,
        /// The referenced object.
        name: String,
        /// The parser's message.
        error: String,
    },
    /// A referenced Mapping's program does not compile.
    #[error(
        "SyncFlow {flow}: Mapping `{mapping}` does not compile: {error}; the flow's runner keeps its last good \
         configuration until the Mapping is fixed"
    )]
    MappingDoesNotCompile {
        /// The flow.
        flow: String,
        /// The Mapping.
        mapping: String,
        /// The compiler's message.
        error: String,
    },
    /// A referenced Mapping fails its own tests.
    #[error(
        "SyncFlow {flow}: Mapping `{mapping}` fails {failed} of its tests (first: `{first}`: {diff}); the flow's \
         runner keeps its last good configuration until the Mapping is fixed"
    )]
    MappingTestsFailing {
        /// The flow.
        flow: String,
        /// The Mapping.
        mapping: String,
        /// How many tests failed.
        failed: usize,
        /// The first failing test's name.
        first: String,
        /// The first line of its diff (bounded).
        diff: String,
    },
    /// A field is valid for the schema but cannot be rendered into a workload.
    #[error("SyncFlow {flow}: {field}: {message}")]
    Field {
        /// The flow.
        flow: String,
        /// The field at fault.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl From<Invalid> for crate::error::Error {
    fn from(invalid: Invalid) -> Self {
        let category = if invalid.is_missing_reference() { Category::ReferenceMissing } else { Category::InvalidSpec };
        Self::refused(category, invalid)
    }
}

impl Invalid {
    /// The condition reason: `ConnectorNotFound`, `MappingNotFound`, `MappingInvalid`,
    /// `MappingTestsFailing` or `InvalidSpec`.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Resolve(ResolveError::ConnectorNotFound { .. }) => Reason::ConnectorNotFound,
            Self::Resolve(ResolveError::MappingNotFound { .. }) => Reason::MappingNotFound,
            Self::MappingDoesNotCompile { .. } => Reason::MappingInvalid,
            Self::MappingTestsFailing { .. } => Reason::MappingTestsFailing,
            _ => Reason::InvalidSpec,
        }
    }

    /// Whether the flow waits for a referenced object to be created.
    pub fn is_missing_reference(&self) -> bool {
        matches!(self, Self::Resolve(ResolveError::ConnectorNotFound { .. } | ResolveError::MappingNotFound { .. }))
    }
}

/// The shape a CronJob's schedule must have: five fields (minute, hour, day of month,
/// month, day of week) of numbers, names, `*`, ranges, lists and steps, or one of the
/// macros (`@hourly`...). The API server checks the values when the CronJob is applied;
/// this catches the common mistakes with a message that names the field.
pub fn check_cron(schedule: &str) -> Result<(), String> {
    const MACROS: [&str; 7] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];
    let schedule = schedule.trim();
    if schedule.starts_with('@') {
        return if MACROS.contains(&schedule) {
            Ok(())
        } else {
            Err(format!("`{schedule}` is not a cron macro; use one of {}", MACROS.join(", ")))
        };
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "`{schedule}` has {} fields; a schedule has five: minute hour day-of-month month day-of-week (e.g. `0 2 * * *`)",
            fields.len()
        ));
    }
    let names = ["minute", "hour", "day of month", "month", "day of week"];
    for (field, name) in fields.iter().zip(names) {
        let valid = field.split(',').all(|part| {
            let (range, step) = part.split_once('/').unwrap_or((part, "1"));
            let range_ok = range == "*"
                || range == "?"
                || range.split('-').all(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric()))
                    && range.split('-').count() <= 2;
            range_ok && !step.is_empty() && step.chars().all(|c| c.is_ascii_digit())
        });
        if !valid {
            return Err(format!("`{schedule}`: the {name} field `{field}` is not a cron value, range, list or step"));
        }
    }
    Ok(())
}

/// Longest SyncFlow name whose `<name>-runner` still fits a Service name (63 characters).
pub const MAX_FLOW_NAME: usize = 63 - RUNNER_SUFFIX.len();

/// Resolves a flow against what it references and checks that the operator can render
/// it into a runner workload.
pub fn validate(name: &str, namespace: &str, spec: &SyncFlowSpec, refs: &References) -> Result<FlowConfig, Invalid> {
    // Service names are DNS-1035 labels: the runner Service would be refused.
    if name.len() > MAX_FLOW_NAME || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Invalid::Field {
            flow: name.into(),
            field: "metadata.name".into(),
            message: format!(
                "the runner Service `{name}{RUNNER_SUFFIX}` needs a name of at most 63 characters starting \
                 with a letter: rename the SyncFlow (at most {MAX_FLOW_NAME} characters, starting with a letter)"
            ),
        });
    }
    // An object that exists but cannot be read is not "not found": say what is wrong with it.
    for connector in spec.connector_refs() {
        if let Some(Err(error)) = refs.connectors.get(connector) {
            return Err(unreadable(name, "Connector", connector, error));
        }
    }
    for mapping in spec.mapping_refs() {
        if let Some(Err(error)) = refs.mappings.get(mapping) {
            return Err(unreadable(name, "Mapping", mapping, error));
        }
    }
    let config = FlowConfig::resolve(
        name,
        namespace,
        spec,
        |n| refs.connectors.get(n).and_then(|r| r.as_ref().ok()).cloned(),
        |n| refs.mappings.get(n).and_then(|r| r.as_ref().ok()).cloned(),
    )?;

    // A Mapping that fails its own tests never reaches a runner: the last good one runs on.
    for (mapping, mapping_spec) in &config.mappings {
        check_mapping(name, mapping, mapping_spec)?;
    }

    if let Some(file) = &spec.source.trigger.file {
        let field = |f: &str| format!("spec.source.trigger.file.{f}");
        if file.volume_claim_name.as_deref().is_none_or(str::is_empty) {
            return Err(Invalid::Field {
                flow: name.into(),
                field: field("volumeClaimName"),
                message: format!(
                    "in a cluster the files must be on a volume: name the PersistentVolumeClaim the files are \
                     dropped on, and the operator mounts it at {}",
                    file.directory
                ),
            });
        }
        if !file.processed_directory().starts_with(&file.directory) {
            return Err(Invalid::Field {
                flow: name.into(),
                field: field("processedDirectory"),
                message: format!(
                    "must be inside {} (the claim's mount) so imported files can be moved there; leave it out \
                     for {}/processed",
                    file.directory, file.directory
                ),
            });
        }
    }
    if let Some(schedule) = spec.schedule.as_deref()
        && let Err(message) = check_cron(schedule)
    {
        return Err(Invalid::Field { flow: name.into(), field: "spec.schedule".into(), message });
    }
    if let Some(storage) = spec.runner.queue.embedded.storage.as_ref().filter(|s| !is_quantity(s)) {
        return Err(Invalid::Field {
            flow: name.into(),
            field: "spec.runner.queue.embedded.storage".into(),
            message: format!("`{storage}` is not a Kubernetes quantity; write it like 5Gi or 500Mi"),
        });
    }

    // Two Secret keys whose names differ only in punctuation would share one variable.
    let mut by_env: BTreeMap<String, SecretKeySelector> = BTreeMap::new();
    for selector in secret_refs(&config) {
        if let Some(first) = by_env.insert(selector.env_var(), selector.clone()) {
            return Err(Invalid::Field {
                flow: name.into(),
                field: "secretRef".into(),
                message: format!(
                    "Secret keys {}/{} and {}/{} would both reach the runner as {}; rename one of the \
                     Secrets or keys",
                    first.name,
                    first.key,
                    selector.name,
                    selector.key,
                    selector.env_var()
                ),
            });
        }
    }
    Ok(config)
}

/// Compiles a referenced Mapping and runs its declared tests, as the Mapping
/// controller does for the Mapping's own status.
fn check_mapping(flow: &str, mapping: &str, spec: &MappingSpec) -> Result<(), Invalid> {
    const MAX_DIFF_IN_MESSAGE: usize = 256;
    let program = Program::compile(&spec.program, &spec.lookups).map_err(|e| Invalid::MappingDoesNotCompile {
        flow: flow.into(),
        mapping: mapping.into(),
        error: crate::resources::cut(&e.0, MAX_DIFF_IN_MESSAGE),
    })?;
    let report = test_compiled(&program, spec);
    match report.failures.first() {
        None => Ok(()),
        Some(first) => Err(Invalid::MappingTestsFailing {
            flow: flow.into(),
            mapping: mapping.into(),
            failed: report.failures.len(),
            first: first.name.clone(),
            diff: crate::resources::cut(first.diff.lines().next().unwrap_or_default(), MAX_DIFF_IN_MESSAGE),
        }),
    }
}

fn unreadable(flow: &str, kind: &'static str, name: &str, error: &str) -> Invalid {
    Invalid::UnreadableReference { flow: flow.into(), kind, name: name.into(), error: error.into() }
}

/// Every Secret key the flow references: its Connectors' (auth, webhook signing, a
/// database's CA) and its JetStream queue's (credentials or token), sorted and without
/// repeats. The runner reads each as a file of its secrets volume.
pub fn secret_refs(config: &FlowConfig) -> BTreeSet<SecretKeySelector> {
    let mut refs = BTreeSet::new();
    if let Some(queue) = &config.spec.runner.queue.jetstream {
        refs.extend(queue.credentials_secret_ref.iter().chain(&queue.token_secret_ref).cloned());
    }
    for connector in config.connectors.values() {
        if let Some(auth) = &connector.auth {
            refs.extend(auth.secret_refs().into_iter().cloned());
        }
        if let Some(webhook) = &connector.webhook {
            refs.insert(webhook.secret_ref.clone());
            refs.extend(webhook.previous_secret_ref.clone());
        }
        if let Some(ca) = connector.database.as_ref().and_then(|d| d.ca_secret_ref.as_ref()) {
            refs.insert(ca.clone());
        }
    }
    refs
}

/// Whether `text` is a Kubernetes quantity in the forms people write: a decimal number
/// with an optional binary or decimal suffix (`5Gi`, `500M`, `1.5Gi`, `100`).
fn is_quantity(text: &str) -> bool {
    const SUFFIXES: [&str; 14] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "m", ""];
    SUFFIXES.iter().any(|suffix| {
        text.strip_suffix(suffix).is_some_and(|number| {
            let mut parts = number.splitn(2, '.');
            let whole = parts.next().unwrap_or_default();
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            digits(whole) && parts.next().is_none_or(digits)
        })
    })
}

#[cfg(test)]
mod tests {
    use entrepot_api::resource::{BasicAuth, ConnectorAuth, OAuth2ClientCredentials};

    use super::*;
    use crate::test_support::fixtures;

    fn refs_of(fixture: &fixtures::Fixture) -> References {
        References {
            connectors: fixture
                .connectors
                .iter()
                .map(|c| (c.metadata.name.clone().unwrap(), Ok(c.spec.0.clone())))
                .collect(),
            mappings: fixture
                .mappings
                .iter()
                .map(|m| (m.metadata.name.clone().unwrap(), Ok(m.spec.0.clone())))
                .collect(),
        }
    }

    #[test]
    fn a_complete_flow_resolves() {
        let f = fixtures::orders();
        let config = validate("orders", "retail", &f.flow().spec, &refs_of(&f)).unwrap();
        assert_eq!(config.connectors.len(), 2);
        assert_eq!(config.mappings.len(), 2);
    }

    #[test]
    fn a_missing_connector_names_the_field() {
        let f = fixtures::orders();
        let mut refs = refs_of(&f);
        refs.connectors.remove("erp");
        let err = validate("orders", "retail", &f.flow().spec, &refs).unwrap_err();
        assert_eq!(err.reason(), Reason::ConnectorNotFound);
        assert!(err.is_missing_reference());
        assert!(err.to_string().contains("spec.targets[0].connectorRef"), "{err}");
    }

    #[test]
    fn a_missing_mapping_is_mapping_not_found() {
        let f = fixtures::orders();
        let mut refs = refs_of(&f);
        refs.mappings.remove("canonical-to-erp");
        let err = validate("orders", "retail", &f.flow().spec, &refs).unwrap_err();
        assert_eq!(err.reason(), Reason::MappingNotFound);
        assert!(err.to_string().contains("spec.targets[0].mappingRef"), "{err}");
    }

    #[test]
    fn an_unreadable_connector_is_invalid_not_missing() {
        let f = fixtures::orders();
        let mut refs = refs_of(&f);
        refs.connectors.insert("erp".into(), Err("spec.type: unknown variant `sap`".into()));
        let err = validate("orders", "retail", &f.flow().spec, &refs).unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidSpec);
        assert!(!err.is_missing_reference());
        assert!(err.to_string().contains("Connector `erp` cannot be read"), "{err}");
    }

    #[test]
    fn a_mapping_that_fails_its_tests_keeps_the_flow_from_running() {
        let f = fixtures::orders();
        let mut refs = refs_of(&f);
        if let Some(Ok(m)) = refs.mappings.get_mut("shopify-order-to-canonical") {
            m.program = fixtures::canonical_program("0");
        }
        let err = validate("orders", "retail", &f.flow().spec, &refs).unwrap_err();
        assert_eq!(err.reason(), Reason::MappingTestsFailing);
        assert!(!err.is_missing_reference());
        let message = err.to_string();
        assert!(message.contains("Mapping `shopify-order-to-canonical` fails 1 of its tests"), "{message}");
        assert!(message.contains("first: `a minimal order`: .totals.grand: expected 1000, got 0"), "{message}");
    }

    #[test]
    fn a_mapping_that_does_not_compile_is_mapping_invalid() {
        let f = fixtures::orders();
        let mut refs = refs_of(&f);
        if let Some(Ok(m)) = refs.mappings.get_mut("canonical-to-erp") {
            m.program = "{externalId: .orderId,".into();
        }
        let err = validate("orders", "retail", &f.flow().spec, &refs).unwrap_err();
        assert_eq!(err.reason(), Reason::MappingInvalid);
        assert!(err.to_string().contains("Mapping `canonical-to-erp` does not compile"), "{err}");
    }

    #[test]
    fn references_that_do_not_fit_are_invalid_spec() {
        let f = fixtures::orders();
        let mut refs = refs_of(&f);
        if let Some(Ok(shop)) = refs.connectors.get_mut("shop") {
            shop.webhook = None;
        }
        let err = validate("orders", "retail", &f.flow().spec, &refs).unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidSpec);
    }

    #[test]
    fn a_name_too_long_for_the_runner_service_is_refused() {
        let f = fixtures::orders();
        let long = "o".repeat(MAX_FLOW_NAME + 1);
        let err = validate(&long, "retail", &f.flow().spec, &refs_of(&f)).unwrap_err();
        assert!(err.to_string().contains("metadata.name"), "{err}");
        assert!(validate(&"o".repeat(MAX_FLOW_NAME), "retail", &f.flow().spec, &refs_of(&f)).is_ok());
    }

    #[test]
    fn a_storage_size_must_be_a_quantity() {
        let f = fixtures::orders();
        let mut spec = f.flow().spec.0.clone();
        spec.runner.queue.embedded.storage = Some("5 GB".into());
        let err = validate("orders", "retail", &spec, &refs_of(&f)).unwrap_err();
        assert!(err.to_string().contains("spec.runner.queue.embedded.storage"), "{err}");
        for ok in ["5Gi", "500Mi", "1.5Gi", "100", "2G"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "5 Gi", "5GB", "1.Gi", "-1Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn secret_keys_that_would_share_an_env_var_are_refused() {
        let f = fixtures::orders();
        let mut refs = refs_of(&f);
        // shop's webhook key is shop-webhook/secret; shop_webhook/secret maps to the same variable.
        if let Some(Ok(erp)) = refs.connectors.get_mut("erp") {
            erp.auth = Some(ConnectorAuth::Bearer {
                secret_ref: SecretKeySelector { name: "shop_webhook".into(), key: "secret".into() },
            });
        }
        let err = validate("orders", "retail", &f.flow().spec, &refs).unwrap_err();
        assert!(err.to_string().contains("ENTREPOT_SECRET_SHOP_WEBHOOK_SECRET"), "{err}");
    }

    #[test]
    fn secret_refs_are_every_auth_and_webhook_key_once() {
        let f = fixtures::orders();
        let config = validate("orders", "retail", &f.flow().spec, &refs_of(&f)).unwrap();
        let refs: Vec<String> = secret_refs(&config).into_iter().map(|s| format!("{}/{}", s.name, s.key)).collect();
        assert_eq!(refs, ["erp-api/token", "shop-webhook/secret"]);
    }

    #[test]
    fn secret_refs_include_basic_and_oauth2_keys() {
        let f = fixtures::orders();
        let mut refs = refs_of(&f);
        let key = |name: &str, key: &str| SecretKeySelector { name: name.into(), key: key.into() };
        if let Some(Ok(erp)) = refs.connectors.get_mut("erp") {
            erp.auth = Some(ConnectorAuth::OAuth2ClientCredentials(OAuth2ClientCredentials {
                token_url: "https://login.example.com/token".into(),
                client_id_secret_ref: key("erp-oauth", "client-id"),
                client_secret_secret_ref: key("erp-oauth", "client-secret"),
                scopes: Vec::new(),
                audience: None,
                extra_params: Default::default(),
                client_auth: Default::default(),
                refresh_token_secret_ref: None,
            }));
        }
        if let Some(Ok(shop)) = refs.connectors.get_mut("shop") {
            shop.auth = Some(ConnectorAuth::Basic(BasicAuth {
                username_secret_ref: key("shop-api", "user"),
                password_secret_ref: key("shop-api", "password"),
            }));
        }
        let config = validate("orders", "retail", &f.flow().spec, &refs).unwrap();
        let refs: Vec<String> = secret_refs(&config).into_iter().map(|s| format!("{}/{}", s.name, s.key)).collect();
        assert_eq!(
            refs,
            [
                "erp-oauth/client-id",
                "erp-oauth/client-secret",
                "shop-api/password",
                "shop-api/user",
                "shop-webhook/secret"
            ]
        );
    }

    #[test]
    fn a_refusal_falls_into_its_category() {
        use crate::error::{Category, Error};
        let missing = Invalid::Resolve(ResolveError::MappingNotFound {
            flow: "f".into(),
            namespace: "n".into(),
            field: "spec.mappingRef".into(),
            name: "m".into(),
        });
        let invalid = Invalid::Resolve(ResolveError::Invalid {
            flow: "f".into(),
            field: "spec.targets".into(),
            message: "a flow needs at least one target".into(),
        });
        assert_eq!(Error::from(missing).category(), Category::ReferenceMissing);
        let error = Error::from(invalid);
        assert_eq!(error.category(), Category::InvalidSpec);
        assert!(error.to_string().contains("spec.targets"), "{error}");
    }
}
