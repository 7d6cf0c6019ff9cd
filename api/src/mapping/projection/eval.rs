//! Running a [`Plan`](super::Plan) on a record: on the payload's tree where the plan
//! only reads it, on jq values where it computes; `None` whenever jq must answer.

use bytes::Bytes;
use jaq_core::{
    ValT as _,
    ops::{Cmp, Math},
};
use jaq_json::Val;
use jaq_std::ValT as _;

use super::plan::{Builtin, Expr, Lit, Step};
use crate::mapping::json_tree::Json;

/// A value during a plan's run: a part of the payload not yet read into a jq value, or
/// a jq value.
#[derive(Clone)]
pub(super) enum In<'a> {
    Raw(&'a Json<'a>),
    Val(Val),
}

/// What a run reads besides its input: `$lookups`, and the payload's bytes (the plan's
/// strings share them rather than copy them).
pub(super) struct Cx<'c> {
    pub(super) lookups: &'c Val,
    pub(super) payload: Option<&'c Bytes>,
}

impl In<'_> {
    pub(super) fn val(self, cx: &Cx<'_>) -> Option<Val> {
        match self {
            In::Raw(json) => json.to_val(cx.payload),
            In::Val(v) => Some(v),
        }
    }

    fn is_true(&self) -> Option<bool> {
        Some(match self {
            In::Raw(Json::Null | Json::Bool(false)) => false,
            In::Raw(_) => true,
            In::Val(v) => v.as_bool(),
        })
    }
}

impl Expr {
    pub(super) fn eval<'a>(&self, input: &In<'a>, cx: &Cx<'_>) -> Option<In<'a>> {
        let val = |e: &Expr| e.eval(input, cx)?.val(cx);
        Some(match self {
            Self::Id => input.clone(),
            Self::Lookups => In::Val(cx.lookups.clone()),
            Self::Lit(lit) => In::Val(match lit {
                Lit::Null => Val::Null,
                Lit::Bool(b) => Val::Bool(*b),
                Lit::Int(i) => Val::from(*i),
                Lit::Str(s) => Val::TStr(Box::new(s.clone())),
            }),
            Self::Path(head, steps) => {
                let mut v = head.eval(input, cx)?;
                for step in steps {
                    v = step.apply(v, input, cx)?;
                }
                v
            }
            Self::Pipe(l, r) => r.eval(&l.eval(input, cx)?, cx)?,
            Self::Obj(entries) => {
                let mut map = jaq_json::Map::default();
                map.reserve(entries.len());
                for (key, value) in entries {
                    map.insert(Val::TStr(Box::new(key.clone())), val(value)?);
                }
                In::Val(Val::obj(map))
            }
            Self::Collect { source, optional, rest, each } => {
                let mut out = Vec::with_capacity(8);
                let mut push = |item: In<'a>| -> Option<()> {
                    let mut v = item;
                    for step in rest {
                        v = step.apply(v, input, cx)?;
                    }
                    out.push(match each {
                        Some(each) => each.eval(&v, cx)?.val(cx)?,
                        None => v.val(cx)?,
                    });
                    Some(())
                };
                match source.eval(input, cx)? {
                    In::Raw(Json::Arr(items)) => items.iter().try_for_each(|item| push(In::Raw(item)))?,
                    In::Val(Val::Arr(items)) => items.iter().try_for_each(|item| push(In::Val(item.clone())))?,
                    In::Raw(Json::Obj(_)) | In::Val(Val::Obj(_)) => return None,
                    _ if *optional => {}
                    _ => return None,
                }
                In::Val(Val::Arr(out.into()))
            }
            Self::Alt(l, r) => {
                let v = l.eval(input, cx)?;
                if v.is_true()? { v } else { r.eval(input, cx)? }
            }
            // `tonumber * 100`, money to minor units: straight from the payload's text,
            // as jaq computes it (a decimal times an integer is their product as floats).
            Self::Math(l, Math::Mul, r)
                if let (Expr::Builtin(Builtin::ToNumber), Expr::Lit(Lit::Int(k)), In::Raw(Json::Str(s))) =
                    (&**l, &**r, input)
                    && let Some(n) = scaled(s, *k) =>
            {
                In::Val(n)
            }
            Self::Math(l, op, r) => {
                let (l, r) = (val(l)?, val(r)?);
                // A string repeated is left to jq, which checks its size against the
                // run's memory budget first (`budget::checked_mul`).
                if *op == Math::Mul && [&l, &r].iter().any(|v| matches!(v, Val::TStr(_) | Val::BStr(_))) {
                    return None;
                }
                In::Val(
                    match op {
                        Math::Add => l + r,
                        Math::Sub => l - r,
                        Math::Mul => l * r,
                        Math::Div => l / r,
                        Math::Rem => l % r,
                    }
                    .ok()?,
                )
            }
            // `x == null`, the commonest test, without making a jq value of `x`.
            Self::Cmp(l, op @ (Cmp::Eq | Cmp::Ne), r) if matches!(**r, Expr::Lit(Lit::Null)) => {
                let null = matches!(l.eval(input, cx)?, In::Raw(Json::Null) | In::Val(Val::Null));
                In::Val(Val::Bool(null == matches!(op, Cmp::Eq)))
            }
            Self::Cmp(l, op, r) => {
                let (l, r) = (val(l)?, val(r)?);
                In::Val(Val::Bool(match op {
                    Cmp::Eq => l == r,
                    Cmp::Ne => l != r,
                    Cmp::Lt => l < r,
                    Cmp::Gt => l > r,
                    Cmp::Le => l <= r,
                    Cmp::Ge => l >= r,
                }))
            }
            Self::If(cond, then, otherwise) => {
                if cond.eval(input, cx)?.is_true()? {
                    then.eval(input, cx)?
                } else {
                    otherwise.eval(input, cx)?
                }
            }
            Self::Builtin(b) => In::Val(b.apply(input, cx)?),
        })
    }
}

