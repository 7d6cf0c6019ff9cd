//! What a Mapping may call. A Mapping runs inside the runner (and the operator's test
//! runs), next to the Connectors' secrets, so it gets pure functions of its input only:
//! jaq's natives pass through an allowlist, and the standard definitions built on a
//! refused one are left out. `docs/mappings.md` lists what is refused and why.

use jaq_core::{load::parse::Def, native::Fun};

use super::Data;

/// The natives a Mapping may call, by name and arity. One that a jaq upgrade adds is
/// refused until it is reviewed and listed here (a test names it).
const ALLOWED_NATIVES: &[&str] = &[
    "error_empty/0",
    "path/1",
    "path_value/1",
    "keys_unsorted/0",
    "key_values/0",
    "first/1",
    "last/1",
    "limit/2",
    "skip/2",
    "floor/0",
    "round/0",
    "ceil/0",
    "utf8bytelength/0",
    "explode/0",
    "implode/0",
    "ascii_downcase/0",
    "ascii_upcase/0",
    "reverse/0",
    "sort/0",
    "sort_by/1",
    "group_by/1",
    "min_by_or_empty/1",
    "max_by_or_empty/1",
    "startswith/1",
    "endswith/1",
    "ltrimstr/1",
    "rtrimstr/1",
    "trim/0",
    "ltrim/0",
    "rtrim/0",
    "escape_sh/0",
    "now/0",
    "escape_html/0",
    "unescape_html/0",
    "encode_uri/0",
    "decode_uri/0",
    "encode_base64/0",
    "decode_base64/0",
    "acos/0",
    "acosh/0",
    "asin/0",
    "asinh/0",
    "atan/0",
    "atanh/0",
    "cbrt/0",
    "cos/0",
    "cosh/0",
    "erf/0",
    "erfc/0",
    "exp/0",
    "exp10/0",
    "exp2/0",
    "expm1/0",
    "fabs/0",
    "frexp/0",
    "ilogb/0",
    "j0/0",
    "j1/0",
    "lgamma/0",
    "log/0",
    "log10/0",
    "log1p/0",
    "log2/0",
    "modf/0",
    "nearbyint/0",
    "rint/0",
    "sin/0",
    "sinh/0",
    "sqrt/0",
    "tan/0",
    "tanh/0",
    "tgamma/0",
    "trunc/0",
    "y0/0",
    "y1/0",
    "atan2/2",
    "copysign/2",
    "fdim/2",
    "fmax/2",
    "fmin/2",
    "fmod/2",
    "hypot/2",
    "jn/2",
    "ldexp/2",
    "nextafter/2",
    "pow/2",
    "remainder/2",
    "scalbln/2",
    "yn/2",
    "fma/3",
    "matches/2",
    "split_matches/2",
    "split_/2",
    "fromdateiso8601/0",
    "todateiso8601/0",
    "strftime/1",
    "strflocaltime/1",
    "gmtime/0",
    "localtime/0",
    "strptime/1",
    "mktime/0",
    "tojson/0",
    "tobytes/0",
    "length/0",
    "contains/1",
    "has/1",
    "indices/1",
    "bsearch/1",
    // Replaced by budgeted or depth-checked versions (`budget.rs`), never called as jaq has them.
    "range/3",
    "fromjson/0",
];

/// The functions and variables a Mapping may not use, with why: the compile error says it.
pub(super) const REFUSED: &[(&str, &str)] = &[
    ("env", "it reads the runner's environment, where the Connectors' secrets are"),
    ("$ENV", "it reads the runner's environment, where the Connectors' secrets are"),
    ("input", "a Mapping maps one record; other inputs are not its to read"),
    ("inputs", "a Mapping maps one record; other inputs are not its to read"),
    ("input_filename", "a Mapping maps one record; where it came from is not its to read"),
    ("input_line_number", "a Mapping maps one record; where it came from is not its to read"),
    ("debug", "it writes records, with their personal data, to the runner's log"),
    ("stderr", "it writes records, with their personal data, to the runner's log"),
    ("halt", "it would stop the runner (or the operator) that runs the Mapping"),
    ("halt_error", "it would stop the runner (or the operator) that runs the Mapping"),
    ("get_search_list", "a Mapping loads no modules"),
    ("$__prog_args", "a Mapping takes no program arguments"),
];

/// Natives refused because a standard definition reads them: those definitions go too.
#[cfg(test)]
const REFUSED_NATIVES: &[&str] = &["env/0", "halt/1", "debug_empty/0", "stderr_empty/0"];

fn key(name: &str, arity: usize) -> String {
    format!("{name}/{arity}")
}

/// jaq's natives a Mapping may call; whether a native is allowed is decided by name
/// and arity.
pub(super) fn natives() -> impl Iterator<Item = Fun<Data>> {
    jaq_core::funs::<Data>()
        .chain(jaq_std::funs::<Data>())
        .chain(jaq_json::funs::<Data>())
        .filter(|(name, args, _)| ALLOWED_NATIVES.contains(&key(name, args.len()).as_str()))
}

/// The standard definitions (jaq's core, std and json ones) minus those built on a
/// refused native or named in [`REFUSED`].
pub(super) fn standard_defs() -> impl Iterator<Item = Def<&'static str>> {
    jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .filter(|def| !REFUSED.iter().any(|(name, _)| *name == def.name))
}

/// Why `name` is refused, if it is.
pub(super) fn refusal(name: &str) -> Option<&'static str> {
    REFUSED.iter().find(|(refused, _)| *refused == name).map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_native_jaq_offers_is_reviewed() {
        let unreviewed: Vec<String> = jaq_core::funs::<Data>()
            .chain(jaq_std::funs::<Data>())
            .chain(jaq_json::funs::<Data>())
            .map(|(name, args, _)| key(name, args.len()))
            .filter(|k| !ALLOWED_NATIVES.contains(&k.as_str()) && !REFUSED_NATIVES.contains(&k.as_str()))
            .collect();
        assert!(unreviewed.is_empty(), "natives neither allowed nor refused: {unreviewed:?}");
    }
}
