//! The sales-order record: what a request must contain and what the ERP keeps.
//!
//! Validation works on the raw JSON value rather than through a typed serde struct so that
//! every rejection names the exact field path and value (`items[1].item`), as NetSuite does.
//! Unknown fields are accepted and kept: a mapping may send more than the simulator checks.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};

use super::error_body::{ErrorDetail, code};

/// One line of a sales order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderItem {
    /// The item's SKU (NetSuite item reference).
    pub item: String,
    /// Ordered quantity, strictly positive; fractional quantities are allowed.
    pub quantity: f64,
    /// Unit price in integer minor units of the order currency, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<i64>,
}

/// A validated sales-order request.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesOrder {
    /// The source system's id for the order; unique among stored orders.
    pub external_id: String,
    /// Transaction date, `YYYY-MM-DD`, when given.
    pub tran_date: Option<String>,
    /// ISO 4217 currency code, when given.
    pub currency: Option<String>,
    /// The customer's email address.
    pub customer_email: String,
    /// The order lines, at least one.
    pub items: Vec<OrderItem>,
    /// Order total in integer minor units, when given.
    pub total: Option<i64>,
    /// The request body as received, unknown fields included.
    pub body: Value,
}

/// A sales order as the ERP stored it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredOrder {
    /// The ERP's internal id, the last segment of the `Location` header.
    pub id: u64,
    /// The source system's id for the order.
    pub external_id: String,
    /// Transaction date, `YYYY-MM-DD`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tran_date: Option<String>,
    /// ISO 4217 currency code, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The customer's email address.
    pub customer_email: String,
    /// The order lines.
    pub items: Vec<OrderItem>,
    /// Order total in integer minor units, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// The idempotency key of the request that created the record, if it carried one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// 1 when created, incremented by each write through the API and by each edit made
    /// elsewhere ([`super::ErpHandle::edit_elsewhere`]); the ETag is derived from it.
    pub revision: u32,
    /// Writes through the API that stored this order: 1 when created, +1 per update.
    /// Replays of an idempotency key are not writes.
    pub writes: u32,
    /// When the record was created (RFC 3339, UTC, whole seconds), as NetSuite's
    /// `createdDate`.
    pub created_date: String,
    /// When the record was last written (RFC 3339, UTC, whole seconds), as NetSuite's
    /// `lastModifiedDate`.
    pub last_modified_date: String,
    /// The body of the request that last wrote the record.
    pub body: Value,
    /// When the record was created, to the nanosecond (for measuring posting times; not
    /// part of the API).
    #[serde(skip)]
    pub created_at: jiff::Timestamp,
}

impl StoredOrder {
    pub(crate) fn new(id: u64, order: SalesOrder, idempotency_key: Option<String>) -> Self {
        Self {
            id,
            external_id: order.external_id,
            tran_date: order.tran_date,
            currency: order.currency,
            customer_email: order.customer_email,
            items: order.items,
            total: order.total,
            idempotency_key,
            revision: 1,
            writes: 1,
            created_date: now(),
            last_modified_date: now(),
            body: order.body,
            created_at: jiff::Timestamp::now(),
        }
    }

    /// Overwrites the record's content with `order`, keeping its id and first key.
    pub(crate) fn replace(&mut self, order: SalesOrder) {
        self.tran_date = order.tran_date;
        self.currency = order.currency;
        self.customer_email = order.customer_email;
        self.items = order.items;
        self.total = order.total;
        self.body = order.body;
        self.revision += 1;
        self.writes += 1;
        self.last_modified_date = now();
    }
}

/// Now, to the second, as NetSuite writes record times.
fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

/// Parses and validates a sales-order body.
///
/// `path_external_id` is the external id taken from an upsert URL
/// (`PUT /salesOrders/eid:{externalId}`); the body may then omit `externalId`, but must not
/// contradict it. Every problem found is reported, not just the first.
pub fn parse(
    body: &[u8],
    path_external_id: Option<&str>,
    known_skus: Option<&BTreeSet<String>>,
) -> Result<SalesOrder, Vec<ErrorDetail>> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        vec![ErrorDetail::general(code::INVALID_CONTENT, format!("The request body is not valid JSON: {error}."))]
    })?;
    let Some(object) = value.as_object() else {
        return Err(vec![ErrorDetail::general(
            code::INVALID_CONTENT,
            "The request body must be a JSON object describing a sales order.",
        )]);
    };

    let mut errors = Vec::new();
    let external_id = external_id(object, path_external_id, &mut errors);
    let tran_date = tran_date(object, &mut errors);
    let currency = currency(object, &mut errors);
    let customer_email = customer_email(object, &mut errors);
    let items = items(object, known_skus, &mut errors);
    let total = optional_integer(object, "total", &mut errors);

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(SalesOrder {
        external_id: external_id.unwrap_or_default(),
        tran_date,
        currency,
        customer_email: customer_email.unwrap_or_default(),
        items,
        total,
        body: value,
    })
}