/// A computed key: a string or an integer.
enum Key<'k> {
    Str(&'k str),
    Int(isize),
}

fn key_of<'k>(key: &'k In<'_>) -> Option<Key<'k>> {
    match key {
        In::Raw(Json::Str(s)) => Some(Key::Str(s)),
        In::Raw(Json::Int(i)) => Some(Key::Int(isize::try_from(*i).ok()?)),
        In::Val(Val::TStr(bytes)) => std::str::from_utf8(bytes).ok().map(Key::Str),
        In::Val(v @ Val::Num(_)) if v.is_int() => v.as_isize().map(Key::Int),
        _ => None,
    }
}

/// `items[i]`, counting from the end for a negative `i`; null past either end.
fn nth<T>(items: &[T], i: isize) -> Option<&T> {
    let i = if i < 0 { i.checked_add(isize::try_from(items.len()).ok()?)? } else { i };
    usize::try_from(i).ok().and_then(|i| items.get(i))
}

/// The start and end of `[from:to]` on `len` items.
fn bounds(len: usize, from: Option<isize>, to: Option<isize>) -> (usize, usize) {
    let clamp = |bound: Option<isize>, default: usize| match bound {
        None => default,
        Some(b) if b < 0 => len.saturating_sub(b.unsigned_abs()),
        Some(b) => b.unsigned_abs().min(len),
    };
    let (a, b) = (clamp(from, 0), clamp(to, len));
    (a, b.max(a))
}

