//! The product side: `Item` v1 (the product master), `Price` v1 (a price-list entry)
//! and `InventorySnapshot` v1 (stock at a location).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CurrencyCode, MinorUnits, Money, Quantity, Source, Timestamp, UnitOfMeasure};

/// A sellable item from the product master (PIM or ERP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("additionalProperties" = false))]
pub struct Item {
    /// Stock keeping unit: the item's id across systems.
    #[schemars(length(min = 1))]
    pub sku: String,
    /// Where the item came from.
    #[serde(flatten)]
    pub source: Source,
    /// The item's name as shown to customers.
    #[schemars(length(min = 1))]
    pub name: String,
    /// A longer description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// GTIN (UPC, EAN) barcode: 8, 12, 13 or 14 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{8}|[0-9]{12,14})$"))]
    pub gtin: Option<String>,
    /// The unit it is sold in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uom: Option<UnitOfMeasure>,
    /// The base (list) price; channel and customer-group prices are `Price` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Money>,
    /// Whether the item may be sold.
    pub active: bool,
}

/// A price-list entry: what one unit of an item costs in a price list from a date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("additionalProperties" = false))]
pub struct Price {
    /// The item's SKU.
    #[schemars(length(min = 1))]
    pub sku: String,
    /// Where the price came from.
    #[serde(flatten)]
    pub source: Source,
    /// The price list or customer group, e.g. `RETAIL`, `WHOLESALE`.
    #[schemars(length(min = 1))]
    pub price_list: String,
    /// The price's currency.
    pub currency: CurrencyCode,
    /// Price of one `unit`, in integer minor units of `currency`.
    #[schemars(range(min = 0))]
    pub amount: MinorUnits,
    /// The unit of measure the price is for.
    pub unit: UnitOfMeasure,
    /// From when the price applies.
    pub valid_from: Timestamp,
    /// Until when it applies; open-ended when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<Timestamp>,
    /// The item's ids in channels, by name (e.g. `bigcommerceProductId`), for targets
    /// that address a product by their own id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channel_refs: BTreeMap<String, String>,
}

/// Stock of one item at one location at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("additionalProperties" = false))]
pub struct InventorySnapshot {
    /// The item's SKU.
    #[schemars(length(min = 1))]
    pub sku: String,
    /// The warehouse, store or drop-ship supplier holding the stock.
    #[schemars(length(min = 1))]
    pub location_id: String,
    /// Where the snapshot came from.
    #[serde(flatten)]
    pub source: Source,
    /// When the stock was counted.
    pub snapshot_at: Timestamp,
    /// Physically present.
    pub on_hand: Quantity,
    /// What channels may sell: on hand less allocated and held, never negative.
    pub available: Quantity,
    /// Reserved for open orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<Quantity>,
}
