//! Mappings: jq programs (run by `jaq`) that turn one system's payload into a canonical
//! record or a canonical record into a system's payload, and the key expressions
//! (`delivery.orderingKey`, `delivery.idempotencyKey`) evaluated on canonical records.

mod allowlist;
mod budget;
#[cfg(test)]
mod budget_tests;
mod json_depth;
mod json_tree;
mod json_write;
#[cfg(test)]
mod manual_tests;
mod memory;
mod projection;
mod test_case;

use std::collections::BTreeMap;

use jaq_core::{
    Compiler, Ctx, Vars,
    data::JustLut,
    load::{Arena, File, Loader, parse::Def},
    unwrap_valr,
};
use jaq_json::Val;

pub use budget::{Exceeded, RUN_MEMORY, RUN_TIME};
pub use json_depth::{MAX_DEPTH, TooDeep, check_depth};
pub use memory::CountingAllocator;
pub use test_case::{TestFailure, TestReport, diff_json, run_compiled, run_tests, test_compiled};

type Data = JustLut<Val>;
type Filter = jaq_core::Filter<Data>;

/// A jq program that failed to compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("jq program does not compile: {0}")]
pub struct CompileError(pub String);

/// A record the program could not map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The input is not JSON.
    #[error("input is not valid JSON: {0}")]
    InvalidJson(String),
    /// The input nests deeper than [`MAX_DEPTH`]; it was not parsed.
    #[error("input refused: {0}")]
    TooDeep(#[from] TooDeep),
    /// The run exceeded its budget (time or stack) and was stopped.
    #[error("{0}")]
    Budget(#[from] Exceeded),
    /// jq raised an error (`error(...)`, a type error, a missing lookup).
    #[error("jq error: {0}")]
    Jq(String),
    /// The program produced no value or several; a mapping must produce exactly one.
    #[error("the program produced {0} values; a mapping must produce exactly one")]
    NotOneValue(usize),
    /// A key expression produced something other than a string or a number.
    #[error("key expression `{expr}` gave {got}; it must give a non-empty string or a number")]
    BadKey {
        /// The expression.
        expr: String,
        /// What it gave.
        got: String,
    },
}

/// A compiled jq program with its lookup tables.
///
/// It holds no jq values (those are reference-counted and not `Send`), so a program can
/// be shared between tasks; the lookup tables are parsed on each run from their JSON.
pub struct Program {
    filter: Filter,
    /// The same program as a Rust plan, when it is plain enough (`projection.rs`).
    plan: Option<projection::Plan>,
    source: String,
    lookups: Option<String>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program").field("source", &self.source).finish_non_exhaustive()
    }
}

const LOOKUPS: &str = "$lookups";

impl Program {
    /// Compiles `code`; `$lookups` is bound to `lookups` when the program runs.
    pub fn compile(code: &str, lookups: &BTreeMap<String, BTreeMap<String, String>>) -> Result<Self, CompileError> {
        let arena = Arena::default();
        // Loaded once as written, for the syntax errors and their positions.
        Loader::new(prelude_defs())
            .load(&arena, File { code, path: () })
            .map_err(|errs| CompileError(describe_load_errors(code, errs)))?;
        // Then compiled as the body of a definition charged to the run's budget, after
        // the charged standard ones (`budget.rs`).
        let main = jaq_core::load::parse(code, |p| p.term())
            .ok_or_else(|| CompileError("the program is not a single jq filter (no module directives)".into()))?;
        let mut main = Def { name: MAIN, args: Vec::new(), body: main };
        budget::instrument(&mut main.body);
        let defs = prelude_defs().map(|def| -> Def<&str> { budget::instrument_def(def) }).chain([main]);
        let modules = Loader::new(defs)
            .load(&arena, File { code: MAIN, path: () })
            .map_err(|errs| CompileError(describe_load_errors(MAIN, errs)))?;
        let funs = budget::natives(allowlist::natives());
        let filter =
            Compiler::default().with_funs(funs).with_global_vars([LOOKUPS]).compile(modules).map_err(|errs| {
                let undefined: Vec<String> = errs
                    .into_iter()
                    .flat_map(|(_, es)| es)
                    .map(|(name, kind)| describe_undefined(code, name, &kind))
                    .collect();
                CompileError(undefined.join("; "))
            })?;
        let lookups =
            (!lookups.is_empty()).then(|| serde_json::to_string(lookups).expect("string maps always serialize"));
        Ok(Self { filter, plan: projection::Plan::compile(code), source: code.to_string(), lookups })
    }

    /// The program's source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the program runs as a Rust plan on plain records (`projection.rs`).
    pub fn is_native(&self) -> bool {
        self.plan.is_some()
    }

    /// Runs the program on one record; it must produce exactly one value.
    pub fn run(&self, input: Val) -> Result<Val, MapError> {
        if let Some(plan) = &self.plan
            && let Some(out) = plan.run(&input, &self.plan_lookups(plan)?)
        {
            return Ok(out);
        }
        self.run_jq(input)
    }

