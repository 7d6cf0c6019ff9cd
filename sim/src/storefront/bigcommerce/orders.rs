//! A storefront order in BigCommerce's v2 shape: money as strings with four decimals,
//! dates in RFC 2822, the lines under `consignments[].shipping[].line_items` when asked for.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::storefront::order::{Address, Order, parse_minor};

/// `"12.34"` → `"12.3400"`, as BigCommerce writes money.
fn money(amount: &str) -> String {
    let minor = parse_minor(amount).unwrap_or(0);
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}00", minor.abs() / 100, minor.abs() % 100)
}

/// RFC 3339 → RFC 2822 in UTC, as the v2 API writes dates.
fn date(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).strftime("%a, %d %b %Y %H:%M:%S %z").to_string())
        .unwrap_or_default()
}

fn address(a: &Address, email: &str) -> Value {
    json!({
        "first_name": a.first_name, "last_name": a.last_name, "company": a.company.clone().unwrap_or_default(),
        "street_1": a.address1, "street_2": a.address2.clone().unwrap_or_default(), "city": a.city,
        "state": a.province, "zip": a.zip, "country": a.country, "country_iso2": a.country_code,
        "phone": a.phone.clone().unwrap_or_default(), "email": email,
    })
}

/// The v2 order for `order`; `lines` embeds the line items as
/// `include=consignments.line_items` does. `variants` maps variant ids to SKUs.
pub(super) fn v2_order(order: &Order, lines: bool, variants: &BTreeMap<u64, String>) -> Value {
    let id = order.order_number;
    let status = if order.cancelled_at.is_some() { (5, "Cancelled") } else { (11, "Awaiting Fulfillment") };
    let items_total: u32 = order.line_items.iter().map(|l| l.quantity).sum();
    let mut v2 = json!({
        "id": id,
        "customer_id": order.customer.id % 100_000,
        "date_created": date(&order.created_at),
        "date_modified": date(&order.updated_at),
        "status_id": status.0,
        "status": status.1,
        "subtotal_inc_tax": money(&order.subtotal_price),
        "total_tax": money(&order.total_tax),
        "total_inc_tax": money(&order.total_price),
        "discount_amount": money(&order.total_discounts),
        "shipping_cost_inc_tax": money(&order.total_shipping_price_set.shop_money.amount),
        "items_total": items_total,
        "currency_code": order.currency,
        "payment_status": if order.financial_status == "paid" { "captured" } else { "pending" },
        "payment_method": order.gateway,
        "customer_message": order.note.clone().unwrap_or_default(),
        "billing_address": address(&order.billing_address, &order.email),
        "products": { "url": format!("/v2/orders/{id}/products"), "resource": format!("/orders/{id}/products") },
        "channel_id": 1,
        "external_id": null,
    });
    if lines {
        let line_items: Vec<Value> = order
            .line_items
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let sku = line.sku.clone().unwrap_or_default();
                let variant = variants.iter().find(|(_, s)| **s == sku).map(|(id, _)| *id);
                let total = parse_minor(&line.price).unwrap_or(0) * i64::from(line.quantity);
                json!({
                    "id": id * 100 + i as u64 + 1, "order_id": id, "product_id": line.product_id % 100_000,
                    "variant_id": variant, "name": line.title, "sku": sku, "quantity": line.quantity,
                    "base_price": money(&line.price), "price_inc_tax": money(&line.price),
                    "total_inc_tax": money(&format!("{}.{:02}", total / 100, total % 100)),
                })
            })
            .collect();
        v2["consignments"] = json!([{ "shipping": [{ "id": 1, "line_items": line_items, "shipping_address": address(&order.shipping_address, &order.email) }] }]);
    }
    v2
}
