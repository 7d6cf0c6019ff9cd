//! The storefront's GraphQL Admin API, as far as inventory and refunds need it:
//! `POST /admin/api/{version}/graphql.json` with the mutations `inventorySetQuantities`,
//! `inventoryAdjustQuantities` and `refundCreate` (external-API reference §1 Shopify).
//!
//! - Calculated cost: every mutation costs 10 points, taken from a cost bucket
//!   ([`BucketConfig::SHOPIFY_GRAPHQL`] by default); every answer carries
//!   `extensions.cost{requestedQueryCost, actualQueryCost, throttleStatus{...}}`.
//! - A call that does not fit is refused with a `THROTTLED` error. (U) Shopify does not
//!   document the HTTP status of a throttled call; the simulator answers `200`, the case a
//!   client can only catch by reading the body.
//! - `@idempotent(key: ...)`: a replayed key returns the original result without running the
//!   mutation again. Mandatory for `inventoryAdjustQuantities` and `refundCreate` (from API
//!   version 2026-04), optional for `inventorySetQuantities`.
//! - `inventorySetQuantities` compares and sets: a `changeFromQuantity` that is not the
//!   current quantity is a `CHANGE_FROM_QUANTITY_STALE` user error and changes nothing.
//! - Business errors are `userErrors{field, message, code}` in a `200` answer; the
//!   mutation then changes nothing (all or nothing).
//!
//! This is not a GraphQL engine: the mutation's arguments must be variables (`input: $input`,
//! `key: $key` or a string literal), and the answer carries the whole payload whatever the
//! selection set asks for.

use std::sync::{Arc, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::admin_store::{Refund, Shared, unauthorized};
use super::bucket::BucketReading;
use super::inventory::{Inventory, item_gid, location_gid, parse_gid};
use super::order::parse_minor;

/// What one mutation costs, in points (Shopify: mutations cost 10).
pub const MUTATION_COST: f64 = 10.0;

/// The mutations the simulator runs.
const MUTATIONS: [&str; 3] = ["inventorySetQuantities", "inventoryAdjustQuantities", "refundCreate"];

/// A user error: `{field, message, code}`.
fn user_error(field: Vec<String>, message: &str, code: &str) -> Value {
    json!({ "field": field, "message": message, "code": code })
}

fn top_level_error(message: &str, code: &str) -> Value {
    json!({ "message": message, "extensions": { "code": code } })
}

fn cost(reading: &BucketReading, actual: Option<f64>) -> Value {
    json!({
        "requestedQueryCost": MUTATION_COST,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": reading.capacity,
            "currentlyAvailable": reading.available.floor(),
            "restoreRate": reading.leak_per_second,
        }
    })
}

/// `POST /admin/api/{version}/graphql.json`.
pub(super) async fn graphql(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !shared.authorized(&headers) {
        return unauthorized();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "errors": format!("invalid JSON body: {e}") })))
                .into_response();
        }
    };
    let query = request.get("query").and_then(Value::as_str).unwrap_or_default();
    let variables = request.get("variables").cloned().unwrap_or(Value::Null);
    let operation = match Operation::parse(query, &variables) {
        Ok(op) => op,
        Err(message) => return Json(json!({ "errors": [top_level_error(&message, "BAD_REQUEST")] })).into_response(),
    };
    let reading = shared.graphql_bucket.take(MUTATION_COST);
    if !reading.admitted {
        shared.throttled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let errors = [json!({
            "message": "Throttled",
            "extensions": { "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits" }
        })];
        return Json(json!({ "errors": errors, "extensions": { "cost": cost(&reading, None) } })).into_response();
    }
    let extensions = json!({ "cost": cost(&reading, Some(MUTATION_COST)) });
    shared.keys_seen.lock().unwrap_or_else(PoisonError::into_inner).push(operation.key.clone());
    if operation.key.is_none() && shared.require_idempotent && operation.name != "inventorySetQuantities" {
        let message =
            format!("The @idempotent directive is required for {} (API version 2026-04 and later).", operation.name);
        return Json(json!({ "errors": [top_level_error(&message, "BAD_REQUEST")], "extensions": extensions }))
            .into_response();
    }
    // Held across the run so two calls with one key cannot both run the mutation.
    let mut replays = shared.idempotent.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(key) = &operation.key
        && let Some((name, payload)) = replays.get(key)
    {
        if *name != operation.name {
            let message = format!("idempotency key {key:?} was already used for {name}");
            return Json(json!({ "errors": [top_level_error(&message, "BAD_REQUEST")], "extensions": extensions }))
                .into_response();
        }
        return Json(json!({ "data": { &operation.name: payload }, "extensions": extensions })).into_response();
    }
    let payload = match operation.name.as_str() {
        "inventorySetQuantities" => set_quantities(&shared, &operation.input),
        "inventoryAdjustQuantities" => adjust_quantities(&shared, &operation.input),
        _ => refund_create(&shared, &operation.input, operation.key.clone()),
    };
    if let Some(key) = operation.key {
        replays.insert(key, (operation.name.clone(), payload.clone()));
    }
    Json(json!({ "data": { &operation.name: payload }, "extensions": extensions })).into_response()
}

