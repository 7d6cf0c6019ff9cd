//! Amazon orders as the Orders API v0 returns them, and a seeded generator.

use jiff::Timestamp;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// An amount of money as SP-API writes it: a decimal string and a currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Money {
    /// ISO 4217 code, e.g. `USD`.
    pub currency_code: String,
    /// Decimal amount, e.g. `"19.99"`.
    pub amount: String,
}

impl Money {
    /// `minor` minor units (cents) in `currency`.
    pub fn from_minor(minor: i64, currency: &str) -> Self {
        Self { currency_code: currency.to_owned(), amount: format!("{}.{:02}", minor / 100, minor % 100) }
    }
}

/// A line of an order (`getOrderItems`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AmazonOrderItem {
    /// Amazon's product id.
    #[serde(rename = "ASIN")]
    pub asin: String,
    /// The seller's SKU.
    #[serde(rename = "SellerSKU")]
    pub seller_sku: String,
    /// Unique line id.
    pub order_item_id: String,
    /// Product title.
    pub title: String,
    /// Units ordered.
    pub quantity_ordered: u32,
    /// Units shipped so far.
    pub quantity_shipped: u32,
    /// Price of the line (unit price × quantity).
    pub item_price: Money,
}

/// Buyer details shown to the seller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BuyerInfo {
    /// Amazon's anonymised relay address.
    pub buyer_email: String,
}

/// An order as `getOrders` lists it; the lines are served by `getOrderItems`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AmazonOrder {
    /// `3-7-7` digits, e.g. `902-3159896-1390916`.
    pub amazon_order_id: String,
    /// When the order was placed.
    pub purchase_date: Timestamp,
    /// When the order last changed.
    pub last_update_date: Timestamp,
    /// `Pending`, `Unshipped`, `PartiallyShipped`, `Shipped`, `Canceled`.
    pub order_status: String,
    /// `MFN` (seller fulfilled) or `AFN` (Amazon fulfilled).
    pub fulfillment_channel: String,
    /// e.g. `Amazon.com`.
    pub sales_channel: String,
    /// The order's total.
    pub order_total: Money,
    /// Units not shipped yet.
    pub number_of_items_unshipped: u32,
    /// Units shipped.
    pub number_of_items_shipped: u32,
    /// The marketplace, e.g. `ATVPDKIKX0DER` (US).
    pub marketplace_id: String,
    /// Buyer details.
    pub buyer_info: BuyerInfo,
    /// The lines, served by `getOrderItems` only.
    #[serde(skip)]
    pub items: Vec<AmazonOrderItem>,
}

/// Makes orders from a seeded random source; which SKUs it may sell is decided by the
/// caller (the marketplace only sells what its listings show as available).
#[derive(Debug)]
pub(crate) struct OrderGenerator {
    rng: Xoshiro256PlusPlus,
    currency: String,
    marketplace_id: String,
}

impl OrderGenerator {
    pub(crate) fn new(seed: u64, currency: &str, marketplace_id: &str) -> Self {
        Self {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            currency: currency.to_owned(),
            marketplace_id: marketplace_id.to_owned(),
        }
    }

    pub(crate) fn rng(&mut self) -> &mut Xoshiro256PlusPlus {
        &mut self.rng
    }

    /// An order at `now` for `lines` (SKU, quantity).
    pub(crate) fn order(&mut self, now: Timestamp, lines: &[(String, u32)]) -> AmazonOrder {
        let amazon_order_id = format!(
            "{:03}-{:07}-{:07}",
            self.rng.random_range(100..1000),
            self.rng.random_range(0..10_000_000),
            self.rng.random_range(0..10_000_000)
        );
        let mut total = 0;
        let items: Vec<AmazonOrderItem> = lines
            .iter()
            .map(|(sku, quantity)| {
                let unit_price: i64 = self.rng.random_range(5..=120) * 100 - 1;
                let price = unit_price * i64::from(*quantity);
                total += price;
                AmazonOrderItem {
                    asin: format!("B0{:08X}", self.rng.random_range(0..u32::MAX)),
                    seller_sku: sku.clone(),
                    order_item_id: format!("{:014}", self.rng.random_range(0..100_000_000_000_000u64)),
                    title: format!("Item {sku}"),
                    quantity_ordered: *quantity,
                    quantity_shipped: 0,
                    item_price: Money::from_minor(price, &self.currency),
                }
            })
            .collect();
        let units = lines.iter().map(|(_, quantity)| quantity).sum();
        AmazonOrder {
            buyer_info: BuyerInfo { buyer_email: format!("{:016x}@marketplace.amazon.com", self.rng.random::<u64>()) },
            amazon_order_id,
            purchase_date: now,
            last_update_date: now,
            order_status: "Unshipped".to_owned(),
            fulfillment_channel: "MFN".to_owned(),
            sales_channel: "Amazon.com".to_owned(),
            order_total: Money::from_minor(total, &self.currency),
            number_of_items_unshipped: units,
            number_of_items_shipped: 0,
            marketplace_id: self.marketplace_id.clone(),
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_makes_the_same_orders() {
        let now = Timestamp::UNIX_EPOCH;
        let lines = vec![("SKU-1".to_owned(), 2)];
        let a = OrderGenerator::new(7, "USD", "ATVPDKIKX0DER").order(now, &lines);
        let b = OrderGenerator::new(7, "USD", "ATVPDKIKX0DER").order(now, &lines);
        assert_eq!(a, b);
        assert_eq!(a.amazon_order_id.len(), 19);
        assert_eq!(a.items[0].quantity_ordered, 2);
        assert_eq!(a.number_of_items_unshipped, 2);
        assert_eq!(Money::from_minor(1999, "USD").amount, "19.99");
    }
}
