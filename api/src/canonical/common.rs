//! The building blocks every canonical entity shares: where a record came from, money,
//! quantities, timestamps and codes. Their schemas carry the rules (patterns, bounds)
//! the validation gate enforces.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Where a record came from: the system, the system's id for it, and its version there.
/// Flattened into every entity as `sourceSystem`, `externalId`, `sourceVersion`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The system of record the entity was read from, e.g. `shopify`, `netsuite`, `wms`.
    #[schemars(length(min = 1))]
    pub source_system: String,
    /// The source system's own id of the entity (its primary key there).
    #[schemars(length(min = 1))]
    pub external_id: String,
    /// The entity's version in the source system (an update time or a revision
    /// number): a target keeps the newest and refuses an older one (the stale guard).
    #[schemars(length(min = 1))]
    pub source_version: String,
}

/// An amount of money in integer minor units of its currency (cents for USD, yen for
/// JPY, fils for BHD): never a float.
pub type MinorUnits = i64;

/// An amount of money with its currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Money {
    /// The amount in integer minor units of `currency` (1999 is 19.99 USD).
    pub amount: MinorUnits,
    /// The currency.
    pub currency: CurrencyCode,
}

/// A quantity with its unit of measure; never negative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quantity {
    /// How many `uom`; fractional for weighed or measured goods (1.25 KG).
    #[schemars(range(min = 0))]
    pub value: f64,
    /// The unit of measure.
    pub uom: UnitOfMeasure,
}

/// A postal address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    /// The addressee, a person or a company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Street and number.
    #[schemars(length(min = 1))]
    pub line1: String,
    /// Apartment, suite, building.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City or town.
    #[schemars(length(min = 1))]
    pub city: String,
    /// State, province or county code, e.g. `NY`, `ON`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal or ZIP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// The country.
    pub country: CountryCode,
}

/// String types whose schema is a fixed pattern: ISO codes, timestamps.
macro_rules! pattern_strings {
    ($($(#[$doc:meta])* $name:ident => $schema:tt;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    )*};
}

pattern_strings! {
    /// An ISO 4217 currency code.
    CurrencyCode => {"type": "string", "pattern": "^[A-Z]{3}$",
        "description": "ISO 4217 currency code, three capital letters, e.g. `USD`, `EUR`, `JPY`."};
    /// An ISO 3166-1 alpha-2 country code.
    CountryCode => {"type": "string", "pattern": "^[A-Z]{2}$",
        "description": "ISO 3166-1 alpha-2 country code, two capital letters, e.g. `US`, `DE`."};
    /// A unit of measure code.
    UnitOfMeasure => {"type": "string", "pattern": "^[A-Z][A-Z0-9]{0,2}$",
        "description": "Unit of measure, a UN/ECE Recommendation 20 style code in capitals: `EA` (each), `KG`, `LB`, `L`, `M`, `CS` (case), `PK` (pack)."};
    /// An instant, RFC 3339 in UTC.
    Timestamp => {"type": "string", "format": "date-time",
        "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$",
        "description": "An instant as an RFC 3339 timestamp in UTC (ending in `Z`), e.g. `2026-11-27T19:05:00Z`."};
}
