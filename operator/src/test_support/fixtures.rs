//! YAML fixtures: manifests as a user writes them, read into the CRD types.

use serde_json::Value;

use crate::resources::{Connector, Mapping, ReconcileSchedule, SyncFlow};

/// The resources of one fixture file, by kind, in file order.
#[derive(Clone, Debug, Default)]
pub struct Fixture {
    pub connectors: Vec<Connector>,
    pub mappings: Vec<Mapping>,
    pub flows: Vec<SyncFlow>,
    pub schedules: Vec<ReconcileSchedule>,
}

impl Fixture {
    /// Reads a multi-document YAML text; any kind but ours is an error, so a typo in a
    /// fixture fails loudly.
    pub fn parse(text: &str) -> Self {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).expect("fixture is YAML");
        let mut fixture = Self::default();
        for doc in docs {
            match doc["kind"].as_str() {
                Some("Connector") => fixture.connectors.push(serde_json::from_value(doc).expect("a Connector")),
                Some("Mapping") => fixture.mappings.push(serde_json::from_value(doc).expect("a Mapping")),
                Some("SyncFlow") => fixture.flows.push(serde_json::from_value(doc).expect("a SyncFlow")),
                Some("ReconcileSchedule") => {
                    fixture.schedules.push(serde_json::from_value(doc).expect("a ReconcileSchedule"))
                }
                other => panic!("unexpected kind {other:?} in fixture"),
            }
        }
        fixture
    }

    /// The first SyncFlow.
    pub fn flow(&self) -> &SyncFlow {
        &self.flows[0]
    }

    /// The Connector named `name`.
    pub fn connector(&self, name: &str) -> &Connector {
        self.connectors.iter().find(|c| c.metadata.name.as_deref() == Some(name)).expect("connector in fixture")
    }
}

/// The program of the orders fixture's canonical Mapping, with the grand total given by
/// `grand`: `.total_price` passes the Mapping's test, anything else fails it.
pub fn canonical_program(grand: &str) -> String {
    format!(
        ".order + {{orderId: (.id | tostring), currency: .currency, \
         totals: {{subtotal: .total_price, tax: 0, shipping: 0, discount: 0, grand: {grand}}}}}"
    )
}

/// Shopify orders to an ERP, with two Connectors, two Mappings and one SyncFlow.
pub fn orders() -> Fixture {
    Fixture::parse(include_str!("fixtures/orders.yaml"))
}

/// The orders fixture with the storefront Connector given an endpoint to list orders
/// from, and an hourly ReconcileSchedule of the flow.
pub fn reconcile() -> Fixture {
    orders().with(Fixture::parse(include_str!("fixtures/reconcile.yaml")))
}

/// The orders fixture's flow as a nightly batch import of files, with the same
/// Connectors and Mappings.
pub fn nightly() -> Fixture {
    orders().with(Fixture::parse(include_str!("fixtures/nightly.yaml")))
}

/// The orders fixture's flow with its queue in NATS JetStream and three runners, with
/// the same Connectors and Mappings.
pub fn jetstream() -> Fixture {
    orders().with(Fixture::parse(include_str!("fixtures/jetstream.yaml")))
}

impl Fixture {
    /// This fixture with the objects of `other` added, each replacing the object of the
    /// same kind and name if there is one.
    pub fn with(mut self, other: Fixture) -> Self {
        fn replace<K: kube::Resource>(into: &mut Vec<K>, from: Vec<K>) {
            for object in from {
                match into.iter_mut().find(|o| o.meta().name == object.meta().name) {
                    Some(existing) => *existing = object,
                    None => into.push(object),
                }
            }
        }
        replace(&mut self.connectors, other.connectors);
        replace(&mut self.mappings, other.mappings);
        replace(&mut self.flows, other.flows);
        replace(&mut self.schedules, other.schedules);
        self
    }
}