fn missing(path: &str) -> ErrorDetail {
    ErrorDetail::at(code::USER_ERROR, path, format!("Please enter value(s) for: {path}."))
}

fn invalid(path: &str, value: &Value, expected: &str) -> ErrorDetail {
    ErrorDetail::at(
        code::INVALID_FLD_VALUE,
        path,
        format!("Invalid value {value} for field {path}: expected {expected}."),
    )
}

fn non_empty_string<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    path: &str,
    errors: &mut Vec<ErrorDetail>,
) -> Option<&'a str> {
    match object.get(field) {
        None | Some(Value::Null) => {
            errors.push(missing(path));
            None
        }
        Some(Value::String(text)) if text.trim().is_empty() => {
            errors.push(missing(path));
            None
        }
        Some(Value::String(text)) => Some(text),
        Some(other) => {
            errors.push(invalid(path, other, "a non-empty string"));
            None
        }
    }
}

fn external_id(
    object: &Map<String, Value>,
    path_external_id: Option<&str>,
    errors: &mut Vec<ErrorDetail>,
) -> Option<String> {
    let Some(from_path) = path_external_id else {
        return non_empty_string(object, "externalId", "externalId", errors).map(str::to_owned);
    };
    match object.get("externalId") {
        None | Some(Value::Null) => Some(from_path.to_owned()),
        Some(Value::String(text)) if text == from_path => Some(from_path.to_owned()),
        Some(other) => {
            errors.push(ErrorDetail::at(
                code::INVALID_FLD_VALUE,
                "externalId",
                format!(
                    "Invalid value {other} for field externalId: the URL names external id \
                     {from_path:?}; omit externalId from the body or make them equal."
                ),
            ));
            None
        }
    }
}

fn tran_date(object: &Map<String, Value>, errors: &mut Vec<ErrorDetail>) -> Option<String> {
    match object.get("tranDate") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.parse::<jiff::civil::Date>().is_ok() && text.len() == 10 => {
            Some(text.clone())
        }
        Some(other) => {
            errors.push(invalid("tranDate", other, "a date formatted YYYY-MM-DD"));
            None
        }
    }
}

fn currency(object: &Map<String, Value>, errors: &mut Vec<ErrorDetail>) -> Option<String> {
    match object.get("currency") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.len() == 3 && text.bytes().all(|byte| byte.is_ascii_uppercase()) => {
            Some(text.clone())
        }
        Some(other) => {
            errors.push(invalid("currency", other, "an ISO 4217 code such as \"USD\""));
            None
        }
    }
}

fn customer_email(object: &Map<String, Value>, errors: &mut Vec<ErrorDetail>) -> Option<String> {
    match object.get("customer") {
        None | Some(Value::Null) => {
            errors.push(missing("customer.email"));
            None
        }
        Some(Value::Object(customer)) => {
            let email = non_empty_string(customer, "email", "customer.email", errors)?;
            if email.contains('@') {
                Some(email.to_owned())
            } else {
                errors.push(invalid("customer.email", &Value::String(email.to_owned()), "an email address"));
                None
            }
        }
        Some(other) => {
            errors.push(invalid("customer", other, "an object with an email"));
            None
        }
    }
}

fn optional_integer(object: &Map<String, Value>, field: &str, errors: &mut Vec<ErrorDetail>) -> Option<i64> {
    integer_at(object.get(field), field, errors)
}

/// Amounts are integer minor units: a decimal here is almost always a mapping that forgot
/// to convert "19.99" to 1999, so it is refused rather than rounded.
fn integer_at(value: Option<&Value>, path: &str, errors: &mut Vec<ErrorDetail>) -> Option<i64> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) if number.as_i64().is_some_and(|amount| amount >= 0) => number.as_i64(),
        Some(other) => {
            errors.push(invalid(path, other, "a non-negative integer amount in minor units"));
            None
        }
    }
}

