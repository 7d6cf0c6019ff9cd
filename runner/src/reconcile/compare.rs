//! The comparison itself, pure: records of both systems, already in the same shape and
//! keyed, in; counts, sample keys and the source records to repair, out.

use std::collections::BTreeMap;

use serde_json::Value;

use entrepot_api::reconcile_summary::DriftSamples;

/// One listed record, ready to compare.
#[derive(Clone, Debug, PartialEq)]
pub struct Keyed {
    /// `compare.key`'s value.
    pub key: String,
    /// `compare.fields`' values, in order.
    pub fields: Vec<Value>,
    /// Whether the record's time is in the window (or it has none).
    pub in_window: bool,
}

/// What the comparison found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Distinct keys compared.
    pub compared: u64,
    /// Equal in both.
    pub matched: u64,
    /// In the source's window, not in the target.
    pub missing_in_target: u64,
    /// In the target's window, not in the source.
    pub missing_in_source: u64,
    /// In both, with different fields.
    pub mismatched: u64,
    /// Some keys of each kind.
    pub samples: DriftSamples,
    /// Positions in the source list of the records to send again: missing in the
    /// target or different there.
    pub to_repair: Vec<usize>,
}

/// Compares `source` with `target`, keeping up to `samples` keys of each kind of drift.
/// A key listed twice on one side counts once, as its last listing.
pub fn compare(source: &[Keyed], target: &[Keyed], samples: usize) -> Comparison {
    let by_key = |records: &[Keyed]| -> BTreeMap<String, usize> {
        records.iter().enumerate().map(|(i, r)| (r.key.clone(), i)).collect()
    };
    let (sources, targets) = (by_key(source), by_key(target));
    let mut c = Comparison::default();
    let sample = |list: &mut Vec<String>, key: &str| {
        if list.len() < samples {
            list.push(key.to_string());
        }
    };
    for (key, &i) in &sources {
        let record = &source[i];
        if !record.in_window {
            continue;
        }
        c.compared += 1;
        match targets.get(key).map(|&j| &target[j]) {
            None => {
                c.missing_in_target += 1;
                sample(&mut c.samples.missing_in_target, key);
                c.to_repair.push(i);
            }
            Some(other) if !same_all(&record.fields, &other.fields) => {
                c.mismatched += 1;
                sample(&mut c.samples.mismatched, key);
                c.to_repair.push(i);
            }
            Some(_) => c.matched += 1,
        }
    }
    for (key, &j) in &targets {
        if target[j].in_window && !sources.contains_key(key) {
            c.compared += 1;
            c.missing_in_source += 1;
            sample(&mut c.samples.missing_in_source, key);
        }
    }
    c.to_repair.sort_unstable();
    c
}

fn same_all(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

/// JSON equality where numbers compare by value: `2` (a mapping's integer) equals `2.0`
/// (an API's float).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => same_all(x, y),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn keyed(key: &str, total: Value, in_window: bool) -> Keyed {
        Keyed { key: key.into(), fields: vec![total], in_window }
    }

    #[test]
    fn each_kind_of_drift_is_counted_and_the_repairs_are_the_source_records() {
        let source = [
            keyed("a", json!(100), true),        // matched
            keyed("b", json!(200), true),        // missing in target
            keyed("c", json!(300), true),        // mismatched
            keyed("old", json!(1), false),       // out of the window: not counted
            keyed("e", json!([{"q": 2}]), true), // matched, 2 == 2.0
        ];
        let target = [
            keyed("a", json!(100), true),
            keyed("c", json!(301), true),
            keyed("d", json!(400), true),   // missing in source
            keyed("gone", json!(9), false), // out of the window: not counted
            keyed("old", json!(2), true),   // the source has it, out of its window
            keyed("e", json!([{"q": 2.0}]), true),
        ];
        let c = compare(&source, &target, 10);
        assert_eq!((c.compared, c.matched, c.missing_in_target, c.missing_in_source, c.mismatched), (5, 2, 1, 1, 1));
        assert_eq!(c.samples.missing_in_target, ["b"]);
        assert_eq!(c.samples.missing_in_source, ["d"]);
        assert_eq!(c.samples.mismatched, ["c"]);
        assert_eq!(c.to_repair, [1, 2]);
    }

    #[test]
    fn samples_are_capped_and_nothing_to_compare_is_no_drift() {
        let source: Vec<Keyed> = (0..5).map(|i| keyed(&format!("k{i}"), json!(i), true)).collect();
        let c = compare(&source, &[], 2);
        assert_eq!((c.missing_in_target, c.samples.missing_in_target.len()), (5, 2));
        assert_eq!(compare(&[], &[], 10), Comparison::default());
    }

    #[test]
    fn numbers_compare_by_value_and_everything_else_exactly() {
        assert!(same(&json!({"a": [1, 2.5]}), &json!({"a": [1.0, 2.5]})));
        assert!(!same(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!same(&json!("1"), &json!(1)));
    }
}
