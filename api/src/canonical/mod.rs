//! The canonical retail model: the entities every endpoint maps to and from, never to
//! another endpoint, so replacing a system changes one Mapping. Each entity has a
//! versioned JSON Schema generated from its Rust type; a Mapping declaring
//! `produces: {entity, version}` has every record it maps checked against that schema
//! (the validation gate) before anything is queued for a target.
//!
//! The generated schemas are committed under `schemas/canonical/` (regenerate with
//! [`REGENERATE`]); a test fails when they are stale.

mod common;
mod fulfilment;
mod order;
mod party;
mod product;
mod settlement;

use schemars::{JsonSchema, Schema, generate::SchemaSettings};
use serde_json::Value;

pub use common::{Address, CountryCode, CurrencyCode, MinorUnits, Money, Quantity, Source, Timestamp, UnitOfMeasure};
pub use fulfilment::{
    Disposition, ReturnAuthorization, ReturnLine, ReturnStatus, Shipment, ShipmentLine, ShipmentStatus,
};
pub use order::{OrderCustomer, OrderLine, OrderTotals, SalesOrder};
pub use party::Customer;
pub use product::{InventorySnapshot, Item, Price};
pub use settlement::{Settlement, SettlementType};

/// The command that rewrites the committed schemas.
pub const REGENERATE: &str = "cargo run -p entrepot -- schema --write schemas/canonical";

/// One entity at one schema version.
#[derive(Clone, Copy, Debug)]
pub struct Entity {
    /// The entity's name, as a Mapping's `produces.entity` names it.
    pub name: &'static str,
    /// The schema version, as `produces.version` names it.
    pub version: &'static str,
    schema: fn() -> Schema,
}

impl Entity {
    /// The entity's JSON Schema (draft 2020-12).
    pub fn schema(&self) -> Schema {
        (self.schema)()
    }

    /// The file the committed schema lives in: `<Entity>.<version>.json`.
    pub fn file_name(&self) -> String {
        format!("{}.{}.json", self.name, self.version)
    }

    /// The schema as committed: pretty JSON with a final newline.
    pub fn render(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.schema()).expect("a schema is JSON");
        text.push('\n');
        text
    }
}

fn generate<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>()
}

/// Every canonical entity and version, by name.
pub const ENTITIES: [Entity; 8] = [
    Entity { name: "Customer", version: "v1", schema: generate::<Customer> },
    Entity { name: "InventorySnapshot", version: "v1", schema: generate::<InventorySnapshot> },
    Entity { name: "Item", version: "v1", schema: generate::<Item> },
    Entity { name: "Price", version: "v1", schema: generate::<Price> },
    Entity { name: "ReturnAuthorization", version: "v1", schema: generate::<ReturnAuthorization> },
    Entity { name: "SalesOrder", version: "v1", schema: generate::<SalesOrder> },
    Entity { name: "Settlement", version: "v1", schema: generate::<Settlement> },
    Entity { name: "Shipment", version: "v1", schema: generate::<Shipment> },
];

/// The entity `name` at `version`, if the model has it.
pub fn entity(name: &str, version: &str) -> Option<Entity> {
    ENTITIES.iter().copied().find(|e| e.name == name && e.version == version)
}

/// The JSON Schema of `entity` at `version`, if the model has it.
pub fn schema(entity_name: &str, version: &str) -> Option<Schema> {
    entity(entity_name, version).map(|e| e.schema())
}

/// A Mapping declares an entity or version the model does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown canonical entity `{entity}` version `{version}`: use one of {}", known())]
pub struct UnknownEntity {
    /// The entity asked for.
    pub entity: String,
    /// The version asked for.
    pub version: String,
}

fn known() -> String {
    ENTITIES.iter().map(|e| format!("{} {}", e.name, e.version)).collect::<Vec<_>>().join(", ")
}

/// One entity's schema, compiled once, checking records.
pub struct Validator {
    entity: Entity,
    compiled: jsonschema::Validator,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Validator({} {})", self.entity.name, self.entity.version)
    }
}

impl Validator {
    /// Compiles the schema of `entity` at `version`.
    pub fn new(entity_name: &str, version: &str) -> Result<Self, UnknownEntity> {
        let entity = entity(entity_name, version)
            .ok_or_else(|| UnknownEntity { entity: entity_name.into(), version: version.into() })?;
        let compiled = jsonschema::options()
            .should_validate_formats(true)
            .build(entity.schema().as_value())
            .expect("a generated canonical schema compiles");
        Ok(Self { entity, compiled })
    }

    /// The entity it checks.
    pub fn entity(&self) -> Entity {
        self.entity
    }

    /// Checks `record`: every failing field, as `<JSON pointer>: <what is wrong>`, in
    /// document order.
    pub fn check(&self, record: &Value) -> Result<(), Violations> {
        let mut failures: Vec<String> = self
            .compiled
            .iter_errors(record)
            .map(|e| {
                let pointer = e.instance_path().as_str();
                format!("{}: {e}", if pointer.is_empty() { "/" } else { pointer })
            })
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort();
        failures.dedup();
        Err(Violations { entity: self.entity, failures })
    }
}

/// Why a record is not a valid canonical entity: each failing field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a valid {} {}: {}", entity.name, entity.version, failures.join("; "))]
pub struct Violations {
    entity: Entity,
    /// Each failure as `<JSON pointer>: <what is wrong>`.
    pub failures: Vec<String>,
}

#[cfg(test)]
mod tests;