fn items(
    object: &Map<String, Value>,
    known_skus: Option<&BTreeSet<String>>,
    errors: &mut Vec<ErrorDetail>,
) -> Vec<OrderItem> {
    let lines = match object.get("items") {
        Some(Value::Array(lines)) if !lines.is_empty() => lines,
        None | Some(Value::Null) | Some(Value::Array(_)) => {
            errors.push(missing("items"));
            return Vec::new();
        }
        Some(other) => {
            errors.push(invalid("items", other, "an array of order lines"));
            return Vec::new();
        }
    };
    let mut items = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        let path = format!("items[{index}]");
        let Some(line) = line.as_object() else {
            errors.push(invalid(&path, line, "an object with item and quantity"));
            continue;
        };
        let item_path = format!("{path}.item");
        let sku = non_empty_string(line, "item", &item_path, errors);
        if let (Some(sku), Some(known)) = (sku, known_skus)
            && !known.contains(sku)
        {
            errors.push(ErrorDetail::at(
                code::INVALID_KEY_OR_REF,
                &item_path,
                format!("Invalid item reference key {sku} for field {item_path}."),
            ));
        }
        let quantity_path = format!("{path}.quantity");
        let quantity = match line.get("quantity") {
            None | Some(Value::Null) => {
                errors.push(missing(&quantity_path));
                None
            }
            Some(Value::Number(number)) if number.as_f64().is_some_and(|q| q > 0.0) => number.as_f64(),
            Some(other) => {
                errors.push(invalid(&quantity_path, other, "a number greater than 0"));
                None
            }
        };
        let rate = integer_at(line.get("rate"), &format!("{path}.rate"), errors);
        if let (Some(sku), Some(quantity)) = (sku, quantity) {
            items.push(OrderItem { item: sku.to_owned(), quantity, rate });
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn valid() -> Value {
        json!({
            "externalId": "shopify-1042",
            "tranDate": "2026-11-20",
            "currency": "USD",
            "customer": {"email": "jane.doe@example.com"},
            "items": [
                {"item": "TSHIRT-BLK-M", "quantity": 2, "rate": 1999},
                {"item": "MUG-WHT", "quantity": 1, "rate": 1249}
            ],
            "total": 6937,
            "memo": "kept although the simulator does not check it"
        })
    }

    #[test]
    fn a_valid_order_parses_and_keeps_unknown_fields() {
        let order = parse(&body(valid()), None, None).unwrap();
        assert_eq!(order.external_id, "shopify-1042");
        assert_eq!(order.tran_date.as_deref(), Some("2026-11-20"));
        assert_eq!(order.items.len(), 2);
        assert_eq!(order.items[0].rate, Some(1999));
        assert_eq!(order.total, Some(6937));
        assert_eq!(order.body["memo"], valid()["memo"]);
    }

    #[test]
    fn an_unknown_sku_names_the_field_and_the_value() {
        let known: BTreeSet<String> = ["TSHIRT-BLK-M".to_owned()].into();
        let errors = parse(&body(valid()), None, Some(&known)).unwrap_err();
        assert_eq!(
            errors,
            vec![ErrorDetail::at(
                code::INVALID_KEY_OR_REF,
                "items[1].item",
                "Invalid item reference key MUG-WHT for field items[1].item."
            )]
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let mut order = valid();
        order["externalId"] = json!("");
        order["tranDate"] = json!("20/11/2026");
        order["items"][0]["quantity"] = json!(0);
        order["items"][1]["rate"] = json!(12.49);
        let errors = parse(&body(order), None, None).unwrap_err();
        let paths: Vec<_> = errors.iter().filter_map(|e| e.path.as_deref()).collect();
        assert_eq!(paths, ["externalId", "tranDate", "items[0].quantity", "items[1].rate"]);
        assert_eq!(errors[0].code, code::USER_ERROR);
        assert!(errors[3].detail.contains("12.49"), "{}", errors[3].detail);
    }

    #[test]
    fn empty_items_and_missing_customer_are_refused() {
        let mut order = valid();
        order["items"] = json!([]);
        order.as_object_mut().unwrap().remove("customer");
        let errors = parse(&body(order), None, None).unwrap_err();
        let paths: Vec<_> = errors.iter().filter_map(|e| e.path.as_deref()).collect();
        assert_eq!(paths, ["customer.email", "items"]);
    }

    #[test]
    fn malformed_json_is_invalid_content() {
        let errors = parse(b"{\"externalId\": ", None, None).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, code::INVALID_CONTENT);
        let errors = parse(b"[1, 2]", None, None).unwrap_err();
        assert_eq!(errors[0].code, code::INVALID_CONTENT);
    }

    #[test]
    fn an_upsert_takes_the_external_id_from_the_url() {
        let mut order = valid();
        order.as_object_mut().unwrap().remove("externalId");
        let parsed = parse(&body(order.clone()), Some("shopify-7"), None).unwrap();
        assert_eq!(parsed.external_id, "shopify-7");

        order["externalId"] = json!("shopify-8");
        let errors = parse(&body(order), Some("shopify-7"), None).unwrap_err();
        assert_eq!(errors[0].path.as_deref(), Some("externalId"));
    }
}
