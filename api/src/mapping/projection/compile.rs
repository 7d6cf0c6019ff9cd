//! From jq's syntax tree to a [`Expr`]: the plain subset, or nothing.

use std::collections::HashMap;

use jaq_core::{
    load::{lex::StrPart, parse::BinaryOp, parse::Term},
    path::{Opt, Part},
};

use super::plan::{Builtin, Expr, Lit, Step};

/// Turns a parsed term into an [`Expr`]; local definitions are inlined.
#[derive(Default)]
pub(super) struct Compiler {
    /// Argument-less definitions in scope; `None` while its own body compiles (recursion
    /// is not plain).
    defs: HashMap<String, Option<Expr>>,
}

impl Compiler {
    pub(super) fn expr(&mut self, term: &Term<&str>) -> Option<Expr> {
        Some(match term {
            Term::Id => Expr::Id,
            Term::Num(n) => Expr::Lit(Lit::Int(n.parse().ok()?)),
            Term::Neg(n) => match &**n {
                Term::Num(n) => Expr::Lit(Lit::Int(-n.parse::<isize>().ok()?)),
                _ => return None,
            },
            Term::Str(None, parts) => Expr::Lit(Lit::Str(literal(parts)?.into())),
            Term::Var(v) if *v == "$lookups" => Expr::Lookups,
            Term::Obj(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let Term::Str(None, parts) = key else { return None };
                    let key = literal(parts)?;
                    let value = match value {
                        Some(v) => self.expr(v)?,
                        None => Expr::Path(Box::new(Expr::Id), vec![Step::Key(key.clone().into(), key.clone().into())]),
                    };
                    out.push((key.into(), value));
                }
                Expr::Obj(out)
            }
            Term::Arr(Some(inner)) => self.collect(inner)?,
            Term::Path(head, path) => {
                let head = self.expr(head)?;
                Expr::Path(Box::new(head), self.steps(&path.0)?)
            }
            Term::BinOp(l, op, r) => {
                let (l, r) = (Box::new(self.expr(l)?), Box::new(self.expr(r)?));
                match op {
                    BinaryOp::Pipe(None) => Expr::Pipe(l, r),
                    BinaryOp::Alt => Expr::Alt(l, r),
                    BinaryOp::Math(m) => Expr::Math(l, *m, r),
                    BinaryOp::Cmp(c) => Expr::Cmp(l, *c, r),
                    _ => return None,
                }
            }
            Term::IfThenElse(branches, otherwise) => {
                let mut out = match otherwise {
                    Some(e) => self.expr(e)?,
                    None => Expr::Id,
                };
                for (cond, then) in branches.iter().rev() {
                    out = Expr::If(Box::new(self.expr(cond)?), Box::new(self.expr(then)?), Box::new(out));
                }
                out
            }
            Term::Call(name, args) if args.is_empty() => match self.defs.get(*name) {
                Some(def) => def.clone()?,
                None => match *name {
                    "null" => Expr::Lit(Lit::Null),
                    "true" => Expr::Lit(Lit::Bool(true)),
                    "false" => Expr::Lit(Lit::Bool(false)),
                    _ => Expr::Builtin(Builtin::named(name)?),
                },
            },
            Term::Def(defs, body) => {
                let saved = self.defs.clone();
                for def in defs {
                    if !def.args.is_empty() {
                        return None;
                    }
                    self.defs.insert(def.name.to_string(), None);
                    let compiled = self.expr(&def.body)?;
                    self.defs.insert(def.name.to_string(), Some(compiled));
                }
                let body = self.expr(body);
                self.defs = saved;
                body?
            }
            _ => return None,
        })
    }

    /// `[t]` where `t` is `path[]...` or `path[]... | each`, one iteration.
    fn collect(&mut self, inner: &Term<&str>) -> Option<Expr> {
        let (stream, each) = match inner {
            Term::BinOp(l, BinaryOp::Pipe(None), r) => (&**l, Some(Box::new(self.expr(r)?))),
            other => (other, None),
        };
        let Term::Path(head, path) = stream else { return None };
        let at = path.0.iter().position(|(part, _)| matches!(part, Part::Range(None, None)))?;
        let (before, rest) = (&path.0[..at], &path.0[at + 1..]);
        let optional = matches!(path.0[at].1, Opt::Optional);
        let source = Expr::Path(Box::new(self.expr(head)?), self.steps(before)?);
        Some(Expr::Collect { source: Box::new(source), optional, rest: self.steps(rest)?, each })
    }

    fn steps(&mut self, parts: &[(Part<Term<&str>>, Opt)]) -> Option<Vec<Step>> {
        parts
            .iter()
            .map(|(part, opt)| match (part, opt) {
                (_, Opt::Optional) => None,
                (Part::Index(Term::Str(None, parts)), _) => {
                    let key = literal(parts)?;
                    Some(Step::Key(key.clone().into(), key.into()))
                }
                (Part::Index(key), _) => Some(Step::Index(self.expr(key)?)),
                (Part::Range(from, to), _) if from.is_some() || to.is_some() => {
                    let bound = |t: &Option<Term<&str>>| match t {
                        None => Some(None),
                        Some(Term::Num(n)) => n.parse().ok().map(Some),
                        Some(Term::Neg(n)) => match &**n {
                            Term::Num(n) => n.parse::<isize>().ok().map(|n| Some(-n)),
                            _ => None,
                        },
                        Some(_) => None,
                    };
                    Some(Step::Slice(bound(from)?, bound(to)?))
                }
                _ => None,
            })
            .collect()
    }
}

/// A string literal without interpolation.
fn literal(parts: &[StrPart<&str, Term<&str>>]) -> Option<String> {
    let mut out = String::new();
    for part in parts {
        match part {
            StrPart::Str(s) => out.push_str(s),
            StrPart::Char(c) => out.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(out)
}
