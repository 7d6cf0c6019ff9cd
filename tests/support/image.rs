//! What the image tests read without a container engine: the Dockerfile's stages, the
//! `.dockerignore` patterns, the dynamic section of an ELF binary, and the chart's
//! `appVersion` (the tag of its default images).

use std::{collections::BTreeMap, path::Path};

use object::{
    Endianness,
    elf::{DT_NEEDED, FileHeader64, PT_INTERP},
    read::elf::{FileHeader, ProgramHeader},
};

/// A parsed Dockerfile: the `ARG`s before the first `FROM`, and the stages.
#[derive(Debug)]
pub struct Dockerfile {
    /// Global `ARG name=default`s (used in `FROM`).
    pub args: BTreeMap<String, String>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions after it.
#[derive(Debug)]
pub struct Stage {
    /// The `FROM` image, with global `ARG`s expanded.
    pub from: String,
    /// The name after `AS`.
    pub name: Option<String>,
    /// `(INSTRUCTION, rest of the line)`, the instruction in upper case, continuation
    /// lines joined.
    pub instructions: Vec<(String, String)>,
}

impl Dockerfile {
    /// Parses `text`: comments dropped, `\` continuations joined. Enough for our own
    /// Dockerfile, not for every one (no heredocs, no escape directive).
    pub fn parse(text: &str) -> Dockerfile {
        let mut logical = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
                continue;
            }
            match trimmed.strip_suffix('\\') {
                Some(part) => {
                    current.push_str(part.trim());
                    current.push(' ');
                }
                None => {
                    current.push_str(trimmed);
                    logical.push(std::mem::take(&mut current));
                }
            }
        }
        let mut file = Dockerfile { args: BTreeMap::new(), stages: Vec::new() };
        for line in logical {
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            let (keyword, rest) = (keyword.to_ascii_uppercase(), rest.trim().to_string());
            if keyword == "FROM" {
                let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--")).collect();
                let name = match words.as_slice() {
                    [_, r#as, name] if r#as.eq_ignore_ascii_case("as") => Some(name.to_string()),
                    _ => None,
                };
                file.stages.push(Stage { from: file.expand(words[0]), name, instructions: Vec::new() });
            } else if let Some(stage) = file.stages.last_mut() {
                stage.instructions.push((keyword, rest));
            } else if keyword == "ARG" {
                let (name, default) = rest.split_once('=').unwrap_or((&rest, ""));
                file.args.insert(name.to_string(), default.to_string());
            }
        }
        file
    }

    /// `${NAME}` and `$NAME` replaced by the global `ARG` defaults.
    fn expand(&self, word: &str) -> String {
        let mut out = word.to_string();
        for (name, value) in &self.args {
            out = out.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
        }
        out
    }

    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> &Stage {
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("the Dockerfile has no stage `{name}`"))
    }
}

impl Stage {
    /// The arguments of every `instruction` of the stage.
    pub fn all(&self, instruction: &str) -> Vec<&str> {
        self.instructions.iter().filter(|(k, _)| k == instruction).map(|(_, v)| v.as_str()).collect()
    }

    /// The arguments of the stage's last `instruction` (the one in force).
    pub fn last(&self, instruction: &str) -> Option<&str> {
        self.all(instruction).last().copied()
    }

    /// The `LABEL`s and `ENV`s of the stage: `key="value"` pairs (quotes removed).
    pub fn pairs(&self, instruction: &str) -> BTreeMap<String, String> {
        let mut pairs = BTreeMap::new();
        for line in self.all(instruction) {
            let mut rest = line.trim();
            while let Some((key, after)) = rest.split_once('=') {
                let (value, next) = match after.strip_prefix('"') {
                    Some(quoted) => {
                        let end = quoted.find('"').expect("a closing quote");
                        (&quoted[..end], &quoted[end + 1..])
                    }
                    None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
                };
                pairs.insert(key.trim().to_string(), value.to_string());
                rest = next.trim();
            }
        }
        pairs
    }
}

/// The chart's `appVersion`: the tag of its default images.
pub fn app_version() -> String {
    let chart = std::fs::read_to_string(crate::repo_root().join("charts/entrepot/Chart.yaml")).unwrap();
    chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("Chart.yaml has an appVersion")
}

