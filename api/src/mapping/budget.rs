//! A budget for every jq run: a deadline, a stack reserve and a memory allowance. jaq
//! has no fuel of its own, so every definition's body (the standard ones and the
//! Mapping's), every `reduce`/`foreach` update and every `range` output first passes a
//! native `__tick` that checks all three. Recursion (`def f: 1+f; f`) therefore stops
//! with an error before the stack runs out, an endless loop (`last(repeat(1))`) at the
//! deadline, and a value grown step by step once the run holds more than
//! [`RUN_MEMORY`] (counted by the allocator, `memory.rs`). What one step could allocate
//! at once is checked before the step: a string repeated (`"x" * 10000000000`: every
//! `*` goes through `__mul`), a value written out as text (string interpolation,
//! `tostring`, `tojson`; a value whose parts are shared can be far larger written out
//! than held) and the run's result. Once spent, the budget stays spent for the rest of
//! the run, so `try ... catch` cannot carry on past it, and the run's result is the
//! budget error whatever it produced.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use jaq_core::{
    Error, Exn, Native,
    box_iter::box_once,
    load::{
        lex::StrPart,
        parse::{BinaryOp, Def, Pattern, Term},
    },
    native::{Fun, v},
    ops::Math,
    path::Part,
};
use jaq_json::{Num, Val};

pub use super::memory::RUN_MEMORY;
use super::{Data, json_depth, memory};

/// How long one jq run may take (one record, one key, one example).
pub const RUN_TIME: Duration = Duration::from_secs(1);

/// How much of the thread's stack a run leaves untouched: room for the natives that run
/// between two checks and for unwinding.
const STACK_RESERVE: usize = 256 * 1024;

/// How many checks pass between two readings of the clock.
const CLOCK_EVERY: u32 = 1024;

const TICK: &str = "__tick";
/// `l * r`, its size checked first (defined in [`PRELUDE`]).
const MUL: &str = "__mul";
/// The identity, once the value's size written out is checked.
const SIZE_CHECK: &str = "__size_check";

/// Why a jq run was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    /// The run took longer than [`RUN_TIME`].
    #[error("the jq program ran longer than its budget of {RUN_TIME:?} and was stopped (an endless loop?)")]
    Time,
    /// The run recursed until little stack was left.
    #[error("the jq program recursed too deeply and was stopped before it ran out of stack (endless recursion?)")]
    Stack,
    /// The run held, or was about to make, more than [`RUN_MEMORY`].
    #[error(
        "the jq program needed more memory than its budget of 128 MiB and was stopped (a value growing without end, \
         or too large to write out?)"
    )]
    Memory,
}

#[derive(Clone, Copy)]
struct State {
    deadline: Instant,
    /// [`memory::live`] when the run started.
    base: isize,
    ticks: u32,
    spent: Option<Exceeded>,
}

thread_local! {
    static BUDGET: Cell<Option<State>> = const { Cell::new(None) };
}

/// The budget of the run in progress on this thread; dropped, it ends the run (and puts
/// back an enclosing run's, should runs nest).
pub(super) struct Run {
    outer: Option<State>,
}

impl Run {
    /// Starts a run with a fresh budget.
    pub(super) fn start() -> Self {
        let state = State { deadline: Instant::now() + RUN_TIME, base: memory::live(), ticks: 0, spent: None };
        Self { outer: BUDGET.replace(Some(state)) }
    }

    /// Whether, and how, the budget was exceeded so far.
    pub(super) fn exceeded(&self) -> Option<Exceeded> {
        BUDGET.get().and_then(|s| s.spent)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        BUDGET.set(self.outer);
    }
}

/// Charges one step to the current run's budget.
fn tick() -> Result<(), Exceeded> {
    let Some(mut state) = BUDGET.get() else { return Ok(()) };
    if let Some(spent) = state.spent {
        return Err(spent);
    }
    state.ticks = state.ticks.wrapping_add(1);
    let spent = if stacker::remaining_stack().is_some_and(|left| left < STACK_RESERVE) {
        Some(Exceeded::Stack)
    } else if memory::live().saturating_sub(state.base) > RUN_MEMORY as isize {
        Some(Exceeded::Memory)
    } else if state.ticks % CLOCK_EVERY == 0 && Instant::now() > state.deadline {
        Some(Exceeded::Time)
    } else {
        None
    };
    state.spent = spent;
    BUDGET.set(Some(state));
    spent.map_or(Ok(()), Err)
}

/// Spends the current run's budget on `why`; the error to return.
fn spend<'a>(why: Exceeded) -> Exn<'a, Val> {
    if let Some(mut state) = BUDGET.get() {
        state.spent = state.spent.or(Some(why));
        BUDGET.set(Some(state));
    }
    exn(why)
}

fn exn<'a>(e: Exceeded) -> Exn<'a, Val> {
    Exn::from(Error::str(e))
}