impl Step {
    /// `value` indexed by this step; `input` is the input of the whole path (what a
    /// computed key such as `[.sku]` reads).
    fn apply<'a>(&self, value: In<'a>, input: &In<'a>, cx: &Cx<'_>) -> Option<In<'a>> {
        match self {
            Self::Key(key, bytes) => Some(match value {
                In::Raw(Json::Null) | In::Val(Val::Null) => In::Val(Val::Null),
                In::Raw(obj @ Json::Obj(_)) => obj.get(key).map_or(In::Val(Val::Null), In::Raw),
                In::Val(Val::Obj(map)) => {
                    In::Val(map.get(&Val::TStr(Box::new(bytes.clone()))).cloned().unwrap_or(Val::Null))
                }
                _ => return None,
            }),
            Self::Index(key) => {
                let key = key.eval(input, cx)?;
                let key = key_of(&key)?;
                Some(match (value, key) {
                    (In::Raw(Json::Null) | In::Val(Val::Null), _) => In::Val(Val::Null),
                    (In::Raw(obj @ Json::Obj(_)), Key::Str(k)) => obj.get(k).map_or(In::Val(Val::Null), In::Raw),
                    (In::Raw(Json::Arr(items)), Key::Int(i)) => nth(items, i).map_or(In::Val(Val::Null), In::Raw),
                    (In::Val(Val::Obj(map)), Key::Str(k)) => {
                        In::Val(map.get(&Val::from(k.to_string())).cloned().unwrap_or(Val::Null))
                    }
                    (In::Val(Val::Arr(items)), Key::Int(i)) => In::Val(nth(&items, i).cloned().unwrap_or(Val::Null)),
                    _ => return None,
                })
            }
            Self::Slice(from, to) => {
                let text = |s: &str| {
                    let (a, b) = bounds(s.chars().count(), *from, *to);
                    Val::from(s.chars().skip(a).take(b - a).collect::<String>())
                };
                Some(In::Val(match value {
                    In::Raw(Json::Null) | In::Val(Val::Null) => Val::Null,
                    In::Raw(Json::Str(s)) => text(s),
                    In::Val(Val::TStr(bytes)) => text(std::str::from_utf8(&bytes).ok()?),
                    In::Raw(Json::Arr(items)) => {
                        let (a, b) = bounds(items.len(), *from, *to);
                        items[a..b]
                            .iter()
                            .map(|j| j.to_val(cx.payload))
                            .collect::<Option<Vec<_>>>()?
                            .into_iter()
                            .collect()
                    }
                    In::Val(Val::Arr(items)) => {
                        let (a, b) = bounds(items.len(), *from, *to);
                        items[a..b].iter().cloned().collect()
                    }
                    _ => return None,
                }))
            }
        }
    }
}

impl Builtin {
    fn apply(self, input: &In<'_>, cx: &Cx<'_>) -> Option<Val> {
        // Integers and strings of the payload are read where they lie.
        if let (In::Raw(Json::Int(i)), Self::ToString) = (input, self) {
            return Some(Val::utf8_str(i.to_string()));
        }
        if let In::Raw(Json::Str(s)) = input {
            match self {
                Self::ToNumber => return number(s),
                Self::Downcase => return Some(Val::utf8_str(s.to_ascii_lowercase())),
                Self::Upcase => return Some(Val::utf8_str(s.to_ascii_uppercase())),
                Self::FromDate => return from_date(s),
                _ => {}
            }
        }
        let v = &input.clone().val(cx)?;
        let text = |v: &Val| match v {
            Val::TStr(bytes) => std::str::from_utf8(bytes).ok().map(str::to_string),
            _ => None,
        };
        Some(match self {
            Self::ToString => match v {
                Val::TStr(_) => v.clone(),
                Val::BStr(_) => return None,
                _ => v.clone().into_string(),
            },
            Self::ToNumber => match v {
                Val::Num(_) => v.clone(),
                Val::TStr(bytes) => return number(std::str::from_utf8(bytes).ok()?),
                _ => return None,
            },
            Self::Round | Self::Floor => {
                if !matches!(v, Val::Num(_)) {
                    return None;
                }
                if v.is_int() {
                    return Some(v.clone());
                }
                let x = v.as_f64()?;
                let r = if matches!(self, Self::Round) { x.round() } else { x.floor() };
                if !(r.is_finite() && isize::MIN as f64 <= r && r <= isize::MAX as f64) {
                    return None;
                }
                Val::from(r as isize)
            }
            Self::Downcase => Val::from(text(v)?.to_ascii_lowercase()),
            Self::Upcase => Val::from(text(v)?.to_ascii_uppercase()),
            Self::Length => match v {
                Val::Null => Val::from(0isize),
                Val::TStr(_) => Val::from(isize::try_from(text(v)?.chars().count()).ok()?),
                Val::Arr(items) => Val::from(isize::try_from(items.len()).ok()?),
                Val::Obj(map) => Val::from(isize::try_from(map.len()).ok()?),
                _ => return None,
            },
            Self::Add => match v {
                Val::Arr(items) => {
                    let mut sum = Val::Null;
                    for item in items.iter() {
                        sum = (sum + item.clone()).ok()?;
                    }
                    sum
                }
                _ => return None,
            },
            Self::Not => Val::Bool(!v.as_bool()),
            Self::FromDate => return from_date(&text(v)?),
            Self::ToDate => {
                if !v.is_int() {
                    return None;
                }
                Val::from(jiff::Timestamp::from_second(v.as_isize()? as i64).ok()?.to_string())
            }
        })
    }
}

