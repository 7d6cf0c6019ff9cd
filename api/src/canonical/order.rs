//! `SalesOrder` v1: an order placed in a channel (storefront, marketplace, POS), on its
//! way to the ERP.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Address, CurrencyCode, MinorUnits, Quantity, Source, Timestamp};

/// A customer's order as placed in a channel. Amounts are integer minor units of the
/// order's `currency`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("additionalProperties" = false))]
pub struct SalesOrder {
    /// The order's id across systems: the source system's prefix and its id, e.g.
    /// `shopify:5678901234567`.
    #[schemars(length(min = 1))]
    pub order_id: String,
    /// Where the order came from.
    #[serde(flatten)]
    pub source: Source,
    /// The number the customer sees, e.g. `#1042`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_number: Option<String>,
    /// When the customer placed the order.
    pub placed_at: Timestamp,
    /// The currency of every amount in the order.
    pub currency: CurrencyCode,
    /// Whether line prices include tax (VAT markets) or tax comes on top (US sales tax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxes_included: Option<bool>,
    /// Who placed it.
    pub customer: OrderCustomer,
    /// Where it ships; absent for digital goods and in-store pickup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_to: Option<Address>,
    /// What was ordered; at least one line.
    #[schemars(length(min = 1))]
    pub lines: Vec<OrderLine>,
    /// The order's totals.
    pub totals: OrderTotals,
}

/// The customer of an order, as far as the channel knows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderCustomer {
    /// The channel's id of the customer account; absent for a guest checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Email address, lower case; empty when the channel has none (e.g. a POS sale).
    pub email: String,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderLine {
    /// The channel's id of the line.
    #[schemars(length(min = 1))]
    pub line_id: String,
    /// The item's SKU.
    #[schemars(length(min = 1))]
    pub sku: String,
    /// The item's title as sold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How many were ordered.
    pub quantity: Quantity,
    /// Price of one unit, in minor units, before discount.
    #[schemars(range(min = 0))]
    pub unit_price: MinorUnits,
    /// Discount on the whole line, in minor units.
    #[schemars(range(min = 0))]
    pub discount: MinorUnits,
    /// Tax on the whole line, in minor units.
    #[schemars(range(min = 0))]
    pub tax: MinorUnits,
}

/// An order's totals, in minor units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderTotals {
    /// Sum of the lines after line discounts, before shipping.
    #[schemars(range(min = 0))]
    pub subtotal: MinorUnits,
    /// Total tax.
    #[schemars(range(min = 0))]
    pub tax: MinorUnits,
    /// Shipping charged.
    #[schemars(range(min = 0))]
    pub shipping: MinorUnits,
    /// Total discount.
    #[schemars(range(min = 0))]
    pub discount: MinorUnits,
    /// What the customer pays.
    #[schemars(range(min = 0))]
    pub grand: MinorUnits,
}
