//! A Shopify order as the REST Admin API and the `orders/create` webhook carry it.
//!
//! Field names, types and nullability follow Shopify's payload (money as decimal strings,
//! timestamps with the shop's UTC offset, nullable fields serialized as `null`), so a mapping
//! written against these payloads works against the real platform.

use serde::{Deserialize, Serialize};

/// A Shopify order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // The fields are Shopify's, documented by Shopify.
pub struct Order {
    pub id: u64,
    pub admin_graphql_api_id: String,
    /// The order's display name, `#` followed by the order number.
    pub name: String,
    pub order_number: u64,
    pub email: String,
    pub contact_email: String,
    pub phone: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub processed_at: String,
    pub cancelled_at: Option<String>,
    pub cancel_reason: Option<String>,
    pub closed_at: Option<String>,
    pub currency: String,
    pub presentment_currency: String,
    pub financial_status: String,
    pub fulfillment_status: Option<String>,
    pub confirmed: bool,
    pub test: bool,
    pub taxes_included: bool,
    pub total_price: String,
    pub subtotal_price: String,
    pub total_line_items_price: String,
    pub total_tax: String,
    pub total_discounts: String,
    pub total_weight: u64,
    pub total_shipping_price_set: PriceSet,
    pub tags: String,
    pub note: Option<String>,
    pub note_attributes: Vec<NoteAttribute>,
    pub source_name: String,
    pub gateway: String,
    pub payment_gateway_names: Vec<String>,
    pub browser_ip: String,
    pub landing_site: String,
    pub referring_site: Option<String>,
    pub buyer_accepts_marketing: bool,
    pub customer_locale: String,
    pub location_id: Option<u64>,
    pub user_id: Option<u64>,
    pub checkout_token: String,
    pub token: String,
    pub customer: Customer,
    pub billing_address: Address,
    pub shipping_address: Address,
    pub line_items: Vec<LineItem>,
    pub shipping_lines: Vec<ShippingLine>,
    pub discount_codes: Vec<DiscountCode>,
}

impl Order {
    /// The SKUs of the line items that have one, in line order.
    pub fn skus(&self) -> Vec<&str> {
        self.line_items.iter().filter_map(|line| line.sku.as_deref()).collect()
    }

    /// `total_price` in integer minor units (`"69.37"` → 6937).
    pub fn total_price_minor(&self) -> Option<i64> {
        parse_minor(&self.total_price)
    }
}

/// An amount in the shop currency and in the buyer's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct PriceSet {
    pub shop_money: Money,
    pub presentment_money: Money,
}

/// A decimal amount with its currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Money {
    pub amount: String,
    pub currency_code: String,
}

/// A name/value pair the buyer attached at checkout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct NoteAttribute {
    pub name: String,
    pub value: String,
}

/// The buyer's customer record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Customer {
    pub id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub orders_count: u32,
    pub state: String,
    pub total_spent: String,
    pub verified_email: bool,
    pub tags: String,
    pub currency: String,
    pub phone: Option<String>,
}

/// A billing or shipping address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Address {
    pub first_name: String,
    pub last_name: String,
    pub company: Option<String>,
    pub address1: String,
    /// Shopify omits the key rather than sending `null` on some addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address2: Option<String>,
    pub city: String,
    pub province: String,
    pub province_code: String,
    pub country: String,
    pub country_code: String,
    pub zip: String,
    pub phone: Option<String>,
    /// Present on geocoded (usually billing) addresses only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Present on geocoded (usually billing) addresses only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

/// One product variant ordered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct LineItem {
    pub id: u64,
    pub variant_id: u64,
    pub product_id: u64,
    /// Merchants may leave a variant's SKU empty; Shopify then omits the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    pub title: String,
    pub variant_title: Option<String>,
    pub vendor: String,
    pub quantity: u32,
    pub price: String,
    pub total_discount: String,
    pub grams: u32,
    pub taxable: bool,
    pub requires_shipping: bool,
    pub fulfillment_status: Option<String>,
    pub gift_card: bool,
    pub tax_lines: Vec<TaxLine>,
}

/// A tax charged on a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct TaxLine {
    pub title: String,
    pub price: String,
    pub rate: f64,
}

/// The shipping method chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ShippingLine {
    pub code: String,
    pub title: String,
    pub price: String,
    pub source: String,
}

/// A discount code applied to the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DiscountCode {
    pub code: String,
    pub amount: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Formats integer minor units the way Shopify writes money: `1999` → `"19.99"`.
pub fn format_minor(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    format!("{sign}{}.{:02}", magnitude / 100, magnitude % 100)
}

/// Parses a Shopify money string into integer minor units: `"19.99"` → `1999`.
///
/// Returns `None` for anything but an optional `-`, digits and at most two decimals.
pub fn parse_minor(amount: &str) -> Option<i64> {
    let (negative, digits) = match amount.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, amount),
    };
    let (units, cents) = digits.split_once('.').unwrap_or((digits, ""));
    if units.is_empty() || cents.len() > 2 || !units.bytes().chain(cents.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let cents = format!("{cents:0<2}");
    let value = units.parse::<i64>().ok()?.checked_mul(100)?.checked_add(cents.parse::<i64>().ok()?)?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_through_minor_units() {
        for (minor, text) in [(1999, "19.99"), (0, "0.00"), (5, "0.05"), (-500, "-5.00")] {
            assert_eq!(format_minor(minor), text);
            assert_eq!(parse_minor(text), Some(minor));
        }
        assert_eq!(parse_minor("7.3"), Some(730));
        assert_eq!(parse_minor("12"), Some(1200));
        for bad in ["", ".5", "1.234", "1,00", "abc", "1.-5"] {
            assert_eq!(parse_minor(bad), None, "{bad}");
        }
    }

    /// The reference fixture parses into [`Order`], so the types carry Shopify's shape.
    #[test]
    fn the_reference_fixture_parses() {
        let fixture =
            std::fs::read_to_string(crate::test_support::FIXTURE_PATH).expect("read tests/fixtures/shopify-order.json");
        let order: Order = serde_json::from_str(&fixture).expect("the fixture is an Order");
        assert_eq!(order.name, "#1042");
        assert_eq!(order.total_price_minor(), Some(6937));
        assert_eq!(order.skus(), ["TSHIRT-BLK-M", "MUG-WHT"]);
        assert_eq!(order.line_items[2].sku, None);
    }
}
