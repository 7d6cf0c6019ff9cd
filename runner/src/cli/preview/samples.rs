//! The recorded payloads a preview runs: JSON files (one payload, or an array of them),
//! and JSON-lines files (one payload per line, or the `{"id", "payload"}` lines
//! `entrepot deadletters export` writes), from files or folders. Every payload is masked
//! (`cli/mask.rs`) as it is read, so no personal data reaches the diff or the summary.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cli::mask::mask;

/// One recorded payload, masked.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Where it came from: a file, `file[index]` or `file:line`, or an exported record's id.
    pub name: String,
    /// The payload.
    pub payload: Value,
}

/// The samples of `paths` (files, or folders read recursively), in path order.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Sample>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect(path, &mut files)?;
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            bail!("--samples {}: no such file or folder", path.display());
        }
    }
    files.sort();
    let mut samples = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).with_context(|| format!("cannot read the sample {}", file.display()))?;
        samples.extend(parse(&file.display().to_string(), &text, is_lines(&file))?);
    }
    if samples.is_empty() {
        bail!("no sample payloads in {}: give *.json or *.jsonl files", list(paths));
    }
    Ok(samples)
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn is_lines(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "jsonl" || e == "ndjson")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read the folder {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") || is_lines(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// The samples in one file's text, named after `name`.
pub fn parse(name: &str, text: &str, lines: bool) -> Result<Vec<Sample>> {
    if lines {
        let mut samples = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let value: Value =
                serde_json::from_str(line).with_context(|| format!("{name}:{}: not a JSON payload", i + 1))?;
            samples.push(exported(value).unwrap_or_else(|v| Sample { name: format!("{name}:{}", i + 1), payload: v }));
        }
        return Ok(samples.into_iter().map(masked).collect());
    }
    let value: Value = serde_json::from_str(text).with_context(|| format!("{name}: not JSON"))?;
    let samples = match value {
        Value::Array(items) => {
            items.into_iter().enumerate().map(|(i, payload)| Sample { name: format!("{name}[{i}]"), payload }).collect()
        }
        payload => vec![Sample { name: name.to_string(), payload }],
    };
    Ok(samples.into_iter().map(masked).collect())
}

/// A line `entrepot deadletters export` wrote (`{"id": .., "payload": ..}`), or the value
/// back when it is a payload of its own.
fn exported(value: Value) -> Result<Sample, Value> {
    match value {
        Value::Object(mut fields)
            if fields.len() <= 4 && fields.contains_key("payload") && fields.contains_key("id") =>
        {
            let id = fields.get("id").and_then(Value::as_str).map(String::from);
            match id {
                Some(id) => Ok(Sample { name: id, payload: fields.remove("payload").unwrap_or_default() }),
                None => Err(Value::Object(fields)),
            }
        }
        other => Err(other),
    }
}

fn masked(sample: Sample) -> Sample {
    Sample { payload: mask(&sample.payload), ..sample }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_payload_an_array_lines_and_exported_records_are_read_and_masked() {
        let one = parse("a.json", r#"{"id": 1, "email": "jane@example.org"}"#, false).unwrap();
        assert_eq!(one[0].name, "a.json");
        assert!(one[0].payload["email"].as_str().unwrap().ends_with("@example.com"), "masked");
        let many = parse("b.json", r#"[{"id": 1}, {"id": 2}]"#, false).unwrap();
        assert_eq!(many.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["b.json[0]", "b.json[1]"]);
        let lines = "{\"id\": \"deadletter-12\", \"flow\": \"orders\", \"payload\": {\"id\": 3}}\n\n{\"id\": 4}\n";
        let read = parse("c.jsonl", lines, true).unwrap();
        assert_eq!((read[0].name.as_str(), read[0].payload.clone()), ("deadletter-12", json!({"id": 3})));
        assert_eq!((read[1].name.as_str(), read[1].payload.clone()), ("c.jsonl:3", json!({"id": 4})));
        let err = parse("d.jsonl", "{\"id\": 1}\nnot json\n", true).unwrap_err();
        assert!(format!("{err:#}").contains("d.jsonl:2"), "names the file and line: {err:#}");
    }
}
