//! jq Mappings: any program, compiled under the allowlist, run on any input within the
//! budget. The input is split at the first NUL into the program and the record (JSON).
//!
//! Properties: compiling never panics; a run ends (the budget: libFuzzer's timeout catches
//! one that does not) and never overflows the stack, whatever it recurses on. The
//! allowlist itself is proven by `api/src/mapping/budget_tests.rs`.
#![no_main]

use entrepot_api::mapping::{Program, check_depth, parse_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let Ok(program) = std::str::from_utf8(&data[..split]) else { return };
    let input = data.get(split + 1..).unwrap_or_default();
    let Ok(compiled) = Program::compile(program, &Default::default()) else { return };
    if check_depth(input).is_ok()
        && let Ok(value) = parse_json(input)
    {
        let _ = compiled.run(value);
    } else {
        let _ = compiled.run_json(input);
    }
});
