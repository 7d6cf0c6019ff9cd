//! `Settlement` v1: one transaction in a payment processor's or marketplace's payout.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CurrencyCode, MinorUnits, Source, Timestamp};

/// One settled transaction: what the customer paid (or got back), the processor's fee,
/// and the net paid out. Amounts are signed integer minor units of `currency`: a refund
/// is negative; `gross - fee = net`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("additionalProperties" = false))]
pub struct Settlement {
    /// The payout (settlement batch) the transaction belongs to.
    #[schemars(length(min = 1))]
    pub settlement_id: String,
    /// The processor's id of the transaction.
    #[schemars(length(min = 1))]
    pub transaction_id: String,
    /// Where the transaction came from.
    #[serde(flatten)]
    pub source: Source,
    /// What kind of transaction it is.
    #[serde(rename = "type")]
    pub kind: SettlementType,
    /// The currency of the amounts.
    pub currency: CurrencyCode,
    /// What the customer paid (negative for a refund), in minor units.
    pub gross: MinorUnits,
    /// The processor's fee, in minor units.
    pub fee: MinorUnits,
    /// What was paid out: `gross - fee`, in minor units.
    pub net: MinorUnits,
    /// The order the transaction pays for, when the processor knows it.
    pub order_reference: Option<String>,
    /// When it was settled.
    pub settled_at: Timestamp,
}

/// The kind of a settled transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SettlementType {
    /// A payment captured from a customer.
    Charge,
    /// Money returned to a customer.
    Refund,
    /// A chargeback or its reversal.
    Dispute,
    /// A processor's correction.
    Adjustment,
}
