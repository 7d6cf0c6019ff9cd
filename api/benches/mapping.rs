//! The jq path at speed (issue 12, item 4): the quickstart's jq mapping of the 4 KB
//! fixture Shopify order to the canonical SalesOrder, against a hand-written serde mapping
//! of the same order, and the jq path by stage (parse, run, serialize).
//!
//! `cargo bench -p entrepot-api --bench mapping` (a release build). Figures:
//! `docs/benchmarks.md`.

use std::{collections::BTreeMap, hint::black_box};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use entrepot_api::mapping::{Program, parse_json, to_json};

#[path = "support/shopify_serde.rs"]
mod shopify_serde;

fn mapping(c: &mut Criterion) {
    let code = shopify_serde::quickstart_program();
    let program = Program::compile(&code, &BTreeMap::new()).expect("it compiles");
    assert!(program.is_native(), "the quickstart's mapping runs as a Rust plan");
    // The same program made too rich for a plan (`as` bindings): jaq interprets it.
    let interpreted = Program::compile(&format!("{code}\n| . as $out | $out"), &BTreeMap::new()).unwrap();
    assert!(!interpreted.is_native());
    let payload = shopify_serde::FIXTURE;
    let jq = |bytes: &[u8]| to_json(&program.run_json(bytes).unwrap()).into_bytes();
    let jaq = |bytes: &[u8]| to_json(&interpreted.run_json(bytes).unwrap()).into_bytes();
    // The comparison is fair only if both give the same record.
    let (a, b) = (jq(payload), shopify_serde::map_bytes(payload));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&a).unwrap(),
        serde_json::from_slice::<serde_json::Value>(&b).unwrap()
    );

    let mut group = c.benchmark_group("shopify_order_to_sales_order");
    group.throughput(Throughput::Elements(1));
    group.bench_function("serde", |b| b.iter(|| shopify_serde::map_bytes(black_box(payload))));
    group.bench_function("jq", |b| b.iter(|| jq(black_box(payload))));
    group.bench_function("jq_interpreted", |b| b.iter(|| jaq(black_box(payload))));
    group.finish();

    let parsed = parse_json(payload).unwrap();
    let mapped = program.run(parsed.clone()).unwrap();
    let mut stages = c.benchmark_group("jq_stages");
    stages.throughput(Throughput::Elements(1));
    stages.bench_function("parse", |b| b.iter(|| parse_json(black_box(payload)).unwrap()));
    stages.bench_function("run", |b| b.iter(|| program.run(black_box(parsed.clone())).unwrap()));
    stages.bench_function("run_interpreted", |b| b.iter(|| interpreted.run(black_box(parsed.clone())).unwrap()));
    stages.bench_function("serialize", |b| b.iter(|| to_json(black_box(&mapped))));
    stages.finish();
}

criterion_group!(benches, mapping);
criterion_main!(benches);
