//! Channel availability: how much of a location's stock each sales channel is shown.
//!
//! A storefront or marketplace that shows more than the warehouse can ship oversells. The
//! figure a channel gets is computed from the canonical `InventorySnapshot` the WMS or
//! ERP reported, by the target's [`ChannelAvailability`] rule:
//!
//! ```text
//! sellable = min(available, onHand − allocated) − safety stock
//! channel  = floor(min(sellable × percent / 100, max)), never below 0
//! ```
//!
//! Rounding down and taking the lower of the two stock figures both err on the side of
//! showing less: an undersell costs a sale, an oversell costs a cancelled order and a
//! marketplace penalty.

use serde_json::Value;

use entrepot_api::resource::ChannelAvailability;

/// What one channel is shown of one snapshot, and what it was computed from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelQuantity {
    /// On hand less reserved (or the snapshot's `available`, when lower).
    pub sellable: f64,
    /// The safety stock held back.
    pub safety_stock: f64,
    /// What the channel is shown.
    pub available: f64,
}

/// The rule applied to stock figures; pure.
pub fn compute(
    rule: &ChannelAvailability,
    sku: &str,
    on_hand: f64,
    allocated: f64,
    available: Option<f64>,
) -> ChannelQuantity {
    let mut sellable = on_hand - allocated;
    if let Some(available) = available {
        sellable = sellable.min(available);
    }
    let safety_stock = rule.safety_stock_by_sku.get(sku).copied().unwrap_or(rule.safety_stock);
    let mut shown = (sellable - safety_stock) * rule.percent.unwrap_or(100.0) / 100.0;
    if let Some(max) = rule.max {
        shown = shown.min(max);
    }
    // NaN (from a NaN in the rule) and negatives both become 0.
    let shown = if shown.is_nan() { 0.0 } else { shown.floor().max(0.0) };
    ChannelQuantity { sellable, safety_stock, available: shown }
}