/// The `.dockerignore` patterns that exclude `path` (relative to the context root, `/`
/// separated). Supports what ours uses: plain paths, `*` within a name and `**` for any
/// number of directories; a pattern excludes what it names and everything under it.
pub fn ignored_by<'a>(patterns: &'a [String], path: &str) -> Vec<&'a str> {
    let parts: Vec<&str> = path.split('/').collect();
    patterns
        .iter()
        .filter(|p| {
            let pattern: Vec<&str> = p.trim_start_matches('/').split('/').collect();
            (1..=parts.len()).any(|n| components_match(&pattern, &parts[..n]))
        })
        .map(String::as_str)
        .collect()
}

/// The patterns of a `.dockerignore` file (comments and blank lines dropped).
pub fn dockerignore_patterns(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

fn components_match(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        // `**`: no directory, or one more.
        (Some(&"**"), _) => {
            components_match(&pattern[1..], path) || (!path.is_empty() && components_match(pattern, &path[1..]))
        }
        (Some(p), Some(name)) => name_matches(p, name) && components_match(&pattern[1..], &path[1..]),
        _ => false,
    }
}

/// `*` matches any run of characters within one name.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            let Some(tail) = name.strip_prefix(prefix) else { return false };
            (0..=tail.len()).filter(|&i| tail.is_char_boundary(i)).any(|i| name_matches(rest, &tail[i..]))
        }
    }
}

/// What an ELF executable asks of the system that runs it.
#[derive(Debug)]
pub struct Linkage {
    /// `PT_INTERP`: the dynamic loader; `None` for a static executable.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`: the shared libraries, in order.
    pub needed: Vec<String>,
}

/// Reads the program interpreter and the `DT_NEEDED` entries of the 64-bit ELF at `path`.
pub fn linkage(path: &Path) -> Linkage {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    read_linkage(&data).unwrap_or_else(|e| panic!("{}: not a 64-bit ELF executable we can read: {e}", path.display()))
}

fn read_linkage(data: &[u8]) -> object::read::Result<Linkage> {
    let header = FileHeader64::<Endianness>::parse(data)?;
    let endian = header.endian()?;
    let mut interpreter = None;
    for segment in header.program_headers(endian, data)? {
        if segment.p_type(endian) == PT_INTERP {
            interpreter = segment.interpreter(endian, data)?.map(|b| String::from_utf8_lossy(b).into_owned());
        }
    }
    let dynamic = header.sections(endian, data)?.dynamic_table(endian, data)?;
    let mut needed = Vec::new();
    for entry in dynamic.iter().filter(|d| d.tag == DT_NEEDED) {
        needed.push(String::from_utf8_lossy(dynamic.string(entry)?).into_owned());
    }
    Ok(Linkage { interpreter, needed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dockerfile_parses_into_stages() {
        let file = Dockerfile::parse(
            "# syntax=docker/dockerfile:1\nARG BASE=debian:12\nFROM ${BASE} AS build\nRUN a \\\n    && b\n\
             FROM scratch\nLABEL a=\"x y\" b=z\nENTRYPOINT [\"/bin/x\"]\n",
        );
        assert_eq!(file.stages.len(), 2);
        assert_eq!((file.stages[0].from.as_str(), file.stages[0].name.as_deref()), ("debian:12", Some("build")));
        assert_eq!(file.stage("build").last("RUN"), Some("a && b"));
        let labels = file.stages[1].pairs("LABEL");
        assert_eq!((labels["a"].as_str(), labels["b"].as_str()), ("x y", "z"));
        assert_eq!(file.stages[1].last("ENTRYPOINT"), Some("[\"/bin/x\"]"));
    }

    #[test]
    fn dockerignore_patterns_match_paths_and_what_is_under_them() {
        let patterns = dockerignore_patterns("# c\ntarget\n**/*.redb\ndocs\n");
        assert_eq!(ignored_by(&patterns, "target/release/x"), ["target"]);
        assert_eq!(ignored_by(&patterns, "a/b/q.redb"), ["**/*.redb"]);
        assert_eq!(ignored_by(&patterns, "q.redb"), ["**/*.redb"]);
        assert!(ignored_by(&patterns, "examples/docs.yaml").is_empty());
        assert!(ignored_by(&patterns, "runner/src/target.rs").is_empty());
    }
}
