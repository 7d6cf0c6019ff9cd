//! After the order: `Shipment` v1 (goods leaving a location) and `ReturnAuthorization`
//! v1 (goods coming back).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CurrencyCode, MinorUnits, Quantity, Source, Timestamp};

/// A parcel or pallet sent for an order, from a warehouse, a store or a supplier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("additionalProperties" = false))]
pub struct Shipment {
    /// The shipment's id across systems.
    #[schemars(length(min = 1))]
    pub shipment_id: String,
    /// Where the shipment came from (WMS, carrier, 3PL).
    #[serde(flatten)]
    pub source: Source,
    /// The `SalesOrder` it fulfils, by `orderId`.
    #[schemars(length(min = 1))]
    pub order_id: String,
    /// Where it ships from.
    #[schemars(length(min = 1))]
    pub location_id: String,
    /// Where it stands.
    pub status: ShipmentStatus,
    /// When it left the location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_at: Option<Timestamp>,
    /// The carrier, e.g. `UPS`, `DHL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// The carrier's tracking number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// What it holds; at least one line.
    #[schemars(length(min = 1))]
    pub lines: Vec<ShipmentLine>,
}

/// Where a shipment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ShipmentStatus {
    /// Picked and packed, not yet handed to the carrier.
    Packed,
    /// Handed to the carrier.
    Shipped,
    /// Delivered to the customer or the pickup store.
    Delivered,
    /// Cancelled before it left.
    Cancelled,
}

/// One item in a shipment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShipmentLine {
    /// The order line it fulfils, by `lineId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_id: Option<String>,
    /// The item's SKU.
    #[schemars(length(min = 1))]
    pub sku: String,
    /// How many were shipped.
    pub quantity: Quantity,
}

/// A return merchandise authorisation: what a customer may send back and what they get.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("additionalProperties" = false))]
pub struct ReturnAuthorization {
    /// The RMA's id across systems.
    #[schemars(length(min = 1))]
    pub rma_id: String,
    /// Where the RMA came from.
    #[serde(flatten)]
    pub source: Source,
    /// The `SalesOrder` being returned, by `orderId`.
    #[schemars(length(min = 1))]
    pub order_id: String,
    /// Where it stands.
    pub status: ReturnStatus,
    /// When the customer asked.
    pub requested_at: Timestamp,
    /// The currency of the refund amounts.
    pub currency: CurrencyCode,
    /// What comes back; at least one line.
    #[schemars(length(min = 1))]
    pub lines: Vec<ReturnLine>,
}

/// Where a return stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReturnStatus {
    /// Asked for, not yet decided.
    Requested,
    /// Accepted: the customer may send the goods.
    Authorized,
    /// The goods arrived at the warehouse or store.
    Received,
    /// The customer was refunded.
    Refunded,
    /// Refused (outside the return window, not bought here).
    Rejected,
}

/// One item being returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReturnLine {
    /// The item's SKU.
    #[schemars(length(min = 1))]
    pub sku: String,
    /// How many come back.
    pub quantity: Quantity,
    /// Why, in the retailer's reason codes, e.g. `DAMAGED`, `WRONG_SIZE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The refund for the line, in minor units of the RMA's `currency`.
    #[schemars(range(min = 0))]
    pub refund_amount: MinorUnits,
    /// What becomes of the goods once received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Disposition>,
}

/// What becomes of returned goods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Disposition {
    /// Back into sellable stock.
    Restock,
    /// To be repaired or refurbished first.
    Refurbish,
    /// Back to the supplier.
    ReturnToVendor,
    /// Written off.
    Scrap,
}
