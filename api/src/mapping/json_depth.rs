//! A cheap bound on how deeply JSON nests, checked before any recursive parser (jaq's,
//! hifijson's) sees it: those recurse once per `[` or `{`, so about 50 KB of `[` would
//! overflow a thread's stack and abort the process.

/// How many levels of arrays and objects a JSON text may nest: serde_json's own limit,
/// far beyond any real order.
pub const MAX_DEPTH: usize = 128;

/// The JSON text nests deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the JSON nests arrays and objects deeper than {MAX_DEPTH} levels (at byte {offset}); it is refused \
     unread: flatten the record upstream"
)]
pub struct TooDeep {
    /// Where the level beyond the limit opens.
    pub offset: usize,
}

/// Checks that `bytes` nest at most [`MAX_DEPTH`] levels, counting brackets outside
/// strings. It does not validate the JSON: the parser that follows does.
pub fn check_depth(bytes: &[u8]) -> Result<(), TooDeep> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (offset, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(TooDeep { offset });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_up_to_the_limit_passes_and_one_more_level_is_refused() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(check_depth(nested(MAX_DEPTH).as_bytes()), Ok(()));
        assert_eq!(check_depth(nested(MAX_DEPTH + 1).as_bytes()), Err(TooDeep { offset: MAX_DEPTH }));
        assert!(check_depth("[".repeat(400_000).as_bytes()).is_err());
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!(r#"{{"note": "{}\" {}", "ok": [1]}}"#, "[".repeat(500), "{".repeat(500));
        assert_eq!(check_depth(text.as_bytes()), Ok(()));
        // Siblings do not add up.
        assert_eq!(check_depth("[[1],[2],[3]]".repeat(1_000).as_bytes()), Ok(()));
    }
}
