//! `Customer` v1: a customer account in a commerce, CRM or loyalty system.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Address, Source, Timestamp};

/// A customer account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("additionalProperties" = false))]
pub struct Customer {
    /// The customer's id across systems, e.g. `shopify:7301998264433`.
    #[schemars(length(min = 1))]
    pub customer_id: String,
    /// Where the account came from.
    #[serde(flatten)]
    pub source: Source,
    /// Email address, lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number in E.164 form, e.g. `+4930123456`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{6,14}$"))]
    pub phone: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// The default shipping address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_address: Option<Address>,
    /// Whether the customer agreed to marketing email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepts_marketing: Option<bool>,
    /// When the account was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
}