    /// Runs the program on one record given as JSON, read once: a program that runs as a
    /// plan reads only the fields it uses, without making a jq value of the rest.
    pub fn run_json(&self, payload: &[u8]) -> Result<Val, MapError> {
        if let Some(plan) = &self.plan {
            // One copy of the payload, whose strings the record's values then share.
            let payload = bytes::Bytes::copy_from_slice(payload);
            if let Some(json) = plan.parse(&payload)
                && let Some(out) = plan.run_json(&payload, &json, &self.plan_lookups(plan)?)
            {
                return Ok(out);
            }
        }
        self.run_jq(parse_json(payload)?)
    }

    /// `$lookups` for the plan: parsed only if it reads them.
    fn plan_lookups(&self, plan: &projection::Plan) -> Result<Val, MapError> {
        if plan.reads_lookups() { self.lookups() } else { Ok(Val::Null) }
    }

    /// Runs the jq program itself (never the plan).
    fn run_jq(&self, input: Val) -> Result<Val, MapError> {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([self.lookups()?]));
        let run = budget::Run::start();
        let result = (|| {
            let mut outputs = self.filter.id.run((ctx, input)).map(unwrap_valr);
            let first = match outputs.next() {
                None => return Err(MapError::NotOneValue(0)),
                Some(r) => r.map_err(|e| MapError::Jq(e.to_string()))?,
            };
            let extra = outputs.take(10).count();
            if extra > 0 {
                return Err(MapError::NotOneValue(1 + extra));
            }
            // Written out next: a result whose parts are shared may be far larger so.
            if !budget::fits(&first, RUN_MEMORY) {
                return Err(MapError::Budget(Exceeded::Memory));
            }
            Ok(first)
        })();
        // A spent budget wins over whatever the program made of the error (`try`).
        match run.exceeded() {
            Some(exceeded) => Err(MapError::Budget(exceeded)),
            None => result,
        }
    }

    /// `$lookups` as a jq value.
    fn lookups(&self) -> Result<Val, MapError> {
        match &self.lookups {
            Some(json) => parse_json(json.as_bytes()),
            None => Ok(Val::obj(Default::default())),
        }
    }

    /// Every output of the program on `input`, at most `max`, stopping after the first
    /// error: what jq prints for one input.
    #[cfg(test)]
    pub(crate) fn outputs(&self, input: Val, max: usize) -> Vec<Result<Val, String>> {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([self.lookups().expect("lookups are valid JSON")]));
        let _run = budget::Run::start();
        let mut out = Vec::new();
        for r in self.filter.id.run((ctx, input)).map(unwrap_valr).take(max) {
            let stop = r.is_err();
            out.push(r.map_err(|e| e.to_string()));
            if stop {
                break;
            }
        }
        out
    }

    /// Runs the program as a key expression: the result as text.
    pub fn run_key(&self, input: &Val) -> Result<String, MapError> {
        let out = self.run(input.clone())?;
        let bad = |got: &Val| MapError::BadKey { expr: self.source.clone(), got: truncate(&got.to_string(), 80) };
        match &out {
            Val::TStr(text) if let Ok(key) = std::str::from_utf8(text) => {
                if key.is_empty() {
                    Err(bad(&out))
                } else {
                    Ok(key.to_string())
                }
            }
            Val::TStr(_) | Val::BStr(_) => {
                let text = out.to_string();
                // Display writes JSON: strip the quotes and escapes by reading it back.
                let key: String = serde_json::from_str(&text).map_err(|_| bad(&out))?;
                if key.is_empty() { Err(bad(&out)) } else { Ok(key) }
            }
            Val::Num(_) => Ok(out.to_string()),
            _ => Err(bad(&out)),
        }
    }
}

/// The name the program itself is defined under, after every standard definition.
const MAIN: &str = "__mapping";

/// The jq 1.7 builtins jaq lacks, defined in jq (`jq17.jq`): compiled with every program.
fn jq17_defs() -> impl Iterator<Item = Def<&'static str>> {
    jaq_core::load::parse(include_str!("jq17.jq"), |p| p.defs()).expect("jq17.jq parses").into_iter()
}

/// Every definition a Mapping is compiled after: the budgeted `range`, the allowed
/// standard ones, then jq 1.7's.
fn prelude_defs() -> impl Iterator<Item = Def<&'static str>> {
    let budgeted = jaq_core::load::parse(budget::PRELUDE, |p| p.defs()).expect("the budget prelude parses");
    budgeted.into_iter().chain(allowlist::standard_defs()).chain(jq17_defs())
}

/// Parses JSON bytes into a jq value, refusing them unread when they nest deeper than
/// [`MAX_DEPTH`] (jaq's reader recurses once per level).
pub fn parse_json(bytes: &[u8]) -> Result<Val, MapError> {
    check_depth(bytes)?;
    jaq_json::read::parse_single(bytes).map_err(|e| MapError::InvalidJson(e.to_string()))
}

/// Converts a `serde_json` value into a jq value.
pub fn from_value(value: &serde_json::Value) -> Val {
    serde::Deserialize::deserialize(value).expect("every JSON value is a jq value")
}

