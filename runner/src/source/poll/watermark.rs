//! The incremental-sync watermark: the highest value of `watermark.field` among the
//! records read, sent back as `watermark.param` on the next run.

use std::cmp::Ordering;

use serde_json::Value;

/// Orders two watermark values, or `None` when they cannot be compared (null, objects,
/// a number against a text that is not one):
/// - numbers numerically (a text holding a number, such as `initial: "0"`, counts as one);
/// - two RFC 3339 timestamps by the instant they name, since APIs write offsets
///   differently, even from one record to the next (`...-05:00` against `...Z`);
/// - other texts as text.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(_), Value::Number(_))
        | (Value::Number(_), Value::String(_))
        | (Value::String(_), Value::Number(_)) => compare_numbers(a, b),
        (Value::String(x), Value::String(y)) => match (x.parse::<jiff::Timestamp>(), y.parse::<jiff::Timestamp>()) {
            (Ok(tx), Ok(ty)) => Some(tx.cmp(&ty)),
            _ => Some(x.cmp(y)),
        },
        _ => None,
    }
}

fn compare_numbers(a: &Value, b: &Value) -> Option<Ordering> {
    let int = |v: &Value| match v {
        Value::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.trim().parse::<i128>().ok(),
        _ => None,
    };
    if let (Some(x), Some(y)) = (int(a), int(b)) {
        return Some(x.cmp(&y));
    }
    let float = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    float(a)?.partial_cmp(&float(b)?)
}

/// The higher of `current` and `candidate`; a candidate that cannot be compared is
/// ignored (a record without the field does not move the watermark).
pub fn higher(current: Option<Value>, candidate: Value) -> Option<Value> {
    match current {
        None => matches!(candidate, Value::String(_) | Value::Number(_)).then_some(candidate),
        Some(current) => match compare(&candidate, &current) {
            Some(Ordering::Greater) => Some(candidate),
            _ => Some(current),
        },
    }
}

/// The watermark as a query parameter value: a text as it is (the source's own format
/// comes back to it), a number in JSON notation.
pub fn as_param(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn timestamps_compare_by_instant_whatever_their_offset() {
        let earlier = json!("2026-11-27T16:05:00+02:00"); // 14:05Z
        let later = json!("2026-11-27T15:30:00Z");
        assert_eq!(compare(&earlier, &later), Some(Ordering::Less));
        // As text the offset form would have won.
        assert!(earlier.as_str() > later.as_str());
        assert_eq!(higher(Some(later.clone()), earlier), Some(later));
    }

    #[test]
    fn numbers_compare_numerically_and_texts_as_text() {
        assert_eq!(compare(&json!(9), &json!(10)), Some(Ordering::Less));
        assert_eq!(compare(&json!(18446744073709551615u64), &json!(-1)), Some(Ordering::Greater));
        assert_eq!(compare(&json!(1.5), &json!(1)), Some(Ordering::Greater));
        assert_eq!(compare(&json!("0"), &json!(42)), Some(Ordering::Less), "an initial text against numbers");
        assert_eq!(compare(&json!("rev-9"), &json!("rev-10")), Some(Ordering::Greater));
        assert_eq!(compare(&json!("abc"), &json!(3)), None);
        assert_eq!(compare(&json!(null), &json!(3)), None);
    }

    #[test]
    fn records_without_the_field_do_not_move_it() {
        assert_eq!(higher(None, json!(null)), None);
        assert_eq!(higher(Some(json!(5)), json!(null)), Some(json!(5)));
        assert_eq!(higher(Some(json!(5)), json!(7)), Some(json!(7)));
        assert_eq!(as_param(&json!(7)).as_deref(), Some("7"));
        assert_eq!(as_param(&json!("2026-01-01T00:00:00Z")).as_deref(), Some("2026-01-01T00:00:00Z"));
    }
}
