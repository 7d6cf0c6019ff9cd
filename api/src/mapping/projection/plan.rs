//! What a plain Mapping compiles to: expressions over the record, `$lookups` and
//! literals.

use bytes::Bytes;
use jaq_core::ops::{Cmp, Math};

use crate::mapping::json_tree::Shape;

#[derive(Debug, Clone)]
pub(super) enum Expr {
    Id,
    Lookups,
    Lit(Lit),
    Path(Box<Expr>, Vec<Step>),
    Pipe(Box<Expr>, Box<Expr>),
    Obj(Vec<(Bytes, Expr)>),
    /// `[source[] | each]`: `source` gives the iterable, `rest` indexes each item.
    Collect {
        source: Box<Expr>,
        optional: bool,
        rest: Vec<Step>,
        each: Option<Box<Expr>>,
    },
    Alt(Box<Expr>, Box<Expr>),
    Math(Box<Expr>, Math, Box<Expr>),
    Cmp(Box<Expr>, Cmp, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Builtin(Builtin),
}

#[derive(Debug, Clone)]
pub(super) enum Lit {
    Null,
    Bool(bool),
    Int(isize),
    /// Shared, not copied, by each value made of it.
    Str(Bytes),
}

#[derive(Debug, Clone)]
pub(super) enum Step {
    /// `.key`: a literal key, as text and as the bytes of jq values.
    Key(Box<str>, Bytes),
    /// `.key`, `.[expr]`: the key is computed from the path's input.
    Index(Expr),
    /// `[from:to]` with literal integer bounds.
    Slice(Option<isize>, Option<isize>),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Builtin {
    ToString,
    ToNumber,
    Round,
    Floor,
    Downcase,
    Upcase,
    Length,
    Add,
    Not,
    FromDate,
    ToDate,
}

impl Builtin {
    pub(super) fn named(name: &str) -> Option<Self> {
        Some(match name {
            "tostring" => Self::ToString,
            "tonumber" => Self::ToNumber,
            "round" => Self::Round,
            "floor" => Self::Floor,
            "ascii_downcase" => Self::Downcase,
            "ascii_upcase" => Self::Upcase,
            "length" => Self::Length,
            "add" => Self::Add,
            "not" => Self::Not,
            "fromdate" | "fromdateiso8601" => Self::FromDate,
            "todate" | "todateiso8601" => Self::ToDate,
            _ => return None,
        })
    }
}

impl Expr {
    pub(super) fn reads_lookups(&self) -> bool {
        let steps = |steps: &[Step]| steps.iter().any(|s| matches!(s, Step::Index(e) if e.reads_lookups()));
        match self {
            Self::Lookups => true,
            Self::Id | Self::Lit(_) | Self::Builtin(_) => false,
            Self::Path(head, s) => head.reads_lookups() || steps(s),
            Self::Obj(entries) => entries.iter().any(|(_, v)| v.reads_lookups()),
            Self::Collect { source, rest, each, .. } => {
                source.reads_lookups() || steps(rest) || each.as_ref().is_some_and(|e| e.reads_lookups())
            }
            Self::Pipe(l, r) | Self::Alt(l, r) | Self::Math(l, _, r) | Self::Cmp(l, _, r) => {
                l.reads_lookups() || r.reads_lookups()
            }
            Self::If(c, t, o) => c.reads_lookups() || t.reads_lookups() || o.reads_lookups(),
        }
    }

    /// Marks in `input` what evaluating this on it reads; what may flow into the result
    /// is marked whole, as the result may be read whole.
    pub(super) fn needs(&self, input: &mut Shape) {
        match self {
            Self::Id | Self::Builtin(_) => input.all(),
            Self::Lookups | Self::Lit(_) => {}
            Self::Path(head, steps) => {
                computed_keys(steps, input);
                match &**head {
                    Self::Id => {
                        if let Some(at) = walk(input, steps) {
                            at.all();
                        }
                    }
                    head => head.needs(input),
                }
            }
            Self::Pipe(l, r) => match &**l {
                Self::Id => r.needs(input),
                Self::Path(head, steps) if matches!(**head, Self::Id) => {
                    computed_keys(steps, input);
                    if let Some(at) = walk(input, steps) {
                        r.needs(at);
                    }
                }
                l => l.needs(input),
            },
            Self::Obj(entries) => entries.iter().for_each(|(_, v)| v.needs(input)),
            Self::Collect { source, rest, each, .. } => {
                computed_keys(rest, input);
                let items = match &**source {
                    Self::Path(head, steps) if matches!(**head, Self::Id) => {
                        computed_keys(steps, input);
                        walk(input, steps).and_then(Shape::items)
                    }
                    source => {
                        source.needs(input);
                        None
                    }
                };
                if let Some(at) = items.and_then(|items| walk(items, rest)) {
                    match each {
                        Some(each) => each.needs(at),
                        None => at.all(),
                    }
                }
            }
            Self::Alt(l, r) | Self::Math(l, _, r) | Self::Cmp(l, _, r) => {
                l.needs(input);
                r.needs(input);
            }
            Self::If(c, t, o) => [c, t, o].iter().for_each(|e| e.needs(input)),
        }
    }
}

/// Computed keys (`[.sku]`) read the path's input.
fn computed_keys(steps: &[Step], input: &mut Shape) {
    for step in steps {
        if let Step::Index(key) = step {
            key.needs(input);
        }
    }
}

/// The part of `shape` that `steps` lead to, or `None` when it is read whole already (or
/// from a step on, read whole now: a computed key or a slice).
fn walk<'s>(shape: &'s mut Shape, steps: &[Step]) -> Option<&'s mut Shape> {
    let mut at = shape;
    for step in steps {
        at = match step {
            Step::Key(key, _) => at.member(key)?,
            Step::Index(Expr::Lit(Lit::Int(_))) => at.items()?,
            Step::Index(_) | Step::Slice(..) => {
                at.all();
                return None;
            }
        };
    }
    Some(at)
}