/// Whether `value`, written out as JSON, takes at most `limit` bytes, near enough:
/// every part is counted each time it appears, as writing it out would (jq values
/// share their parts, so a value can be far larger written than held). Stops counting
/// as soon as the limit is passed.
pub(super) fn fits(value: &Val, limit: usize) -> bool {
    let mut left = limit;
    let mut stack: Vec<Box<dyn Iterator<Item = &Val> + '_>> = vec![Box::new(std::iter::once(value))];
    while let Some(top) = stack.last_mut() {
        let Some(v) = top.next() else {
            stack.pop();
            continue;
        };
        let cost = match v {
            Val::Null | Val::Bool(_) => 5,
            Val::Num(Num::Int(_) | Num::Float(_)) => 24,
            Val::Num(n) => n.to_string().len(),
            Val::TStr(s) | Val::BStr(s) => s.len() + 2,
            Val::Arr(items) => 2 + items.len(),
            Val::Obj(map) => 2 + 2 * map.len(),
        };
        left = match left.checked_sub(cost) {
            Some(left) => left,
            None => return false,
        };
        match v {
            Val::Arr(items) => stack.push(Box::new(items.iter())),
            Val::Obj(map) => stack.push(Box::new(map.iter().flat_map(|(k, v)| [k, v]))),
            _ => {}
        }
    }
    true
}

