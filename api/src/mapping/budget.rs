//! A budget for every jq run: a deadline and a stack reserve. jaq has no fuel of its
//! own, so every definition's body (the standard ones and the Mapping's), every
//! `reduce`/`foreach` update and every `range` output first passes a native `__tick`
//! that checks both. Recursion (`def f: 1+f; f`) therefore stops with an error before
//! the stack runs out, and an endless loop (`last(repeat(1))`) at the deadline. Once
//! spent, the budget stays spent for the rest of the run, so `try ... catch` cannot
//! carry on past it, and the run's result is the budget error whatever it produced.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use jaq_core::{
    Error, Exn, Native,
    box_iter::box_once,
    load::parse::{BinaryOp, Def, Pattern, Term},
    native::{Fun, v},
    path::Part,
};
use jaq_json::Val;

use super::{Data, json_depth};

/// How long one jq run may take (one record, one key, one example).
pub const RUN_TIME: Duration = Duration::from_secs(1);

/// How much of the thread's stack a run leaves untouched: room for the natives that run
/// between two checks and for unwinding.
const STACK_RESERVE: usize = 256 * 1024;

/// How many checks pass between two readings of the clock.
const CLOCK_EVERY: u32 = 1024;

const TICK: &str = "__tick";

/// Why a jq run was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    /// The run took longer than [`RUN_TIME`].
    #[error("the jq program ran longer than its budget of {RUN_TIME:?} and was stopped (an endless loop?)")]
    Time,
    /// The run recursed until little stack was left.
    #[error("the jq program recursed too deeply and was stopped before it ran out of stack (endless recursion?)")]
    Stack,
}

#[derive(Clone, Copy)]
struct State {
    deadline: Instant,
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
        let state = State { deadline: Instant::now() + RUN_TIME, ticks: 0, spent: None };
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
    } else if state.ticks % CLOCK_EVERY == 0 && Instant::now() > state.deadline {
        Some(Exceeded::Time)
    } else {
        None
    };
    state.spent = spent;
    BUDGET.set(Some(state));
    spent.map_or(Ok(()), Err)
}

fn exn<'a>(e: Exceeded) -> Exn<'a, Val> {
    Exn::from(Error::str(e))
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
        _ => (name, args, native),
    })
    .chain([ticking])
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

/// Definitions placed before all others: `range/3` charging each of its outputs.
pub(super) const PRELUDE: &str = "def range($from; $upto; $by): __range($from; $upto; $by) | __tick;";

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
        Term::Str(_, parts) => parts.iter_mut().for_each(|p| {
            if let jaq_core::load::lex::StrPart::Term(t) = p {
                instrument(t)
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
