//! The runner's resolved configuration: each SyncFlow with the Connectors and Mappings it
//! references inlined, so a runner needs nothing else to run it.
//!
//! The operator renders exactly this into the runner's ConfigMap (`entrepot serve
//! --config FILE`); local mode (`entrepot run DIR`) builds it from the manifests in DIR.
//! Both go through [`FlowConfig::resolve`], so a flow means the same thing in both.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resource::{ConnectorSpec, MappingSpec, SyncFlowSpec};
use crate::rules::flow::{check_file_trigger, check_mode, check_poll, check_runner, check_table};

/// Everything one runner process runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerConfig {
    /// The flows, each with its references resolved.
    pub flows: Vec<FlowConfig>,
}

/// One SyncFlow with the Connectors and Mappings it references.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowConfig {
    /// The SyncFlow's name.
    pub name: String,
    /// The SyncFlow's namespace.
    pub namespace: String,
    /// The SyncFlow's spec, as written.
    pub spec: SyncFlowSpec,
    /// The Connectors the flow references, by name.
    pub connectors: BTreeMap<String, ConnectorSpec>,
    /// The Mappings the flow references, by name.
    pub mappings: BTreeMap<String, MappingSpec>,
}

/// Why a flow cannot be run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A `connectorRef` names a Connector that does not exist.
    #[error("SyncFlow {flow}: {field} refers to Connector `{name}`, which does not exist in namespace {namespace}")]
    ConnectorNotFound {
        /// The flow.
        flow: String,
        /// Its namespace.
        namespace: String,
        /// The field holding the reference.
        field: String,
        /// The missing Connector.
        name: String,
    },
    /// A `mappingRef` names a Mapping that does not exist.
    #[error("SyncFlow {flow}: {field} refers to Mapping `{name}`, which does not exist in namespace {namespace}")]
    MappingNotFound {
        /// The flow.
        flow: String,
        /// Its namespace.
        namespace: String,
        /// The field holding the reference.
        field: String,
        /// The missing Mapping.
        name: String,
    },
    /// The references exist but do not fit together.
    #[error("SyncFlow {flow}: {field}: {message}")]
    Invalid {
        /// The flow.
        flow: String,
        /// The field at fault.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl FlowConfig {
    /// Resolves a flow's references with the given lookups (by name, in the flow's
    /// namespace) and checks that they fit together. Pure: the caller decides where
    /// Connectors and Mappings come from (a directory, the Kubernetes API).
    pub fn resolve(
        name: &str,
        namespace: &str,
        spec: &SyncFlowSpec,
        connector: impl Fn(&str) -> Option<ConnectorSpec>,
        mapping: impl Fn(&str) -> Option<MappingSpec>,
    ) -> Result<Self, ResolveError> {
        let connector_ref = |field: String, wanted: &str| {
            connector(wanted).ok_or_else(|| ResolveError::ConnectorNotFound {
                flow: name.into(),
                namespace: namespace.into(),
                field,
                name: wanted.into(),
            })
        };
        let mapping_ref = |field: String, wanted: &str| {
            mapping(wanted).ok_or_else(|| ResolveError::MappingNotFound {
                flow: name.into(),
                namespace: namespace.into(),
                field,
                name: wanted.into(),
            })
        };
        let invalid =
            |field: &str, message: String| ResolveError::Invalid { flow: name.into(), field: field.into(), message };

        let mut connectors = BTreeMap::new();
        let mut mappings = BTreeMap::new();

        let source = connector_ref("spec.source.connectorRef".into(), &spec.source.connector_ref)?;
        let trigger = &spec.source.trigger;
        match trigger.set().as_slice() {
            [_] => {}
            [] => {
                return Err(invalid("spec.source.trigger", "set one of webhook, poll or file".into()));
            }
            several => {
                return Err(invalid(
                    "spec.source.trigger",
                    format!("set exactly one of webhook, poll or file, not {}", several.join(" and ")),
                ));
            }
        }
        check_mode(spec).map_err(|(field, message)| invalid(field, message.into()))?;
        check_runner(spec).map_err(|(field, message)| invalid(field, message))?;
        if trigger.webhook.is_some() && source.webhook.is_none() {
            return Err(invalid(
                "spec.source.trigger.webhook",
                format!(
                    "a webhook trigger needs a signed source, but Connector `{}` has no spec.webhook; \
                     add spec.webhook.signature and spec.webhook.secretRef to it",
                    spec.source.connector_ref
                ),
            ));
        }
        if trigger.poll.is_some() && source.endpoint.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                "spec.source.trigger.poll",
                format!("Connector `{}` is polled but has no spec.endpoint", spec.source.connector_ref),
            ));
        }
        if let Some(poll) = &trigger.poll {
            check_poll(poll, &spec.source.connector_ref, source.kind)
                .map_err(|(field, message)| invalid(field, message))?;
        }
        if let Some(file) = &trigger.file {
            check_file_trigger(file).map_err(|(field, message)| invalid(field, message.into()))?;
        }
        connectors.insert(spec.source.connector_ref.clone(), source);
        if let Some(m) = &spec.mapping_ref {
            let mapping = mapping_ref("spec.mappingRef".into(), m)?;
            // The validation gate checks every record against this schema: an entity
            // the model lacks would dead-letter every record, so refuse the flow now.
            if let Some(p) = &mapping.produces
                && crate::canonical::entity(&p.entity, &p.version).is_none()
            {
                let unknown = crate::canonical::UnknownEntity { entity: p.entity.clone(), version: p.version.clone() };
                return Err(invalid(&format!("Mapping {m} spec.produces"), unknown.to_string()));
            }
            mappings.insert(m.clone(), mapping);
        }

        if spec.targets.is_empty() {
            return Err(invalid("spec.targets", "a flow needs at least one target".into()));
        }
        for (i, target) in spec.targets.iter().enumerate() {
            let field = format!("spec.targets[{i}].connectorRef");
            let c = connector_ref(field, &target.connector_ref)?;
            if c.endpoint.as_deref().is_none_or(str::is_empty) {
                return Err(invalid(
                    &format!("spec.targets[{i}]"),
                    format!("Connector `{}` is a target but has no spec.endpoint", target.connector_ref),
                ));
            }
            if target.operation == crate::resource::Operation::Upsert && spec.delivery.ordering_key.is_none() {
                return Err(invalid(
                    &format!("spec.targets[{i}].operation"),
                    "an upsert is sent to <path>/<ordering key>: set spec.delivery.orderingKey".into(),
                ));
            }
            if target.availability.is_some() {
                let produces = spec
                    .mapping_ref
                    .as_ref()
                    .and_then(|m| mappings.get(m))
                    .and_then(|m: &MappingSpec| m.produces.as_ref());
                if produces.is_none_or(|p| p.entity != "InventorySnapshot") {
                    let now = match (&spec.mapping_ref, produces) {
                        (None, _) => "the flow has no spec.mappingRef".to_string(),
                        (Some(m), None) => format!("Mapping `{m}` declares no spec.produces"),
                        (Some(m), Some(p)) => format!("Mapping `{m}` produces {} {}", p.entity, p.version),
                    };
                    return Err(invalid(
                        &format!("spec.targets[{i}].availability"),
                        format!(
                            "channel availability is computed from canonical InventorySnapshot records, but {now}; \
                                 set spec.mappingRef to a Mapping with produces: {{entity: InventorySnapshot, version: v1}}"
                        ),
                    ));
                }
            }
            check_table(target, c.kind)
                .map_err(|(field, message)| invalid(&format!("spec.targets[{i}].{field}"), message))?;
            connectors.insert(target.connector_ref.clone(), c);
            if let Some(m) = &target.mapping_ref {
                mappings.insert(m.clone(), mapping_ref(format!("spec.targets[{i}].mappingRef"), m)?);
            }
        }

        // Queued records name their target by its name: two alike would share a queue.
        for (i, target) in spec.targets.iter().enumerate() {
            if let Some(j) = spec.targets[..i].iter().position(|t| t.name() == target.name()) {
                return Err(invalid(
                    &format!("spec.targets[{i}].name"),
                    format!(
                        "`{}` is already the name of spec.targets[{j}] (a name defaults to the connectorRef): \
                         give each target a unique name",
                        target.name()
                    ),
                ));
            }
        }

        Ok(Self { name: name.into(), namespace: namespace.into(), spec: spec.clone(), connectors, mappings })
    }

    /// The Connector named `name`; resolution guarantees every referenced one is here.
    pub fn connector(&self, name: &str) -> &ConnectorSpec {
        &self.connectors[name]
    }

    /// The Mapping named `name`; resolution guarantees every referenced one is here.
    pub fn mapping(&self, name: &str) -> &MappingSpec {
        &self.mappings[name]
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::resource::{
        ConnectorType, FileFormat, FileTrigger, FlowMode, SourceSpec, TargetSpec, TriggerSpec, WebhookTrigger,
    };

    fn flow(trigger: TriggerSpec) -> SyncFlowSpec {
        SyncFlowSpec {
            source: SourceSpec { connector_ref: "src".into(), entity: "orders".into(), trigger },
            mapping_ref: None,
            targets: vec![TargetSpec {
                name: None,
                connector_ref: "erp".into(),
                entity: "salesOrder".into(),
                mapping_ref: None,
                operation: Default::default(),
                path: None,
                availability: None,
                graphql: None,
                table: None,
            }],
            delivery: Default::default(),
            runner: Default::default(),
            mode: Default::default(),
            schedule: None,
            time_zone: None,
            suspend: false,
        }
    }

    fn resolve(spec: &SyncFlowSpec) -> Result<FlowConfig, ResolveError> {
        let endpoint =
            ConnectorSpec { kind: ConnectorType::Rest, endpoint: Some("http://x".into()), ..Default::default() };
        FlowConfig::resolve("f", "ns", spec, |_| Some(endpoint.clone()), |_| None)
    }

    fn file() -> FileTrigger {
        FileTrigger {
            directory: "/in".into(),
            format: FileFormat::Csv,
            suffix: None,
            processed_directory: None,
            interval: None,
            volume_claim_name: None,
        }
    }

    #[test]
    fn a_mapping_producing_an_unknown_canonical_entity_is_refused() {
        let mut spec = flow(TriggerSpec { file: Some(file()), ..Default::default() });
        spec.mapping_ref = Some("to-canonical".into());
        let endpoint =
            ConnectorSpec { kind: ConnectorType::Rest, endpoint: Some("http://x".into()), ..Default::default() };
        let producing = |entity: &str, version: &str| MappingSpec {
            produces: Some(crate::resource::CanonicalRef { entity: entity.into(), version: version.into() }),
            program: ".".into(),
            ..Default::default()
        };
        let with =
            |m: MappingSpec| FlowConfig::resolve("f", "ns", &spec, |_| Some(endpoint.clone()), |_| Some(m.clone()));
        assert!(with(producing("SalesOrder", "v1")).is_ok());
        let err = with(producing("SalesOrder", "v9")).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "SyncFlow f: Mapping to-canonical spec.produces: unknown canonical entity `SalesOrder` version `v9`"
            ),
            "{err}"
        );
    }

    #[test]
    fn channel_availability_needs_a_flow_producing_inventory_snapshots() {
        let mut spec = flow(TriggerSpec { file: Some(file()), ..Default::default() });
        spec.targets[0].availability =
            Some(crate::resource::ChannelAvailability { percent: Some(50.0), ..Default::default() });
        let err = resolve(&spec).unwrap_err().to_string();
        assert!(err.starts_with("SyncFlow f: spec.targets[0].availability: channel availability is computed from canonical InventorySnapshot records, but the flow has no spec.mappingRef"), "{err}");
        spec.mapping_ref = Some("to-canonical".into());
        let endpoint =
            ConnectorSpec { kind: ConnectorType::Rest, endpoint: Some("http://x".into()), ..Default::default() };
        let producing = |entity: &str| MappingSpec {
            produces: Some(crate::resource::CanonicalRef { entity: entity.into(), version: "v1".into() }),
            program: ".".into(),
            ..Default::default()
        };
        let with =
            |m: MappingSpec| FlowConfig::resolve("f", "ns", &spec, |_| Some(endpoint.clone()), |_| Some(m.clone()));
        let err = with(producing("SalesOrder")).unwrap_err().to_string();
        assert!(err.contains("but Mapping `to-canonical` produces SalesOrder v1"), "{err}");
        assert!(with(producing("InventorySnapshot")).is_ok());
    }

    #[test]
    fn exactly_one_trigger_is_set() {
        let err = resolve(&flow(TriggerSpec::default())).unwrap_err();
        assert_eq!(err.to_string(), "SyncFlow f: spec.source.trigger: set one of webhook, poll or file");
        let both = TriggerSpec { webhook: Some(WebhookTrigger::default()), file: Some(file()), ..Default::default() };
        let err = resolve(&flow(both)).unwrap_err();
        assert!(err.to_string().contains("not webhook and file"), "{err}");
        assert!(resolve(&flow(TriggerSpec { file: Some(file()), ..Default::default() })).is_ok());
    }

    #[test]
    fn batch_mode_needs_a_schedule_and_a_source_that_can_wait() {
        let field_of = |spec: &SyncFlowSpec| match resolve(spec) {
            Err(ResolveError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        };
        let mut batch = flow(TriggerSpec { file: Some(file()), ..Default::default() });
        batch.mode = FlowMode::Batch;
        assert_eq!(field_of(&batch), "spec.schedule");
        batch.schedule = Some("0 2 * * *".into());
        assert!(resolve(&batch).is_ok());
        let mut webhook = batch.clone();
        webhook.source.trigger = TriggerSpec { webhook: Some(WebhookTrigger::default()), ..Default::default() };
        assert_eq!(field_of(&webhook), "spec.mode");
        let mut continuous = batch;
        continuous.mode = FlowMode::Continuous;
        assert_eq!(field_of(&continuous), "spec.schedule");
    }

    #[test]
    fn target_names_default_to_the_connector_and_must_be_unique() {
        let mut spec = flow(TriggerSpec { file: Some(file()), ..Default::default() });
        spec.targets.push(spec.targets[0].clone());
        let Err(ResolveError::Invalid { field, message, .. }) = resolve(&spec) else { panic!("accepted") };
        assert_eq!(field, "spec.targets[1].name");
        assert!(message.starts_with("`erp` is already the name of spec.targets[0]"), "{message}");
        spec.targets[1].name = Some("erp-archive".into());
        let config = resolve(&spec).unwrap();
        let names: Vec<&str> = config.spec.targets.iter().map(TargetSpec::name).collect();
        assert_eq!(names, ["erp", "erp-archive"]);
    }

    #[test]
    fn a_database_target_needs_a_table_and_an_api_target_refuses_one() {
        let db = ConnectorSpec {
            kind: ConnectorType::Postgres,
            endpoint: Some("postgres://db/wh".into()),
            ..Default::default()
        };
        let api = ConnectorSpec { kind: ConnectorType::Rest, endpoint: Some("http://x".into()), ..Default::default() };
        let mut spec = flow(TriggerSpec { file: Some(file()), ..Default::default() });
        let with = |spec: &SyncFlowSpec, target: &ConnectorSpec| {
            let (api, target) = (api.clone(), target.clone());
            FlowConfig::resolve(
                "f",
                "ns",
                spec,
                move |n| Some(if n == "erp" { target.clone() } else { api.clone() }),
                |_| None,
            )
        };
        let field_of = |r: Result<FlowConfig, ResolveError>| match r.unwrap_err() {
            ResolveError::Invalid { field, message, .. } => format!("{field}: {message}"),
            other => panic!("{other}"),
        };
        assert!(field_of(with(&spec, &db)).starts_with("spec.targets[0].table: Connector `erp` is a database"));
        spec.targets[0].table =
            Some(serde_saphyr::from_str("{name: orders, key: [order_id], columns: [total]}").unwrap());
        assert!(field_of(with(&spec, &db)).starts_with("spec.targets[0].table.columns: the key column `order_id`"));
        spec.targets[0].table = Some(serde_saphyr::from_str("{name: orders, key: [order_id]}").unwrap());
        assert!(field_of(with(&spec, &db)).starts_with("spec.targets[0].table.columns: declare the columns"));
        spec.targets[0].table =
            Some(serde_saphyr::from_str("{name: orders, key: [order_id], columns: [order_id]}").unwrap());
        assert!(with(&spec, &db).is_ok());
        assert!(field_of(with(&spec, &api)).starts_with("spec.targets[0].table: Connector `erp` is not a database"));
    }

    #[test]
    fn a_sql_poll_needs_a_database_and_an_initial_watermark() {
        let db = ConnectorSpec {
            kind: ConnectorType::Postgres,
            endpoint: Some("postgres://db/wh".into()),
            ..Default::default()
        };
        let poll =
            |yaml: &str| flow(TriggerSpec { poll: Some(serde_saphyr::from_str(yaml).unwrap()), ..Default::default() });
        let on = |spec: &SyncFlowSpec, source: &ConnectorSpec| {
            let source = source.clone();
            FlowConfig::resolve(
                "f",
                "ns",
                spec,
                move |n| {
                    Some(if n == "src" {
                        source.clone()
                    } else {
                        ConnectorSpec { endpoint: Some("http://x".into()), ..Default::default() }
                    })
                },
                |_| None,
            )
        };
        let field_of = |r: Result<FlowConfig, ResolveError>| match r.unwrap_err() {
            ResolveError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        };
        let sql = "{interval: 30s, sql: 'SELECT * FROM items WHERE updated_at > $1::timestamptz ORDER BY updated_at LIMIT 500', \
                   watermark: {field: .updated_at, initial: '1970-01-01T00:00:00Z'}}";
        assert!(on(&poll(sql), &db).is_ok());
        let api = ConnectorSpec { endpoint: Some("http://x".into()), ..Default::default() };
        assert_eq!(field_of(on(&poll(sql), &api)), "spec.source.trigger.poll.sql");
        assert_eq!(field_of(on(&poll("{interval: 30s, path: /items}"), &db)), "spec.source.trigger.poll.sql");
        let no_initial = "{interval: 30s, sql: 'SELECT 1', watermark: {field: .v}}";
        assert_eq!(field_of(on(&poll(no_initial), &db)), "spec.source.trigger.poll.watermark.initial");
        let no_param = "{interval: 30s, path: /items, watermark: {field: .v}}";
        assert_eq!(field_of(on(&poll(no_param), &api)), "spec.source.trigger.poll.watermark.param");
    }

    #[test]
    fn a_webhook_trigger_needs_a_signed_source() {
        let err =
            resolve(&flow(TriggerSpec { webhook: Some(WebhookTrigger::default()), ..Default::default() })).unwrap_err();
        assert!(matches!(&err, ResolveError::Invalid { field, .. } if field == "spec.source.trigger.webhook"), "{err}");
    }

    #[test]
    fn a_file_trigger_needs_a_directory_and_a_separate_processed_directory() {
        let with = |f: FileTrigger| resolve(&flow(TriggerSpec { file: Some(f), ..Default::default() }));
        let field_of = |r: Result<FlowConfig, ResolveError>| match r.unwrap_err() {
            ResolveError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(
            field_of(with(FileTrigger { directory: " ".into(), ..file() })),
            "spec.source.trigger.file.directory"
        );
        let same = FileTrigger { processed_directory: Some("/in/".into()), ..file() };
        assert_eq!(field_of(with(same)), "spec.source.trigger.file.processedDirectory");
        let zero = FileTrigger { interval: Some(std::time::Duration::ZERO.into()), ..file() };
        assert_eq!(field_of(with(zero)), "spec.source.trigger.file.interval");
        let elsewhere = FileTrigger { processed_directory: Some("/done".into()), ..file() };
        assert_eq!(
            with(elsewhere).unwrap().spec.source.trigger.file.unwrap().processed_directory(),
            Path::new("/done")
        );
        assert_eq!(file().processed_directory(), Path::new("/in/processed"));
    }

    #[test]
    fn a_poll_trigger_whose_jq_does_not_compile_is_refused_naming_the_field() {
        let polled =
            |yaml: &str| flow(TriggerSpec { poll: Some(serde_saphyr::from_str(yaml).unwrap()), ..Default::default() });
        assert!(resolve(&polled("{interval: 1m, path: /orders, records: .orders}")).is_ok());
        for (yaml, field) in [
            ("{interval: 1m, path: /orders, records: '.orders['}", "spec.source.trigger.poll.records"),
            (
                "{interval: 1m, path: /orders, pagination: {cursor: {field: '.next(', param: cursor}}}",
                "spec.source.trigger.poll.pagination.cursor.field",
            ),
        ] {
            let err = resolve(&polled(yaml)).unwrap_err().to_string();
            assert!(err.starts_with(&format!("SyncFlow f: {field}: ")), "{yaml}: {err}");
        }
    }
}
