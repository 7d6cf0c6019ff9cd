//! Realistic Shopify orders, reproducible from a seed.
//!
//! The same seed and catalogue give the same sequence of orders (ids, names, customers,
//! lines, totals, timestamps) in every run, so a failing end-to-end test can be replayed.
//! Totals are consistent the way Shopify's are: `subtotal = line items - discounts` and
//! `total = subtotal + tax + shipping`.

use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::catalog;
use super::order::{
    Address, DiscountCode, LineItem, Money, NoteAttribute, Order, PriceSet, ShippingLine, TaxLine, format_minor,
};
use super::shopper;

/// When the first generated order is placed unless told otherwise: the reference fixture's
/// `2026-11-20T14:23:11-05:00`.
pub const DEFAULT_START: Timestamp = Timestamp::constant(1_795_202_591, 0);

/// California's state sales tax, applied to every taxable line, in basis points.
const TAX_RATE_BASIS_POINTS: i64 = 725;

const TAGS: [&str; 4] = ["vip", "wholesale", "holiday-2026", "first-order"];
const LANDING_SITES: [&str; 3] = ["/", "/collections/sale", "/products/classic-tee"];

/// Makes orders from a seeded random source.
#[derive(Debug, Clone)]
pub struct OrderGenerator {
    rng: Xoshiro256PlusPlus,
    skus: Vec<String>,
    currency: String,
    offset: Offset,
    clock: Timestamp,
    last_order_id: u64,
    last_order_number: u64,
    last_line_id: u64,
}

