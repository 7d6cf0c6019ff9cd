//! The jq path at speed (issue 12, item 4): the quickstart's jq mapping of the 4 KB
//! fixture Shopify order to the canonical SalesOrder, against a hand-written serde mapping
//! of the same order, and the jq path by stage (parse, run, serialize).
//!
//! `cargo bench -p entrepot-api --bench mapping` (a release build). Figures:
//! `docs/benchmarks.md`.

use std::{collections::BTreeMap, hint::black_box, time::Instant};

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

    paired_ratio(&jq, payload);

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

/// The jq path's rate over the serde path's, measured in alternating rounds so that both
/// see the same load (the machine is shared with other builds): the median of 21 rounds.
fn paired_ratio(jq: &dyn Fn(&[u8]) -> Vec<u8>, payload: &[u8]) {
    const N: u32 = 2_000;
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..N {
            f();
        }
        start.elapsed() / N
    };
    let mut ratios: Vec<f64> = (0..21)
        .map(|_| {
            let serde = time(&|| drop(black_box(shopify_serde::map_bytes(black_box(payload)))));
            let jq = time(&|| drop(black_box(jq(black_box(payload)))));
            serde.as_secs_f64() / jq.as_secs_f64()
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "jq rate / serde rate, paired rounds: median {:.2} (min {:.2}, max {:.2})",
        ratios[10], ratios[0], ratios[20]
    );
}

criterion_group!(benches, mapping);
criterion_main!(benches);
