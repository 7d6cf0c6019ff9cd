//! jq values out: as JSON text, byte for byte what jaq's `Display` writes (compact), but
//! straight into a buffer; and as `serde_json` values without a round trip through text.

use std::io::Write as _;

use jaq_json::{Num, Val};
use serde_json::Value;

/// Appends `value` as compact JSON, as jaq writes it when its text is valid UTF-8. Text
/// that is not is written as it is, which makes `out` invalid UTF-8 too (what follows a
/// string is `"`, which completes no sequence): the caller then asks jaq's own writer.
pub(super) fn write(value: &Val, out: &mut Vec<u8>) {
    match value {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        Val::Num(Num::Int(i)) => write!(out, "{i}").expect("a Vec takes every write"),
        Val::TStr(bytes) => write_str(bytes, out),
        Val::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Val::Obj(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(k, out);
                out.push(b':');
                write(v, out);
            }
            out.push(b'}');
        }
        // Other numbers and byte strings: jaq's own writer.
        other => write!(out, "{other}").expect("a Vec takes every write"),
    }
}

/// A UTF-8 string with jaq's escapes: `\b \f \t \n \r \\ \"`, other control characters
/// and DEL as `\u00xx`.
fn write_str(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let escape: &[u8] = match c {
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            0x00..=0x1F | 0x7F => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            write!(out, "\\u{c:04x}").expect("a Vec takes every write");
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `value` as a `serde_json` value; `None` for what only its JSON text can say (floats,
/// decimals and big integers as serde reads them back, non-string keys, byte strings).
pub(super) fn to_value(value: &Val) -> Option<Value> {
    Some(match value {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(Num::Int(i)) => Value::from(i64::try_from(*i).ok()?),
        Val::TStr(bytes) => Value::String(std::str::from_utf8(bytes).ok()?.to_string()),
        Val::Arr(items) => Value::Array(items.iter().map(to_value).collect::<Option<_>>()?),
        Val::Obj(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match k {
                    Val::TStr(k) => Some((std::str::from_utf8(k).ok()?.to_string(), to_value(v)?)),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        Val::Num(_) | Val::BStr(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_jaq_writes() {
        let text = r#"{"a":[1,-2,3.5,1.10,1e400,12345678901234567890123,null,true,false],"s":"q\"\\\n\t\r\u0008\u000c\u0001\u007f é ☃","k":{}}"#;
        let value = super::super::parse_json(text.as_bytes()).unwrap();
        let mut out = Vec::new();
        write(&value, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), value.to_string());
        let invalid = jaq_json::Val::utf8_str(b"a\xc3\"".to_vec());
        assert_eq!(super::super::to_json(&invalid), invalid.to_string(), "jaq writes what is not UTF-8");
        assert!(to_value(&value).is_none(), "decimals are read back from text");
        let plain = super::super::parse_json(br#"{"a":[1,"x",null,{"b":false}]}"#).unwrap();
        assert_eq!(to_value(&plain), Some(serde_json::json!({"a": [1, "x", null, {"b": false}]})));
    }
}
