//! Plain Mappings compiled to a Rust plan, run without the jq interpreter.
//!
//! Most of the project's Mappings build one object from the record's fields: paths
//! (`.customer.email`, `.placedAt[0:10]`, `$lookups.units[.uom]`), literals, nested
//! objects, arrays collected from one iteration (`[.lines[] | {sku}]`), `//`, `if`,
//! arithmetic and comparisons, argument-less local `def`s, and a few builtins (`tostring`,
//! `tonumber`, `round`, `floor`, `ascii_downcase`, `ascii_upcase`, `length`, `add`,
//! `not`, `fromdate`, `todate`). Such a program compiles to a [`Plan`] as well.
//!
//! A plan computes the same values as jaq, through jaq's own value operations; whenever
//! a record leaves the plain case (a type error, a missing iterable, a fractional date,
//! anything jq would report or treat specially) the plan gives up on that record and the
//! caller runs the jq program instead, so errors and edge cases stay jaq's.

mod compile;
mod eval;
mod plan;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use jaq_json::Val;

use self::{
    compile::Compiler,
    eval::{Cx, In},
    plan::Expr,
};
use super::json_tree::{Json, Shape};

/// A Mapping compiled to Rust; `None` from [`Plan::run`] means "run the jq program".
#[derive(Debug, Clone)]
pub(super) struct Plan {
    expr: Expr,
    reads_lookups: bool,
    /// What of a payload the plan reads: the rest is skipped when it is parsed.
    shape: Shape,
}

impl Plan {
    /// The plan for `code`, if the whole program is in the plain subset.
    pub(super) fn compile(code: &str) -> Option<Self> {
        let term = jaq_core::load::parse(code, |p| p.term())?;
        let expr = Compiler::default().expr(&term)?;
        let mut shape = Shape::nothing();
        expr.needs(&mut shape);
        Some(Plan { reads_lookups: expr.reads_lookups(), shape, expr })
    }

    /// `payload` read into a tree of what the plan reads; `None` when serde refuses it.
    pub(super) fn parse<'a>(&self, payload: &'a [u8]) -> Option<Json<'a>> {
        Json::parse_shaped(payload, &self.shape)
    }

    /// The program's one output on `input`, or `None` when the record needs jq.
    pub(super) fn run(&self, input: &Val, lookups: &Val) -> Option<Val> {
        let cx = Cx { lookups, payload: None };
        self.expr.eval(&In::Val(input.clone()), &cx)?.val(&cx)
    }

    /// The program's one output on `payload` read by [`Json::parse`] into `input`, or
    /// `None` when the record needs jq.
    pub(super) fn run_json(&self, payload: &Bytes, input: &Json<'_>, lookups: &Val) -> Option<Val> {
        let cx = Cx { lookups, payload: Some(payload) };
        self.expr.eval(&In::Raw(input), &cx)?.val(&cx)
    }

    /// Whether the plan reads `$lookups`.
    pub(super) fn reads_lookups(&self) -> bool {
        self.reads_lookups
    }
}
