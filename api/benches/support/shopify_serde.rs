//! The quickstart's Shopify order → canonical SalesOrder v1 mapping written by hand with
//! serde: the yardstick the jq mapping is measured against (`benches/mapping.rs`), and
//! checked to give exactly the jq mapping's output (`tests/bench_serde_mapping.rs`).

use serde::{Deserialize, Serialize};

/// The Shopify order fields the mapping reads.
#[derive(Deserialize)]
pub struct Order<'a> {
    id: u64,
    #[serde(borrow)]
    name: Option<&'a str>,
    email: Option<String>,
    created_at: Option<&'a str>,
    updated_at: Option<&'a str>,
    currency: Option<&'a str>,
    #[serde(default)]
    customer: Option<Customer>,
    #[serde(borrow)]
    line_items: Vec<LineItem<'a>>,
    subtotal_price: Option<&'a str>,
    total_tax: Option<&'a str>,
    total_discounts: Option<&'a str>,
    total_price: Option<&'a str>,
    #[serde(borrow)]
    total_shipping_price_set: Option<PriceSet<'a>>,
}

#[derive(Deserialize)]
struct Customer {
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

#[derive(Deserialize)]
struct LineItem<'a> {
    id: u64,
    variant_id: Option<u64>,
    sku: Option<String>,
    title: Option<String>,
    quantity: u64,
    price: Option<&'a str>,
    total_discount: Option<&'a str>,
    #[serde(default, borrow)]
    tax_lines: Vec<TaxLine<'a>>,
}

#[derive(Deserialize)]
struct TaxLine<'a> {
    price: Option<&'a str>,
}

#[derive(Deserialize)]
struct PriceSet<'a> {
    #[serde(borrow)]
    shop_money: Option<Money<'a>>,
}

#[derive(Deserialize)]
struct Money<'a> {
    amount: Option<&'a str>,
}

/// The canonical SalesOrder v1, members in the order the jq mapping writes them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SalesOrder<'a> {
    order_id: String,
    external_id: String,
    source_system: &'static str,
    source_version: Option<String>,
    order_number: Option<&'a str>,
    placed_at: Option<String>,
    currency: Option<&'a str>,
    customer: CanonicalCustomer<'a>,
    lines: Vec<Line<'a>>,
    totals: Totals,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CanonicalCustomer<'a> {
    email: String,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    line_id: String,
    sku: String,
    description: Option<&'a str>,
    quantity: Quantity,
    unit_price: i64,
    discount: i64,
    tax: i64,
}

#[derive(Serialize)]
struct Quantity {
    value: u64,
    uom: &'static str,
}

#[derive(Serialize)]
struct Totals {
    subtotal: i64,
    tax: i64,
    shipping: i64,
    discount: i64,
    grand: i64,
}

/// A decimal string in minor units, as the jq `minor` does (`tonumber * 100 | round`).
fn minor(amount: Option<&str>) -> i64 {
    amount.map_or(0, |a| (a.parse::<f64>().expect("an amount is a number") * 100.0).round() as i64)
}

/// An RFC 3339 time in UTC, as `fromdate | todate` does.
fn utc(time: Option<&str>) -> Option<String> {
    let ts: jiff::Timestamp = time?.parse().expect("an RFC 3339 time");
    Some(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Maps a Shopify order to the canonical SalesOrder, as the quickstart's jq does.
pub fn map<'a>(order: &'a Order<'a>) -> SalesOrder<'a> {
    let customer = order.customer.as_ref();
    let email = order.email.as_deref().or(customer.and_then(|c| c.email.as_deref())).unwrap_or("");
    SalesOrder {
        order_id: format!("shopify:{}", order.id),
        external_id: order.id.to_string(),
        source_system: "shopify",
        source_version: utc(order.updated_at.or(order.created_at)),
        order_number: order.name,
        placed_at: utc(order.created_at),
        currency: order.currency,
        customer: CanonicalCustomer {
            email: email.to_ascii_lowercase(),
            first_name: customer.and_then(|c| c.first_name.as_deref()),
            last_name: customer.and_then(|c| c.last_name.as_deref()),
        },
        lines: order
            .line_items
            .iter()
            .map(|l| Line {
                line_id: l.id.to_string(),
                sku: match &l.sku {
                    Some(sku) => sku.clone(),
                    None => format!("variant:{}", l.variant_id.map_or_else(|| "null".to_string(), |v| v.to_string())),
                },
                description: l.title.as_deref(),
                quantity: Quantity { value: l.quantity, uom: "EA" },
                unit_price: minor(l.price),
                discount: minor(l.total_discount),
                tax: l.tax_lines.iter().map(|t| minor(t.price)).sum(),
            })
            .collect(),
        totals: Totals {
            subtotal: minor(order.subtotal_price),
            tax: minor(order.total_tax),
            shipping: minor(order.total_shipping_price_set.as_ref().and_then(|s| s.shop_money.as_ref()?.amount)),
            discount: minor(order.total_discounts),
            grand: minor(order.total_price),
        },
    }
}

/// The whole path: the order's bytes to the canonical record's JSON.
pub fn map_bytes(payload: &[u8]) -> Vec<u8> {
    let order: Order<'_> = serde_json::from_slice(payload).expect("a Shopify order");
    serde_json::to_vec(&map(&order)).expect("a SalesOrder serializes")
}

/// The quickstart's Shopify order mapping (its jq program).
pub fn quickstart_program() -> String {
    #[derive(Deserialize)]
    struct Doc {
        metadata: Meta,
        spec: entrepot_api::resource::MappingSpec,
    }
    #[derive(Deserialize)]
    struct Meta {
        name: String,
    }
    include_str!("../../../examples/quickstart/mappings.yaml")
        .split("\n---\n")
        .filter_map(|doc| serde_saphyr::from_str::<Doc>(doc).ok())
        .find(|d| d.metadata.name == "shopify-order-to-canonical")
        .expect("the quickstart has the Shopify order mapping")
        .spec
        .program
}

/// The fixture order (4 KB).
pub const FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/shopify-order.json");