/// The one mutation of a request, its `input` and its idempotency key.
#[derive(Debug)]
struct Operation {
    name: String,
    input: Value,
    key: Option<String>,
}

impl Operation {
    fn parse(query: &str, variables: &Value) -> Result<Self, String> {
        if !query.trim_start().starts_with("mutation") {
            return Err("the simulator serves mutations only".to_owned());
        }
        let (name, at) = MUTATIONS
            .iter()
            .filter_map(|m| field_position(query, m).map(|at| (*m, at)))
            .min_by_key(|(_, at)| *at)
            .ok_or_else(|| format!("no supported mutation in the document (one of {})", MUTATIONS.join(", ")))?;
        let rest = &query[at + name.len()..];
        let arguments = balanced(rest, '(', ')').ok_or_else(|| format!("{name} has no arguments"))?;
        let input =
            argument(arguments, "input", variables)?.ok_or_else(|| format!("{name} needs an input argument"))?;
        let key = match rest.find("@idempotent") {
            Some(d) => {
                let args = balanced(&rest[d..], '(', ')').ok_or("@idempotent needs a key argument")?;
                let key = argument(args, "key", variables)?.ok_or("@idempotent needs a key argument")?;
                Some(
                    key.as_str()
                        .filter(|k| !k.is_empty())
                        .ok_or("@idempotent key must be a non-empty string")?
                        .to_owned(),
                )
            }
            None => None,
        };
        Ok(Self { name: name.to_owned(), input, key })
    }
}

