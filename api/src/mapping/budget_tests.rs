//! The allowlist, the budget and the depth limit, as a Mapping meets them.

use std::collections::BTreeMap;

use super::*;

fn compile(code: &str) -> Result<Program, CompileError> {
    Program::compile(code, &BTreeMap::new())
}

#[test]
fn env_input_debug_and_halt_are_refused_at_compile_with_the_name_position_and_why() {
    for (code, name, at) in [
        ("{id: .id, key: env.ENTREPOT_SECRET_ERP}", "env", "1:16"),
        ("$ENV.HOME", "$ENV", "1:1"),
        ("[inputs]", "inputs", "1:2"),
        (".id |\n  debug", "debug", "2:3"),
        ("stderr", "stderr", "1:1"),
        ("halt", "halt", "1:1"),
        ("halt_error(1)", "halt_error", "1:1"),
        ("input_filename", "input_filename", "1:1"),
    ] {
        let err = compile(code).unwrap_err().0;
        assert!(err.contains(&format!("`{name}` at {at} is not allowed in a Mapping")), "{code}: {err}");
    }
}

#[test]
fn recursion_without_end_is_stopped_before_the_stack_runs_out() {
    let program = compile("def f: 1 + f; f").unwrap();
    assert_eq!(program.run(Val::Null), Err(MapError::Budget(Exceeded::Stack)));
    // Caught or not, the spent budget is the answer.
    let program = compile("def f: try (1 + f) catch 0; f").unwrap();
    assert_eq!(program.run(Val::Null), Err(MapError::Budget(Exceeded::Stack)));
}

#[test]
fn endless_loops_are_stopped_at_the_deadline() {
    for code in ["last(repeat(1))", "reduce range(1e18) as $x (0; . + 1)", "[range(1e18)] | length", "until(false; .)"]
    {
        let started = std::time::Instant::now();
        let program = compile(code).unwrap();
        assert_eq!(program.run(Val::Null), Err(MapError::Budget(Exceeded::Time)), "{code}");
        assert!(started.elapsed() < RUN_TIME * 3, "{code} took {:?}", started.elapsed());
    }
}

#[test]
fn ordinary_programs_paths_and_updates_still_work_under_the_budget() {
    let record = parse_json(br#"{"lines":[{"q":"2"},{"q":"3"}],"a":{"b":1}}"#).unwrap();
    let run = |code: &str| to_value(&compile(code).unwrap().run(record.clone()).unwrap()).unwrap();
    assert_eq!(run("[.lines[] | .q | tonumber] | add"), serde_json::json!(5));
    assert_eq!(run("def g: .a; g |= 2 | .a"), serde_json::json!(2));
    assert_eq!(run("[paths] | length"), serde_json::json!(7));
    assert_eq!(run("[limit(3; repeat(1))]"), serde_json::json!([1, 1, 1]));
    assert_eq!(run("[range(3)]"), serde_json::json!([0, 1, 2]));
    assert_eq!(run(r#""[1,[2]]" | fromjson"#), serde_json::json!([1, [2]]));
}

#[test]
fn deeply_nested_json_is_refused_unread_by_the_reader_and_by_fromjson() {
    let deep = "[".repeat(400_000);
    assert!(matches!(parse_json(deep.as_bytes()), Err(MapError::TooDeep(_))));
    assert!(matches!(compile("{id: .id}").unwrap().run_json(deep.as_bytes()), Err(MapError::TooDeep(_))));
    let record = from_value(&serde_json::json!({"x": deep}));
    let err = compile(".x | fromjson").unwrap().run(record.clone()).unwrap_err();
    assert!(err.to_string().contains("deeper than 128"), "{err}");
    assert!(compile(".x | tonumber").unwrap().run(record).is_err());
}

#[test]
fn memory_past_the_budget_stops_the_run_before_the_process_runs_out() {
    for code in [
        // One step that would allocate past the budget: refused before it runs.
        r#""x" * 10000000000"#,
        r#"10000000000 * "x""#,
        r#"{a: "x"} | .a *= 10000000000"#,
        r#"try ("x" * 10000000000) catch "caught""#,
        // A value grown step by step (2^40 bytes at the end).
        r#"reduce range(40) as $i ("x"; . + .)"#,
        // Small held (one string, shared), enormous written out: 1000 × 1 MB.
        r#"("x" * 1000000) as $s | [limit(1000; repeat($s))] | tojson | length"#,
        r#"("x" * 1000000) as $s | [limit(1000; repeat($s))] | "\(.)" | length"#,
        r#"("x" * 1000000) as $s | [limit(1000; repeat($s))] | tostring | length"#,
        r#"("x" * 1000000) as $s | [limit(1000; repeat($s))]"#,
    ] {
        let program = compile(code).unwrap();
        // Not the value itself in a failure message: it may be enormous.
        let got = program.run(Val::Null).map(|_| "a value");
        assert_eq!(got, Err(MapError::Budget(Exceeded::Memory)), "{code}");
    }
}

#[test]
fn multiplication_and_interpolation_still_mean_what_they_mean() {
    let run = |code: &str| to_value(&compile(code).unwrap().run(Val::Null).unwrap()).unwrap();
    assert_eq!(run(r#""ab" * 3"#), serde_json::json!("ababab"));
    assert_eq!(run(r#"3 * "ab""#), serde_json::json!("ababab"));
    assert_eq!(run(r#""ab" * 0"#), serde_json::Value::Null);
    assert_eq!(run(r#"{"a": {"b": 1}} * {"a": {"c": 2}}"#), serde_json::json!({"a": {"b": 1, "c": 2}}));
    assert_eq!(run("[(1, 2) * (10, 20)]"), serde_json::json!([10, 20, 20, 40]));
    assert_eq!(run(r#"{a: 1, b: 5} | .a *= .b"#), serde_json::json!({"a": 5, "b": 5}));
    assert_eq!(run(r#"[1, "x"] | "\(.[0]) and \(.[1])""#), serde_json::json!("1 and x"));
    assert_eq!(run(r#"{"k": [1]} | tojson"#), serde_json::json!(r#"{"k":[1]}"#));
}