/// `fromdate` on `s`: seconds since the epoch, as jaq gives them.
fn from_date(s: &str) -> Option<Val> {
    // A fraction of a second makes jaq answer a float: left to jaq.
    if s.contains('.') {
        return None;
    }
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(Val::from(isize::try_from(ts.as_second()).ok()?))
}

/// `tonumber` on `s`, as jaq's `fromjson` reads it: an integer, or the decimal text kept.
fn number(s: &str) -> Option<Val> {
    Some(Val::Num(match plain_number(s) {
        Some(true) => jaq_json::Num::from_str_radix(s, 10)?,
        Some(false) => jaq_json::Num::Dec(jaq_json::Rc::new(s.to_string())),
        None => return slow_number(s),
    }))
}

/// Whether `s` is an integer (`Some(true)`) or another number (`Some(false)`) in JSON's
/// grammar, strictly: no sign but `-`, no leading zero, a digit on each side of the point,
/// nothing around it. `None` otherwise.
fn plain_number(s: &str) -> Option<bool> {
    let b = s.as_bytes();
    let digits = |from: usize| b[from.min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let int = digits(i);
    if int == 0 || (int > 1 && b[i] == b'0') {
        return None;
    }
    i += int;
    let is_int = i == b.len();
    if b.get(i) == Some(&b'.') {
        let frac = digits(i + 1);
        if frac == 0 {
            return None;
        }
        i += 1 + frac;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let exp = digits(i);
        if exp == 0 {
            return None;
        }
        i += exp;
    }
    (i == b.len()).then_some(is_int)
}

/// `(s | tonumber) * k` when `s` is plainly a JSON number; `None` otherwise (and when
/// the product of integers overflows, which jaq makes a big integer).
fn scaled(s: &str, k: isize) -> Option<Val> {
    if plain_number(s)? {
        Some(Val::from(s.parse::<isize>().ok()?.checked_mul(k)?))
    } else {
        Some(Val::from(s.parse::<f64>().ok()? * k as f64))
    }
}

/// `tonumber` through jaq's own reader, for what is not plainly a JSON number.
fn slow_number(s: &str) -> Option<Val> {
    // jaq's reader recurses on brackets: a deeply nested text is no number anyway.
    crate::mapping::check_depth(s.as_bytes()).ok()?;
    let mut values = jaq_json::read::parse_many(s.as_bytes());
    match (values.next(), values.next()) {
        (Some(Ok(n @ Val::Num(_))), None) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonumber_reads_as_jaq_reads() {
        for s in [
            "0",
            "-0",
            "12",
            "-12",
            "19.99",
            "1.10",
            "1e5",
            "1E+5",
            "1.5e-3",
            "01",
            "1.",
            "-",
            ".5",
            "+1",
            " 1",
            "1 ",
            "abc",
            "",
            "9223372036854775808",
            "1e400",
            "2.50",
            "1 2",
        ] {
            let show = |v: Option<Val>| v.map(|v| v.to_string());
            assert_eq!(show(number(s)), show(slow_number(s)), "`{s}`");
            let times = |n: Val| (n * Val::from(100isize)).ok();
            if let Some(fast) = scaled(s, 100) {
                assert_eq!(Some(fast.to_string()), show(slow_number(s).and_then(times)), "`{s}` * 100");
            }
        }
    }
}