/// Where `name` occurs as a whole field name.
fn field_position(query: &str, name: &str) -> Option<usize> {
    query.match_indices(name).map(|(i, _)| i).find(|&i| {
        let before = query[..i].chars().next_back();
        let after = query[i + name.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The text inside the first `open`…`close` pair of `text`.
fn balanced(text: &str, open: char, close: char) -> Option<&str> {
    let start = text.find(open)?;
    let mut depth = 0;
    for (i, c) in text[start..].char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Some(&text[start + 1..start + i]);
            }
        }
    }
    None
}

/// The value of argument `name` in `arguments`: a `$variable` or a string literal.
fn argument(arguments: &str, name: &str, variables: &Value) -> Result<Option<Value>, String> {
    let Some(at) = field_position(arguments, name) else { return Ok(None) };
    let value = arguments[at + name.len()..]
        .trim_start()
        .strip_prefix(':')
        .ok_or(format!("argument {name} has no value"))?
        .trim_start();
    if let Some(var) = value.strip_prefix('$') {
        let var: String = var.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        return variables.get(&var).cloned().map(Some).ok_or(format!("variable ${var} is not provided"));
    }
    if let Some(literal) = value.strip_prefix('"') {
        return Ok(literal.split_once('"').map(|(s, _)| Value::String(s.to_owned())));
    }
    Err(format!("argument {name}: the simulator takes variables and string literals only"))
}

/// One requested change, checked against the store.
struct Change {
    item: u64,
    location: u64,
    quantity: i64,
}

/// Reads `(inventoryItemId, locationId)` of entry `i` of `list`; a user error otherwise.
fn target_of(inventory: &Inventory, entry: &Value, path: &[&str], errors: &mut Vec<Value>) -> Option<(u64, u64)> {
    let field = |name: &str| path.iter().map(|p| p.to_string()).chain([name.to_owned()]).collect::<Vec<_>>();
    let item = entry.get("inventoryItemId").and_then(Value::as_str).and_then(|g| parse_gid(g, "InventoryItem"));
    let location = entry.get("locationId").and_then(Value::as_str).and_then(|g| parse_gid(g, "Location"));
    match (item, location) {
        (Some(item), Some(location)) if inventory.knows_item(item) => Some((item, location)),
        (Some(_), Some(_)) => {
            errors.push(user_error(
                field("inventoryItemId"),
                "The specified inventory item could not be found.",
                "INVALID_INVENTORY_ITEM",
            ));
            None
        }
        (None, _) => {
            errors.push(user_error(field("inventoryItemId"), "must be an InventoryItem GID", "INVALID"));
            None
        }
        (_, None) => {
            errors.push(user_error(field("locationId"), "must be a Location GID", "INVALID_LOCATION"));
            None
        }
    }
}

fn adjustment_group(input: &Value, changes: Vec<Value>) -> Value {
    json!({
        "createdAt": jiff::Timestamp::now().to_string(),
        "reason": input.get("reason").cloned().unwrap_or(Value::Null),
        "referenceDocumentUri": input.get("referenceDocumentUri").cloned().unwrap_or(Value::Null),
        "changes": changes,
    })
}

fn change_json(name: &str, item: u64, location: u64, delta: i64, after: i64) -> Value {
    json!({ "name": name, "delta": delta, "quantityAfterChange": after, "item": { "id": item_gid(item) }, "location": { "id": location_gid(location) } })
}

fn quantity_name(input: &Value, errors: &mut Vec<Value>) -> String {
    let name = input.get("name").and_then(Value::as_str).unwrap_or_default();
    if !["available", "on_hand"].contains(&name) {
        errors.push(user_error(
            vec!["input".into(), "name".into()],
            "name must be available or on_hand",
            "INVALID_QUANTITY_NAME",
        ));
    }
    name.to_owned()
}

/// Reads one entry of a change list into a [`Change`], or pushes user errors.
type ReadEntry =
    dyn Fn(&Inventory, &Value, (u64, u64), &dyn Fn(&str) -> Vec<String>, &mut Vec<Value>) -> Option<Change>;

/// Runs an inventory mutation over the list `list` of `input`, all or nothing: every entry
/// is read (`read`) and checked first, then each is applied (`apply` returns the delta and
/// the quantity after).
fn change_inventory(
    shared: &Shared,
    input: &Value,
    list: &str,
    read: &ReadEntry,
    apply: fn(&mut Inventory, &Change) -> (i64, i64),
) -> Value {
    let mut inventory = shared.inventory.lock().unwrap_or_else(PoisonError::into_inner);
    let mut errors = Vec::new();
    let name = quantity_name(input, &mut errors);
    let entries = input.get(list).and_then(Value::as_array).cloned().unwrap_or_default();
    if entries.is_empty() {
        errors.push(user_error(vec!["input".into(), list.into()], &format!("{list} must not be empty"), "INVALID"));
    }
    let mut changes = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let index = i.to_string();
        let path = ["input", list, index.as_str()];
        let field = |name: &str| path.iter().map(|p| p.to_string()).chain([name.to_owned()]).collect::<Vec<_>>();
        if let Some(target) = target_of(&inventory, entry, &path, &mut errors)
            && let Some(change) = read(&inventory, entry, target, &field, &mut errors)
        {
            changes.push(change);
        }
    }
    if !errors.is_empty() {
        return json!({ "inventoryAdjustmentGroup": null, "userErrors": errors });
    }
    let applied = changes
        .iter()
        .map(|c| {
            let (delta, after) = apply(&mut inventory, c);
            change_json(&name, c.item, c.location, delta, after)
        })
        .collect();
    json!({ "inventoryAdjustmentGroup": adjustment_group(input, applied), "userErrors": [] })
}

fn set_quantities(shared: &Shared, input: &Value) -> Value {
    let read: &ReadEntry = &|inventory, entry, (item, location), field, errors| {
        let Some(quantity) = entry.get("quantity").and_then(Value::as_i64) else {
            errors.push(user_error(field("quantity"), "quantity must be an integer", "INVALID"));
            return None;
        };
        // 2026-01: `changeFromQuantity` null means "do not compare".
        if let Some(expected) = entry.get("changeFromQuantity").and_then(Value::as_i64)
            && expected != inventory.available(item, location)
        {
            let message = "The specified compare quantity does not match the current quantity.";
            errors.push(user_error(field("changeFromQuantity"), message, "CHANGE_FROM_QUANTITY_STALE"));
            return None;
        }
        Some(Change { item, location, quantity })
    };
    change_inventory(shared, input, "quantities", read, |inventory, c| {
        let before = inventory.set(c.item, c.location, c.quantity);
        (c.quantity - before, c.quantity)
    })
}