/// Replaces the `available` quantity of a canonical `InventorySnapshot` with the
/// channel's. The error names the field that is missing or not a number.
pub fn apply(rule: &ChannelAvailability, snapshot: &mut Value) -> Result<ChannelQuantity, String> {
    let number = |pointer: &str| -> Result<Option<f64>, String> {
        match snapshot.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                v.as_f64().filter(|n| n.is_finite()).map(Some).ok_or_else(|| format!("{pointer} is {v}, not a number"))
            }
        }
    };
    let on_hand = number("/onHand/value")?
        .ok_or("the record has no /onHand/value: channel availability needs a canonical InventorySnapshot")?;
    let allocated = number("/allocated/value")?.unwrap_or(0.0);
    let available = number("/available/value")?;
    let sku = snapshot.get("sku").and_then(Value::as_str).unwrap_or_default();
    let quantity = compute(rule, sku, on_hand, allocated, available);
    let uom = snapshot.pointer("/onHand/uom").cloned().unwrap_or_else(|| Value::from("EA"));
    let shown = serde_json::Number::from_f64(quantity.available).map_or(Value::from(0), Value::Number);
    // Whole numbers stay integers in the JSON a channel receives (`7`, not `7.0`).
    let shown = match shown.as_f64() {
        Some(n) if n.fract() == 0.0 && n <= u64::MAX as f64 => Value::from(n as u64),
        _ => shown,
    };
    snapshot["available"] = serde_json::json!({ "value": shown, "uom": uom });
    Ok(quantity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn rule(safety_stock: f64, percent: Option<f64>, max: Option<f64>) -> ChannelAvailability {
        ChannelAvailability { safety_stock, percent, max, ..Default::default() }
    }

    #[test]
    fn on_hand_less_reserved_less_safety_stock_shared_and_capped() {
        // 100 on hand, 30 reserved, 5 safety: 65 sellable after safety.
        assert_eq!(compute(&rule(5.0, None, None), "A", 100.0, 30.0, None).available, 65.0);
        // A marketplace with 60% of it: 39.
        assert_eq!(compute(&rule(5.0, Some(60.0), None), "A", 100.0, 30.0, None).available, 39.0);
        // Capped at 20.
        assert_eq!(compute(&rule(5.0, Some(60.0), Some(20.0)), "A", 100.0, 30.0, None).available, 20.0);
        // Rounded down: 7 × 50% = 3.5 → 3.
        assert_eq!(compute(&rule(0.0, Some(50.0), None), "A", 7.0, 0.0, None).available, 3.0);
        // More reserved than on hand (a late count) and stock under safety stock: 0, never negative.
        assert_eq!(compute(&rule(0.0, None, None), "A", 4.0, 9.0, None).available, 0.0);
        assert_eq!(compute(&rule(10.0, None, None), "A", 8.0, 0.0, None).available, 0.0);
        // The source's own lower `available` (4 on hold) wins.
        assert_eq!(compute(&rule(0.0, None, None), "A", 20.0, 6.0, Some(10.0)).available, 10.0);
    }

    #[test]
    fn per_sku_safety_stock_replaces_the_default() {
        let mut r = rule(2.0, None, None);
        r.safety_stock_by_sku.insert("HOT".into(), 10.0);
        assert_eq!(compute(&r, "HOT", 50.0, 0.0, None).available, 40.0);
        assert_eq!(compute(&r, "COLD", 50.0, 0.0, None).available, 48.0);
    }

    #[test]
    fn a_snapshot_gets_the_channel_figure_and_keeps_its_unit() {
        let mut snapshot = json!({
            "sku": "SKU-1", "locationId": "DC-1",
            "onHand": {"value": 120, "uom": "EA"}, "allocated": {"value": 20, "uom": "EA"},
            "available": {"value": 100, "uom": "EA"}
        });
        let q = apply(&rule(4.0, Some(50.0), None), &mut snapshot).unwrap();
        assert_eq!((q.sellable, q.safety_stock, q.available), (100.0, 4.0, 48.0));
        assert_eq!(snapshot["available"], json!({"value": 48, "uom": "EA"}));
        assert_eq!(snapshot["onHand"]["value"], 120, "the rest of the snapshot is left alone");
    }

    #[test]
    fn a_record_that_is_not_a_snapshot_is_refused_naming_the_field() {
        let err = apply(&rule(0.0, None, None), &mut json!({"orderId": "1"})).unwrap_err();
        assert!(err.contains("/onHand/value"), "{err}");
        let err = apply(&rule(0.0, None, None), &mut json!({"onHand": {"value": "12"}})).unwrap_err();
        assert!(err.contains("/onHand/value is \"12\", not a number"), "{err}");
    }

    proptest! {
        /// Whatever the figures and the rule: never negative, a whole number, never more than
        /// what can be shipped after safety stock, never more than the cap; and channels
        /// whose percents add up to at most 100 never show more, together, than can be shipped.
        #[test]
        fn never_negative_never_more_than_shippable(
            on_hand in 0.0f64..10_000.0, allocated in 0.0f64..10_000.0, held in proptest::option::of(0.0f64..10_000.0),
            safety in 0.0f64..50.0, split in 0.0f64..100.0, max in proptest::option::of(0.0f64..500.0),
        ) {
            let shippable = (on_hand - allocated).min(held.unwrap_or(f64::INFINITY)) - safety;
            let a = compute(&rule(safety, Some(split), max), "S", on_hand, allocated, held).available;
            let b = compute(&rule(safety, Some(100.0 - split), None), "S", on_hand, allocated, held).available;
            for q in [a, b] {
                prop_assert!(q >= 0.0 && q.fract() == 0.0);
                prop_assert!(q <= shippable.max(0.0));
            }
            prop_assert!(a <= max.unwrap_or(f64::INFINITY));
            prop_assert!(a + b <= shippable.max(0.0) + 1e-9);
        }
    }
}
