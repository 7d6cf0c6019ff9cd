//! The Rust plans give what jaq gives: on every example of the project's Mappings, on
//! the fixture order, and on many variations of it (fields missing, null, of another
//! type), where a plan must leave the record to jq rather than answer differently.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::mapping::{MapError, Program, from_value, json_tree::Json, parse_json, to_json, to_value};
use crate::resource::MappingSpec;

const FIXTURE: &str = include_str!("../../../../tests/fixtures/shopify-order.json");

/// Every Mapping under `examples/`, by file and name.
fn example_mappings() -> Vec<(String, MappingSpec)> {
    #[derive(serde::Deserialize)]
    struct Doc {
        kind: String,
        metadata: Meta,
        spec: Value,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        name: String,
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root).unwrap().map(|d| d.unwrap().path()).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = std::fs::read_to_string(dir.join("mappings.yaml")) else { continue };
        for doc in text.split("\n---\n") {
            let Ok(doc) = serde_saphyr::from_str::<Doc>(doc) else { continue };
            if doc.kind == "Mapping" {
                let name = format!("{}/{}", dir.file_name().unwrap().to_string_lossy(), doc.metadata.name);
                out.push((name, serde_json::from_value(doc.spec).unwrap()));
            }
        }
    }
    assert!(out.len() > 30, "the examples' Mappings are found ({})", out.len());
    out
}

/// The plan's answer (through `run` and `run_json`) and jq's, as JSON text or error.
fn both(program: &Program, input: &Value) -> [Result<String, MapError>; 3] {
    let bytes = serde_json::to_vec(input).unwrap();
    [
        program.run(from_value(input)).map(|v| to_json(&v)),
        program.run_json(&bytes).map(|v| to_json(&v)),
        program.run_jq(from_value(input)).map(|v| to_json(&v)),
    ]
}

fn assert_same(name: &str, program: &Program, input: &Value) {
    let [plan, plan_json, jq] = both(program, input);
    assert_eq!(plan, jq, "{name}: run on {input}");
    assert_eq!(plan_json, jq, "{name}: run_json on {input}");
}

#[test]
fn the_plain_mappings_of_the_examples_run_as_plans() {
    let mappings = example_mappings();
    let native: Vec<&str> = mappings
        .iter()
        .filter(|(_, spec)| Program::compile(&spec.program, &spec.lookups).unwrap().is_native())
        .map(|(name, _)| name.as_str())
        .collect();
    println!("{} of {} example Mappings run as plans: {native:#?}", native.len(), mappings.len());
    for expected in ["quickstart/shopify-order-to-canonical", "quickstart/canonical-to-erp-salesorder"] {
        assert!(native.contains(&expected), "{expected} runs as a plan");
    }
    assert!(native.len() >= 20, "most example Mappings are plain: {}", native.len());
}

#[test]
fn plans_give_what_jq_gives_on_every_example() {
    let (mut cases, mut answered) = (0, 0);
    for (name, spec) in example_mappings() {
        let program = Program::compile(&spec.program, &spec.lookups).unwrap();
        for case in &spec.tests {
            assert_same(&name, &program, &case.input);
            if let Some(plan) = &program.plan {
                cases += 1;
                let lookups = program.plan_lookups(plan).unwrap();
                answered += usize::from(plan.run(&from_value(&case.input), &lookups).is_some());
            }
        }
    }
    println!("the plans answered {answered} of the {cases} examples of plain Mappings themselves");
    assert!(answered * 10 >= cases * 9, "the plans answer most examples: {answered} of {cases}");
}

#[test]
fn plans_give_what_jq_gives_on_variations_of_the_fixture_order() {
    let order: Value = serde_json::from_str(FIXTURE).unwrap();
    let mappings = example_mappings();
    let shopify: Vec<_> =
        mappings.iter().filter(|(name, _)| name.contains("shopify-") && name.contains("-to-canonical")).collect();
    assert!(shopify.len() >= 5);
    let odd = [json!(null), json!(1), json!(-2.5), json!("x"), json!("19.999"), json!([]), json!({}), json!(true)];
    let mut variations = vec![order.clone()];
    for key in order.as_object().unwrap().keys() {
        let mut without = order.clone();
        without.as_object_mut().unwrap().remove(key);
        variations.push(without);
        for value in &odd {
            let mut changed = order.clone();
            changed[key] = value.clone();
            variations.push(changed);
        }
    }
    for key in order["line_items"][0].as_object().unwrap().keys() {
        for value in &odd {
            let mut changed = order.clone();
            changed["line_items"][1][key] = value.clone();
            variations.push(changed);
        }
    }
    for (name, spec) in shopify {
        let program = Program::compile(&spec.program, &spec.lookups).unwrap();
        for input in &variations {
            assert_same(name, &program, input);
        }
    }
}