fn adjust_quantities(shared: &Shared, input: &Value) -> Value {
    let read: &ReadEntry = &|_, entry, (item, location), field, errors| match entry.get("delta").and_then(Value::as_i64)
    {
        Some(delta) => Some(Change { item, location, quantity: delta }),
        None => {
            errors.push(user_error(field("delta"), "delta must be an integer", "INVALID"));
            None
        }
    };
    change_inventory(shared, input, "changes", read, |inventory, c| {
        let after = inventory.available(c.item, c.location) + c.quantity;
        inventory.set(c.item, c.location, after);
        (c.quantity, after)
    })
}

fn refund_create(shared: &Shared, input: &Value, key: Option<String>) -> Value {
    let refuse = |field: Vec<String>, message: &str, code: &str| json!({ "refund": null, "userErrors": [user_error(field, message, code)] });
    let order_id = input.get("orderId").and_then(Value::as_str).and_then(|g| parse_gid(g, "Order"));
    let order = order_id.and_then(|id| shared.orders.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned());
    let Some(order) = order else {
        return refuse(vec!["orderId".into()], "Order does not exist", "NOT_FOUND");
    };
    let mut refunds = shared.refunds.lock().unwrap_or_else(PoisonError::into_inner);
    let mut lines = Vec::new();
    let mut amount_minor = 0i64;
    let entries = input.get("refundLineItems").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, entry) in entries.iter().enumerate() {
        let field = |name: &str| vec!["refundLineItems".to_owned(), i.to_string(), name.to_owned()];
        let line_id = entry.get("lineItemId").and_then(Value::as_str).and_then(|g| parse_gid(g, "LineItem"));
        let Some(line) = line_id.and_then(|id| order.line_items.iter().find(|l| l.id == id)) else {
            return refuse(field("lineItemId"), "Line item does not belong to the order", "INVALID");
        };
        let quantity = entry.get("quantity").and_then(Value::as_u64).unwrap_or(0) as u32;
        let refunded: u32 = refunds
            .iter()
            .filter(|r| r.order_id == order.id)
            .flat_map(|r| &r.lines)
            .filter(|(id, _)| *id == line.id)
            .map(|(_, q)| q)
            .sum();
        if quantity == 0 || refunded + quantity > line.quantity {
            return refuse(field("quantity"), "Quantity cannot refund more items than were purchased", "INVALID");
        }
        amount_minor += parse_minor(&line.price).unwrap_or(0) * i64::from(quantity);
        lines.push((line.id, quantity));
    }
    let id = 890_000_000 + refunds.len() as u64 + 1;
    refunds.push(Refund { id, order_id: order.id, lines, amount_minor, idempotency_key: key });
    let amount = format!("{}.{:02}", amount_minor / 100, amount_minor % 100);
    json!({
        "refund": {
            "id": format!("gid://shopify/Refund/{id}"),
            "note": input.get("note").cloned().unwrap_or(Value::Null),
            "totalRefundedSet": { "shopMoney": { "amount": amount, "currencyCode": order.currency } }
        },
        "userErrors": []
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mutation_its_input_and_its_key_are_read() {
        let query = r#"mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
            inventorySetQuantities(input: $input) @idempotent(key: $key) { userErrors { field message } } }"#;
        let variables = json!({ "input": { "name": "available" }, "key": "k-1" });
        let op = Operation::parse(query, &variables).unwrap();
        assert_eq!(op.name, "inventorySetQuantities");
        assert_eq!(op.input, json!({ "name": "available" }));
        assert_eq!(op.key.as_deref(), Some("k-1"));

        let literal = r#"mutation { refundCreate(input: $i) @idempotent(key: "r-9") { refund { id } } }"#;
        let op = Operation::parse(literal, &json!({ "i": {} })).unwrap();
        assert_eq!((op.name.as_str(), op.key.as_deref()), ("refundCreate", Some("r-9")));

        assert!(Operation::parse("query { shop { name } }", &Value::Null).is_err());
        let missing = Operation::parse("mutation { inventoryAdjustQuantities(input: $input) { x } }", &json!({}));
        assert!(missing.unwrap_err().contains("$input"));
    }
}