impl OrderGenerator {
    /// A generator picking lines from `skus`; `None` if `skus` is empty.
    pub fn new(seed: u64, skus: Vec<String>) -> Option<Self> {
        if skus.is_empty() {
            return None;
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let last_order_id = 5_678_900_000_000 + rng.random_range(0..1_000_000);
        Some(Self {
            rng,
            skus,
            currency: "USD".to_owned(),
            offset: Offset::constant(-5),
            clock: DEFAULT_START,
            last_order_id,
            last_order_number: 1000,
            last_line_id: 13_000_000_000_000,
        })
    }

    /// Sets the shop currency (ISO 4217), `USD` by default.
    pub fn with_currency(mut self, currency: impl Into<String>) -> Self {
        self.currency = currency.into();
        self
    }

    /// Sets when the first order is placed and the shop's UTC offset; later orders follow
    /// at random intervals of up to ten minutes.
    pub fn starting_at(mut self, start: Timestamp, offset: Offset) -> Self {
        self.clock = start;
        self.offset = offset;
        self
    }

    /// The next order, with one to four distinct SKUs from the catalogue.
    pub fn next_order(&mut self) -> Order {
        let wanted = self.rng.random_range(1..=4).min(self.skus.len());
        let mut chosen: Vec<String> = Vec::with_capacity(wanted);
        while chosen.len() < wanted {
            let sku = &self.skus[self.rng.random_range(0..self.skus.len())];
            if !chosen.contains(sku) {
                chosen.push(sku.clone());
            }
        }
        self.build(&chosen)
    }

    /// The next order, with exactly one line for `sku`, which need not be in the catalogue
    /// (e.g. a SKU the ERP does not know, to exercise business rejections).
    pub fn order_with_sku(&mut self, sku: &str) -> Order {
        self.build(&[sku.to_owned()])
    }

    /// The next order, with one line per given SKU, in that order.
    pub fn order_with_skus(&mut self, skus: &[&str]) -> Order {
        let skus: Vec<String> = skus.iter().map(|sku| (*sku).to_owned()).collect();
        self.build(&skus)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        shopper::pick(&mut self.rng, items)
    }

    fn timestamp(&self, at: Timestamp) -> String {
        at.to_zoned(TimeZone::fixed(self.offset)).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }

    fn build(&mut self, skus: &[String]) -> Order {
        self.last_order_number += 1;
        self.last_order_id += self.rng.random_range(1_000..=90_000);
        self.clock += SignedDuration::from_secs(self.rng.random_range(20..=600));
        let created = self.clock;
        let updated = created + SignedDuration::from_secs(self.rng.random_range(0..=180));
        let processed = created - SignedDuration::from_secs(1);

        let customer = shopper::customer(&mut self.rng, &self.currency);
        let billing = shopper::address(&mut self.rng, &customer.first_name, &customer.last_name, true);
        let shipping = if self.rng.random_bool(0.8) {
            Address { latitude: None, longitude: None, ..billing.clone() }
        } else {
            let first = *self.pick(&shopper::FIRST_NAMES);
            shopper::address(&mut self.rng, first, &customer.last_name, false)
        };

        let mut lines = self.lines(skus);
        let total_line_items: i64 = lines.iter().map(|(line, _)| line_amount(line)).sum();
        let discount_codes = self.discount(&mut lines);
        let total_discounts: i64 = lines.iter().map(|(_, discount)| discount).sum();
        let line_items: Vec<LineItem> =
            lines.into_iter().map(|(line, discount)| self.finish_line(line, discount)).collect();
        let total_tax: i64 = line_items
            .iter()
            .flat_map(|line| &line.tax_lines)
            .filter_map(|tax| super::order::parse_minor(&tax.price))
            .sum();
        let subtotal = total_line_items - total_discounts;
        let shipping_line = self.shipping(subtotal);
        let shipping_minor = super::order::parse_minor(&shipping_line.price).unwrap_or(0);
        let total = subtotal + total_tax + shipping_minor;
        let total_weight = line_items.iter().map(|line| u64::from(line.grams) * u64::from(line.quantity)).sum();

        let email = customer.email.clone();
        let shipping_money = Money { amount: format_minor(shipping_minor), currency_code: self.currency.clone() };
        Order {
            id: self.last_order_id,
            admin_graphql_api_id: format!("gid://shopify/Order/{}", self.last_order_id),
            name: format!("#{}", self.last_order_number),
            order_number: self.last_order_number,
            contact_email: email.clone(),
            email,
            phone: None,
            created_at: self.timestamp(created),
            updated_at: self.timestamp(updated),
            processed_at: self.timestamp(processed),
            cancelled_at: None,
            cancel_reason: None,
            closed_at: None,
            currency: self.currency.clone(),
            presentment_currency: self.currency.clone(),
            financial_status: if self.rng.random_bool(0.9) { "paid" } else { "pending" }.to_owned(),
            fulfillment_status: None,
            confirmed: true,
            test: false,
            taxes_included: false,
            total_price: format_minor(total),
            subtotal_price: format_minor(subtotal),
            total_line_items_price: format_minor(total_line_items),
            total_tax: format_minor(total_tax),
            total_discounts: format_minor(total_discounts),
            total_weight,
            total_shipping_price_set: PriceSet {
                shop_money: shipping_money.clone(),
                presentment_money: shipping_money,
            },
            tags: self.tags(),
            note: self.rng.random_bool(0.1).then(|| "Please leave the parcel at the front desk.".to_owned()),
            note_attributes: if self.rng.random_bool(0.2) {
                vec![NoteAttribute { name: "gift_wrap".to_owned(), value: "yes".to_owned() }]
            } else {
                Vec::new()
            },
            source_name: "web".to_owned(),
            gateway: "shopify_payments".to_owned(),
            payment_gateway_names: vec!["shopify_payments".to_owned()],
            browser_ip: format!("203.0.113.{}", self.rng.random_range(1..=254)),
            landing_site: (*self.pick(&LANDING_SITES)).to_owned(),
            referring_site: self.rng.random_bool(0.6).then(|| "https://www.google.com/".to_owned()),
            buyer_accepts_marketing: self.rng.random_bool(0.5),
            customer_locale: "en-US".to_owned(),
            location_id: None,
            user_id: None,
            checkout_token: self.token(),
            token: self.token(),
            customer,
            billing_address: billing,
            shipping_address: shipping,
            line_items,
            shipping_lines: vec![shipping_line],
            discount_codes,
        }
    }

    /// Lines without tax yet, each with its discount (0 until [`Self::discount`] runs).
    fn lines(&mut self, skus: &[String]) -> Vec<(LineItem, i64)> {
        skus.iter()
            .map(|sku| {
                let product = catalog::product(sku);
                self.last_line_id += self.rng.random_range(1..=5);
                let line = LineItem {
                    id: self.last_line_id,
                    variant_id: product.variant_id,
                    product_id: product.product_id,
                    sku: Some(product.sku),
                    title: product.title,
                    variant_title: product.variant_title,
                    vendor: product.vendor,
                    quantity: self.rng.random_range(1..=3),
                    price: format_minor(product.price_minor),
                    total_discount: format_minor(0),
                    grams: product.grams,
                    taxable: true,
                    requires_shipping: true,
                    fulfillment_status: None,
                    gift_card: false,
                    tax_lines: Vec::new(),
                };
                (line, 0)
            })
            .collect()
    }

    /// A quarter of the orders use a 5.00 welcome code, charged to the first line it fits.
    fn discount(&mut self, lines: &mut [(LineItem, i64)]) -> Vec<DiscountCode> {
        const AMOUNT: i64 = 500;
        if !self.rng.random_bool(0.25) {
            return Vec::new();
        }
        let Some((line, discount)) = lines.iter_mut().find(|(line, _)| line_amount(line) > AMOUNT) else {
            return Vec::new();
        };
        *discount = AMOUNT;
        line.total_discount = format_minor(AMOUNT);
        vec![DiscountCode {
            code: "WELCOME5".to_owned(),
            amount: format_minor(AMOUNT),
            kind: "fixed_amount".to_owned(),
        }]
    }

    fn finish_line(&self, mut line: LineItem, discount: i64) -> LineItem {
        let taxable = line_amount(&line) - discount;
        // Rounded half up to the cent, as Shopify rounds per line.
        let tax = (taxable * TAX_RATE_BASIS_POINTS + 5_000) / 10_000;
        line.tax_lines = vec![TaxLine {
            title: "CA State Tax".to_owned(),
            price: format_minor(tax),
            rate: TAX_RATE_BASIS_POINTS as f64 / 10_000.0,
        }];
        line
    }

    fn shipping(&mut self, subtotal: i64) -> ShippingLine {
        let (code, title, price) = if subtotal >= 10_000 {
            ("FREE", "Free Shipping over 100.00", 0)
        } else if self.rng.random_bool(0.8) {
            ("STANDARD", "Standard Shipping", 730)
        } else {
            ("EXPRESS", "Express Shipping", 1490)
        };
        ShippingLine {
            code: code.to_owned(),
            title: title.to_owned(),
            price: format_minor(price),
            source: "shopify".to_owned(),
        }
    }

    fn tags(&mut self) -> String {
        let tags: Vec<&str> = TAGS.iter().copied().filter(|_| self.rng.random_bool(0.3)).collect();
        tags.join(", ")
    }

    fn token(&mut self) -> String {
        format!("{:016x}{:016x}", self.rng.random::<u64>(), self.rng.random::<u64>())
    }
}

/// `quantity × price` of a line in minor units.
fn line_amount(line: &LineItem) -> i64 {
    i64::from(line.quantity) * super::order::parse_minor(&line.price).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storefront::order::parse_minor;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn generator(seed: u64) -> OrderGenerator {
        let skus = catalog::DEFAULT_SKUS.map(str::to_owned).to_vec();
        OrderGenerator::new(seed, skus).expect("a non-empty catalogue")
    }

    fn orders(seed: u64, count: usize) -> Vec<Order> {
        let mut generator = generator(seed);
        (0..count).map(|_| generator.next_order()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_orders() {
        assert_eq!(orders(42, 20), orders(42, 20));
        assert_ne!(orders(42, 20), orders(43, 20));
    }

    #[test]
    fn orders_are_numbered_and_timed_in_sequence() {
        let orders = orders(7, 10);
        for pair in orders.windows(2) {
            assert!(pair[0].id < pair[1].id);
            assert_eq!(pair[0].order_number + 1, pair[1].order_number);
            let first: Timestamp = pair[0].created_at.parse().unwrap();
            let second: Timestamp = pair[1].created_at.parse().unwrap();
            assert!(first < second, "{} then {}", pair[0].created_at, pair[1].created_at);
        }
        assert_eq!(orders[0].name, "#1001");
        assert!(orders[0].created_at.ends_with("-05:00"), "{}", orders[0].created_at);
    }

    #[test]
    fn totals_add_up_like_shopify_totals() {
        for order in orders(3, 50) {
            let money = |text: &str| parse_minor(text).expect("a money string");
            let lines: i64 = order.line_items.iter().map(|line| i64::from(line.quantity) * money(&line.price)).sum();
            let discounts: i64 = order.line_items.iter().map(|l| money(&l.total_discount)).sum();
            let tax: i64 = order.line_items.iter().flat_map(|l| &l.tax_lines).map(|t| money(&t.price)).sum();
            let shipping: i64 = order.shipping_lines.iter().map(|s| money(&s.price)).sum();
            assert_eq!(money(&order.total_line_items_price), lines);
            assert_eq!(money(&order.total_discounts), discounts);
            assert_eq!(money(&order.subtotal_price), lines - discounts);
            assert_eq!(money(&order.total_tax), tax);
            assert_eq!(money(&order.total_price), lines - discounts + tax + shipping, "{}", order.name);
            assert!(order.email.is_ascii() && order.email.contains('@'), "{}", order.email);
            let skus: BTreeSet<_> = order.skus().into_iter().collect();
            assert_eq!(skus.len(), order.line_items.len(), "SKUs within an order are distinct");
        }
    }

    #[test]
    fn an_order_can_carry_a_sku_outside_the_catalogue() {
        let mut generator = generator(1);
        let order = generator.order_with_sku("TSHIRT-XXX");
        assert_eq!(order.skus(), ["TSHIRT-XXX"]);
        let order = generator.order_with_skus(&["MUG-WHT", "NOPE-1"]);
        assert_eq!(order.skus(), ["MUG-WHT", "NOPE-1"]);
        assert!(OrderGenerator::new(1, Vec::new()).is_none());
    }

    fn keys(value: &Value) -> BTreeSet<String> {
        value.as_object().expect("an object").keys().cloned().collect()
    }

    /// Generated orders have the reference fixture's fields, nested ones included.
    #[test]
    fn generated_orders_have_the_fixture_shape() {
        let fixture =
            std::fs::read_to_string(crate::test_support::FIXTURE_PATH).expect("read tests/fixtures/shopify-order.json");
        let fixture: Value = serde_json::from_str(&fixture).unwrap();
        for order in orders(11, 10) {
            let order = serde_json::to_value(&order).unwrap();
            assert_eq!(keys(&order), keys(&fixture));
            assert_eq!(keys(&order["customer"]), keys(&fixture["customer"]));
            assert_eq!(keys(&order["line_items"][0]), keys(&fixture["line_items"][0]));
            assert_eq!(keys(&order["shipping_lines"][0]), keys(&fixture["shipping_lines"][0]));
            for address in ["billing_address", "shipping_address"] {
                let extra: Vec<_> =
                    keys(&order[address]).difference(&keys(&fixture["billing_address"])).cloned().collect();
                assert!(extra.is_empty(), "{address} has unexpected {extra:?}");
            }
        }
    }
}
