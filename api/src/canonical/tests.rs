use std::path::Path;

use serde_json::{Value, json};

use super::*;

fn order() -> Value {
    json!({
        "orderId": "shopify:1",
        "externalId": "1",
        "sourceSystem": "shopify",
        "sourceVersion": "2026-11-21T14:02:45Z",
        "placedAt": "2026-11-20T19:23:11Z",
        "currency": "USD",
        "customer": {"email": "jane@example.com"},
        "lines": [{"lineId": "1", "sku": "MUG-WHT", "quantity": {"value": 1, "uom": "EA"},
                   "unitPrice": 1249, "discount": 0, "tax": 0}],
        "totals": {"subtotal": 1249, "tax": 0, "shipping": 0, "discount": 0, "grand": 1249}
    })
}

fn failures(entity: &str, record: &Value) -> Vec<String> {
    match Validator::new(entity, "v1").unwrap().check(record) {
        Ok(()) => Vec::new(),
        Err(v) => v.failures,
    }
}

fn pointers(entity: &str, record: &Value) -> Vec<String> {
    failures(entity, record).iter().map(|f| f.split(": ").next().unwrap().to_string()).collect()
}

#[test]
fn a_well_formed_order_passes() {
    assert_eq!(failures("SalesOrder", &order()), Vec::<String>::new());
}

#[test]
fn a_lower_case_currency_a_local_time_and_a_negative_quantity_are_each_reported() {
    let mut record = order();
    record["currency"] = json!("usd");
    record["placedAt"] = json!("2026-11-20T14:23:11-05:00");
    record["lines"][0]["quantity"]["value"] = json!(-2);
    let found = failures("SalesOrder", &record);
    assert_eq!(pointers("SalesOrder", &record), ["/currency", "/lines/0/quantity/value", "/placedAt"], "{found:?}");
    assert!(found[0].contains("\"usd\" does not match"), "{found:?}");
}

#[test]
fn money_is_integer_minor_units() {
    let mut record = order();
    record["lines"][0]["unitPrice"] = json!(12.49);
    record["totals"]["grand"] = json!("1249");
    assert_eq!(pointers("SalesOrder", &record), ["/lines/0/unitPrice", "/totals/grand"]);
    let item = json!({"sku": "A", "externalId": "1", "sourceSystem": "erp", "sourceVersion": "3", "name": "A",
                      "active": true, "price": {"amount": 100, "currency": "EURO"}});
    // An optional object may also be null, so a wrong one is reported where it starts.
    assert_eq!(pointers("Item", &item), ["/price"]);
    let mut price = item;
    price["price"] = json!({"amount": 100, "currency": "EUR"});
    assert_eq!(failures("Item", &price), Vec::<String>::new());
}

#[test]
fn a_quantity_needs_a_known_unit_of_measure() {
    let snapshot = json!({"sku": "A", "locationId": "DC", "externalId": "DC:A", "sourceSystem": "wms",
                          "sourceVersion": "2026-11-27T19:05:00Z", "snapshotAt": "2026-11-27T19:05:00Z",
                          "onHand": {"value": 3, "uom": "each"}, "available": {"value": 3}});
    assert_eq!(pointers("InventorySnapshot", &snapshot), ["/available", "/onHand/uom"]);
}

#[test]
fn the_source_block_and_unknown_fields_are_checked() {
    let mut record = order();
    record.as_object_mut().unwrap().remove("sourceVersion");
    record["shipingAddress"] = json!({});
    let found = failures("SalesOrder", &record);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|f| f.contains("sourceVersion")), "{found:?}");
    assert!(found.iter().any(|f| f.contains("shipingAddress")), "{found:?}");
}

#[test]
fn an_unknown_entity_or_version_is_refused_naming_the_known_ones() {
    let err = Validator::new("SalesOrder", "v2").unwrap_err().to_string();
    assert!(err.contains("`SalesOrder` version `v2`") && err.contains("Shipment v1"), "{err}");
    assert!(schema("Order", "v1").is_none());
    assert!(schema("Settlement", "v1").is_some());
}

#[test]
fn every_field_has_a_description() {
    fn walk(path: &str, node: &Value, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, field) in props {
                if field.get("description").is_none() && field.get("$ref").is_none() {
                    missing.push(format!("{path}.{name}"));
                }
            }
        }
        if let Some(defs) = node.get("$defs").and_then(Value::as_object) {
            for (name, def) in defs {
                walk(&format!("{path}#{name}"), def, missing);
            }
        }
    }
    let mut missing = Vec::new();
    for e in ENTITIES {
        walk(e.name, e.schema().as_value(), &mut missing);
    }
    assert!(missing.is_empty(), "fields without a description: {missing:?}");
}

#[test]
fn the_committed_schemas_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/canonical");
    for e in ENTITIES {
        let committed = std::fs::read_to_string(dir.join(e.file_name())).unwrap_or_default();
        assert!(
            committed == e.render(),
            "schemas/canonical/{} is stale or missing; regenerate with:\n  {REGENERATE}",
            e.file_name()
        );
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files,
        ENTITIES.len(),
        "schemas/canonical holds a schema no entity generates; regenerate with:\n  {REGENERATE}"
    );
}