/// `__size_check`: the value, if it fits [`RUN_MEMORY`] written out.
fn size_check(cv: jaq_core::Cv<'_, Data>) -> jaq_core::ValXs<'_, Val> {
    if fits(&cv.1, RUN_MEMORY) { box_once(Ok(cv.1)) } else { box_once(Err(spend(Exceeded::Memory))) }
}

/// `tojson`, its size checked first.
fn tojson(cv: jaq_core::Cv<'_, Data>) -> jaq_core::ValXs<'_, Val> {
    if !fits(&cv.1, RUN_MEMORY) {
        return box_once(Err(spend(Exceeded::Memory)));
    }
    box_once(Ok(Val::utf8_str(super::to_json(&cv.1).into_bytes())))
}

/// `__checked_mul($l; $r)`: `$l * $r`, unless it repeats a string past [`RUN_MEMORY`].
fn checked_mul(mut cv: jaq_core::Cv<'_, Data>) -> jaq_core::ValXs<'_, Val> {
    let r = cv.0.pop_var();
    let l = cv.0.pop_var();
    let repeated = match (&l, &r) {
        (Val::TStr(s) | Val::BStr(s), Val::Num(n)) | (Val::Num(n), Val::TStr(s) | Val::BStr(s)) => Some((s.len(), n)),
        _ => None,
    };
    if let Some((len, times)) = repeated {
        let times = match times {
            Num::Int(i) => usize::try_from(*i).unwrap_or(0),
            // jaq saturates a big integer to the largest one.
            Num::BigInt(_) => usize::MAX,
            _ => 0,
        };
        if len.saturating_mul(times) > RUN_MEMORY {
            return box_once(Err(spend(Exceeded::Memory)));
        }
    }
    box_once(Math::Mul.run(l, r).map_err(Exn::from))
}

/// The natives that enforce the budget and the depth limit: `__tick` (the identity, or
/// an error once the budget is spent; for paths and updates too), `__range` (jaq's
/// `range/3`, renamed so that the `range` of [`PRELUDE`] charges each output) and a
/// `fromjson` that refuses a text nested too deeply before jaq's recursive reader sees it.
pub(super) fn natives(jaq: impl Iterator<Item = Fun<Data>>) -> impl Iterator<Item = Fun<Data>> {
    let tick_run: jaq_core::RunPtr<Data> = |cv| box_once(tick().map(|()| cv.1).map_err(exn));
    let tick_paths: jaq_core::PathsPtr<Data> = |cv| box_once(tick().map(|()| cv.1).map_err(exn));
    let tick_update: jaq_core::UpdatePtr<Data> = |cv, f| match tick() {
        Ok(()) => f(cv.1),
        Err(e) => box_once(Err(exn(e))),
    };
    let ticking = (TICK, v(0), Native::<Data>::new(tick_run).with_paths(tick_paths).with_update(tick_update));
    jaq.map(move |(name, args, native)| match name {
        "range" => ("__range", args, native),
        "fromjson" => (name, args, Native::<Data>::new(fromjson)),
        "tojson" => (name, args, Native::<Data>::new(tojson)),
        _ => (name, args, native),
    })
    .chain([
        ticking,
        ("__checked_mul", v(2), Native::<Data>::new(checked_mul)),
        (SIZE_CHECK, v(0), Native::<Data>::new(size_check)),
    ])
}

/// jq's `fromjson`, refusing a text nested deeper than [`json_depth::MAX_DEPTH`] before
/// jaq's recursive reader sees it.
fn fromjson(cv: jaq_core::Cv<'_, Data>) -> jaq_core::ValXs<'_, Val> {
    let Val::TStr(text) = &cv.1 else {
        return box_once(Err(exn_str(format!("cannot parse {} as JSON: it is not a string", cv.1))));
    };
    if let Err(e) = json_depth::check_depth(text) {
        return box_once(Err(exn_str(format!("cannot parse a string as JSON: {e}"))));
    }
    // Read eagerly (the text is borrowed), up to the first error: after one, the reader
    // does not advance and would repeat it forever.
    let mut values = Vec::new();
    for value in jaq_json::read::parse_many(text) {
        let failed = value.is_err();
        values.push(value.map_err(|e| exn_str(format!("cannot parse {} as JSON: {e}", cv.1))));
        if failed {
            break;
        }
    }
    Box::new(values.into_iter())
}

fn exn_str<'a>(message: String) -> Exn<'a, Val> {
    Exn::from(Error::str(message))
}

/// Definitions placed before all others: `range/3` charging each of its outputs, and the
/// `l * r` every `*` becomes (`r` then `l`, as jq combines a binary operator's outputs).
pub(super) const PRELUDE: &str = "def range($from; $upto; $by): __range($from; $upto; $by) | __tick;
def __mul(l; r): r as $r | l as $l | __checked_mul($l; $r);";

/// `def` with its body charged to the budget.
pub(super) fn instrument_def(mut def: Def<&str>) -> Def<&str> {
    instrument(&mut def.body);
    def.body = charged(std::mem::take(&mut def.body));
    def
}

fn charged(body: Term<&str>) -> Term<&str> {
    Term::BinOp(Box::new(Term::Call(TICK, Vec::new())), BinaryOp::Pipe(None), Box::new(body))
}

/// Charges every definition's body and every fold's update inside `term`.
pub(super) fn instrument(term: &mut Term<&str>) {
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Break(_) | Term::Var(_) => {}
        // What is interpolated is written out: its size is checked first.
        Term::Str(_, parts) => parts.iter_mut().for_each(|p| {
            if let StrPart::Term(t) = p {
                instrument(t);
                let value = std::mem::take(t);
                *t = Term::BinOp(Box::new(value), BinaryOp::Pipe(None), Box::new(Term::Call(SIZE_CHECK, Vec::new())));
            }
        }),
        Term::Arr(inner) => inner.iter_mut().for_each(|t| instrument(t)),
        Term::Obj(entries) => entries.iter_mut().for_each(|(k, v)| {
            instrument(k);
            v.iter_mut().for_each(instrument);
        }),
        Term::Neg(t) | Term::Label(_, t) => instrument(t),
        Term::BinOp(l, op, r) => {
            instrument(l);
            if let BinaryOp::Pipe(Some(pattern)) = op {
                instrument_pattern(pattern);
            }
            instrument(r);
            match op {
                BinaryOp::Math(Math::Mul) => {
                    let (l, r) = (std::mem::take(&mut **l), std::mem::take(&mut **r));
                    *term = Term::Call(MUL, vec![l, r]);
                }
                // `l *= r` is `r as $x | l |= . * $x`.
                BinaryOp::UpdateMath(Math::Mul) => {
                    let (l, r) = (std::mem::take(&mut **l), std::mem::take(&mut **r));
                    let by = Term::Call(MUL, vec![Term::Id, Term::Var("$__mul_by")]);
                    let update = Term::BinOp(Box::new(l), BinaryOp::Update, Box::new(by));
                    *term = Term::BinOp(Box::new(r), BinaryOp::Pipe(Some(Pattern::Var("$__mul_by"))), Box::new(update));
                }
                _ => {}
            }
        }
        Term::Fold(_, xs, pattern, args) => {
            instrument(xs);
            instrument_pattern(pattern);
            args.iter_mut().for_each(instrument);
            // The update runs once per element: charge it, so a fold over an endless
            // generator stops too.
            if let Some(update) = args.get_mut(1) {
                *update = charged(std::mem::take(update));
            }
        }
        Term::TryCatch(t, catch) => {
            instrument(t);
            catch.iter_mut().for_each(|c| instrument(c));
        }
        Term::IfThenElse(branches, otherwise) => {
            branches.iter_mut().for_each(|(c, t)| {
                instrument(c);
                instrument(t);
            });
            otherwise.iter_mut().for_each(|t| instrument(t));
        }
        Term::Def(defs, body) => {
            for def in defs.iter_mut() {
                *def = instrument_def(std::mem::replace(def, Def { name: def.name, args: Vec::new(), body: Term::Id }));
            }
            instrument(body);
        }
        Term::Call(_, args) => args.iter_mut().for_each(instrument),
        Term::Path(t, path) => {
            instrument(t);
            for (part, _) in path.0.iter_mut() {
                match part {
                    Part::Index(i) => instrument(i),
                    Part::Range(from, to) => {
                        from.iter_mut().for_each(instrument);
                        to.iter_mut().for_each(instrument);
                    }
                }
            }
        }
    }
}

fn instrument_pattern(pattern: &mut Pattern<&str>) {
    match pattern {
        Pattern::Var(_) => {}
        Pattern::Arr(items) => items.iter_mut().for_each(instrument_pattern),
        Pattern::Obj(entries) => entries.iter_mut().for_each(|(k, p)| {
            instrument(k);
            instrument_pattern(p);
        }),
    }
}
