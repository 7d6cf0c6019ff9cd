//! The hand-written serde mapping the jq bench compares against gives exactly what the
//! quickstart's jq mapping gives, so that the comparison is fair.

use std::collections::BTreeMap;

use entrepot_api::mapping::{Program, parse_json, to_json};

#[path = "../benches/support/shopify_serde.rs"]
mod shopify_serde;

#[test]
fn the_serde_mapping_gives_the_jq_mappings_record() {
    let program = Program::compile(&shopify_serde::quickstart_program(), &BTreeMap::new()).unwrap();
    let jq = to_json(&program.run(parse_json(shopify_serde::FIXTURE).unwrap()).unwrap());
    let serde = String::from_utf8(shopify_serde::map_bytes(shopify_serde::FIXTURE)).unwrap();
    assert_eq!(serde, jq, "the same JSON text, member for member");
}