#[test]
fn the_quickstart_target_mapping_gives_what_jq_gives_on_the_mapped_fixture() {
    let mappings = example_mappings();
    let spec = |name: &str| &mappings.iter().find(|(n, _)| n == name).unwrap().1;
    let inbound = spec("quickstart/shopify-order-to-canonical");
    let outbound = spec("quickstart/canonical-to-erp-salesorder");
    let canonical = Program::compile(&inbound.program, &inbound.lookups).unwrap().run_json(FIXTURE.as_bytes()).unwrap();
    let program = Program::compile(&outbound.program, &outbound.lookups).unwrap();
    assert_same("canonical-to-erp-salesorder", &program, &to_value(&canonical).unwrap());
    // The plans answer themselves here, not through jq.
    let plan = Program::compile(&inbound.program, &inbound.lookups).unwrap().plan.unwrap();
    let payload = bytes::Bytes::from_static(FIXTURE.as_bytes());
    let json = Json::parse(&payload).unwrap();
    assert!(plan.run_json(&payload, &json, &jaq_json::Val::Null).is_some(), "the plan maps the fixture order");
    assert!(program.plan.as_ref().unwrap().run(&canonical, &jaq_json::Val::Null).is_some());
}

#[test]
fn the_subset_covers_paths_slices_lookups_and_local_definitions() {
    let lookups = BTreeMap::from([("units".to_string(), BTreeMap::from([("EA".to_string(), "EACH".to_string())]))]);
    let input = json!({"a": {"b": [1, 2, 3]}, "s": "héllo wörld", "u": "EA", "n": null, "xs": [{"k": 1}, {"k": 2}]});
    for code in [
        "{first: .a.b[0], last: .a.b[-1], none: .a.b[7], from: .a.b[1:], s: .s[0:4], t: .s[-5:], n: .n.x}",
        "{unit: $lookups.units[.u], missing: $lookups.units[\"kg\"]}",
        "def k: .k * 10; [.xs[] | {k: k, big: (.k > 1), not: (.k == 1 | not)}]",
        "{len: (.s | length), sum: ([.xs[].k] | add), alt: (.n // \"none\"), up: (.s | ascii_upcase)}",
        "if .n == null then {sku} else . end",
        "{x: (.a.b | length), y: (.a | length), z: ([.a.b[] | . * 2] | add)}",
    ] {
        let program = Program::compile(code, &lookups).unwrap();
        assert!(program.is_native(), "`{code}` runs as a plan");
        assert_same(code, &program, &input);
    }
    for code in [
        ".a.b[0], .a.b[-1]",
        "{a: .a[]}",
        ".a as $x | $x",
        "[.xs[] | .k] | map(. + 1)",
        "def f(x): x; f(.)",
        "{(.s): 1}",
    ] {
        assert!(!Program::compile(code, &BTreeMap::new()).unwrap().is_native(), "`{code}` is left to jq");
    }
}

#[test]
fn a_plan_leaves_what_jq_reports_to_jq() {
    let program =
        Program::compile("{d: (.t | fromdate | todate), n: (.p | tonumber * 100 | round)}", &BTreeMap::new()).unwrap();
    assert!(program.is_native());
    for input in [
        json!({"t": "2026-11-20T14:23:11.5-05:00", "p": "1.5"}),
        json!({"t": "yesterday", "p": "1"}),
        json!({"t": "2026-11-20T14:23:11Z", "p": "abc"}),
        json!({"t": "2026-11-20T14:23:11Z", "p": [1]}),
        json!([1]),
    ] {
        assert_same("dates and numbers", &program, &input);
    }
    assert!(matches!(program.run_json(b"{\"t\": "), Err(MapError::InvalidJson(_))));
    assert_eq!(
        program.run_json(b"{\"t\": \"2026-11-20T14:23:11Z\", \"p\": 2}").map(|v| to_json(&v)).unwrap(),
        r#"{"d":"2026-11-20T14:23:11Z","n":200}"#
    );
    assert_eq!(to_json(&parse_json(b"1").unwrap()), "1");
}