/// Writes a jq value as compact JSON.
pub fn to_json(value: &Val) -> String {
    let mut out = Vec::with_capacity(1024);
    json_write::write(value, &mut out);
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

/// Converts a jq value into a `serde_json` value.
pub fn to_value(value: &Val) -> Result<serde_json::Value, MapError> {
    match json_write::to_value(value) {
        Some(v) => Ok(v),
        None => serde_json::from_str(&to_json(value)).map_err(|e| MapError::InvalidJson(e.to_string())),
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// An undefined name, with why when a Mapping may not use it, and where it first appears.
fn describe_undefined(code: &str, name: &str, kind: &jaq_core::compile::Undefined) -> String {
    let kind = undefined_kind(kind);
    let Some(why) = allowlist::refusal(name) else { return format!("undefined {kind} `{name}`") };
    let at = code.match_indices(name).find(|(i, _)| {
        let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
        let before = code[..*i].chars().next_back().is_none_or(|c| !word(c));
        let after = code[i + name.len()..].chars().next().is_none_or(|c| !word(c));
        before && after
    });
    let position = at.map_or(String::new(), |(i, _)| {
        let line = code[..i].matches('\n').count() + 1;
        let column = i - code[..i].rfind('\n').map_or(0, |n| n + 1) + 1;
        format!(" at {line}:{column}")
    });
    format!("`{name}`{position} is not allowed in a Mapping: {why} (docs/mappings.md lists what is refused)")
}

fn undefined_kind(kind: &jaq_core::compile::Undefined) -> &'static str {
    use jaq_core::compile::Undefined;
    match kind {
        Undefined::Mod => "module",
        Undefined::Var => "variable",
        Undefined::Label => "label",
        Undefined::Filter(_) => "filter",
        _ => "symbol",
    }
}

/// Describes lex and parse errors with the position (line:column) in the program.
fn describe_load_errors(code: &str, errs: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let at = |s: &str| {
        let offset = (s.as_ptr() as usize).saturating_sub(code.as_ptr() as usize).min(code.len());
        let before = &code[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{line}:{column}")
    };
    let mut messages = Vec::new();
    for (_, err) in errs {
        match err {
            Error::Io(es) => messages.extend(es.into_iter().map(|(path, e)| format!("cannot load {path}: {e}"))),
            Error::Lex(es) => messages.extend(
                es.into_iter().map(|(expect, found)| format!("at {}: expected {}", at(found), expect.as_str())),
            ),
            Error::Parse(es) => messages.extend(es.into_iter().map(|(expect, found)| {
                let token =
                    if found.is_empty() { "end of program".to_string() } else { format!("`{}`", truncate(found, 20)) };
                format!("at {}: expected {}, found {token}", at(found), expect.as_str())
            })),
        }
    }
    messages.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(code: &str) -> Program {
        Program::compile(code, &BTreeMap::new()).unwrap()
    }

    #[test]
    fn maps_a_record() {
        let out = program("{id: .id, total: (.price | tonumber * 100 | round)}")
            .run(parse_json(br#"{"id": "A-1", "price": "19.99"}"#).unwrap())
            .unwrap();
        assert_eq!(to_value(&out).unwrap(), serde_json::json!({"id": "A-1", "total": 1999}));
    }

    #[test]
    fn lookups_are_bound() {
        let lookups = BTreeMap::from([("uom".to_string(), BTreeMap::from([("ea".to_string(), "EACH".to_string())]))]);
        let p = Program::compile(r#"$lookups.uom[.u] // error("unknown unit \(.u)")"#, &lookups).unwrap();
        assert_eq!(to_json(&p.run(parse_json(br#"{"u":"ea"}"#).unwrap()).unwrap()), r#""EACH""#);
        let err = p.run(parse_json(br#"{"u":"kg"}"#).unwrap()).unwrap_err();
        assert!(err.to_string().contains("unknown unit kg"), "{err}");
    }

    #[test]
    fn a_syntax_error_gives_the_position() {
        let err = Program::compile("{id: .id,\n  total: (.price |}", &BTreeMap::new()).unwrap_err();
        assert!(err.0.contains("2:"), "{err}");
        let err = Program::compile("nosuchfn(1)", &BTreeMap::new()).unwrap_err();
        assert!(err.0.contains("undefined filter `nosuchfn`"), "{err}");
    }

    #[test]
    fn a_mapping_must_give_exactly_one_value() {
        assert_eq!(program(".[]").run(parse_json(b"[1,2]").unwrap()), Err(MapError::NotOneValue(2)));
        assert_eq!(program("empty").run(Val::Null), Err(MapError::NotOneValue(0)));
    }

    #[test]
    fn keys_are_text() {
        let record = parse_json(br#"{"orderId":"A\"1","rev":3,"x":null}"#).unwrap();
        assert_eq!(program(r#".orderId + ":" + (.rev|tostring)"#).run_key(&record).unwrap(), "A\"1:3");
        assert_eq!(program(".rev").run_key(&record).unwrap(), "3");
        assert!(matches!(program(".x").run_key(&record), Err(MapError::BadKey { .. })));
    }
}
