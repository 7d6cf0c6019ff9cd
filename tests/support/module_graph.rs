//! The import graph of a crate's files, for the test that no file imports another in a
//! loop (`tests/module_graph.rs`): a loop is how shared code ends up in one module,
//! imported back by the modules it imports.
//!
//! The graph is read from the sources: every `crate::`, `super::` and `self::` path a
//! file names (in `use` items or inline) is an edge to the deepest file of that path. A
//! file declaring its child modules is no edge; an inline `mod tests` counts as part of
//! its file.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// A module, by its path from the crate root (`sync_flow/mod.rs` is `["sync_flow"]`).
pub type Module = Vec<String>;

/// Every `.rs` file under `src`, by module path (`sync_flow/mod.rs` is `sync_flow`).
pub fn modules(dir: &Path, prefix: &Module, out: &mut BTreeMap<Module, String>) {
    for entry in fs::read_dir(dir).expect("read the source directory") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("a UTF-8 file name").to_string();
        if path.is_dir() {
            let mut child = prefix.clone();
            child.push(name);
            modules(&path, &child, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut module = prefix.clone();
            if !matches!(name.as_str(), "mod" | "lib" | "main") {
                module.push(name);
            }
            out.insert(module, fs::read_to_string(&path).expect("read a source file"));
        }
    }
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or_default().trim().to_string()];
    };
    let Some(close) = tree.rfind('}').filter(|close| *close > open) else { return Vec::new() };
    let (prefix, inner) = (&tree[..open], &tree[open + 1..close]);
    let (mut parts, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts.iter().filter(|p| !p.trim().is_empty()).flat_map(|p| expand(p)).map(|p| format!("{prefix}{p}")).collect()
}

/// The file a path from module `at` lands in, if it is a path of this crate.
fn resolve(files: &BTreeMap<Module, String>, at: &Module, path: &str) -> Option<Module> {
    let mut segments = path.split("::").map(str::trim).filter(|s| !s.is_empty()).peekable();
    let mut base = match *segments.peek()? {
        "crate" => Vec::new(),
        "super" | "self" => at.clone(),
        _ => return None,
    };
    if segments.peek() == Some(&"crate") {
        segments.next();
    }
    while segments.peek() == Some(&"self") {
        segments.next();
    }
    while segments.peek() == Some(&"super") {
        segments.next();
        base.pop();
    }
    while !base.is_empty() && !files.contains_key(&base) {
        base.pop();
    }
    for segment in segments {
        base.push(segment.to_string());
        if !files.contains_key(&base) {
            base.pop();
            break;
        }
    }
    Some(base)
}

/// The `crate::`/`super::`/`self::` paths written in `code`, whole use trees expanded.
fn paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    // A use item starts a line (after `pub`, `pub(crate)`...), never inside a string.
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let item = trimmed.strip_prefix("pub").map_or(trimmed, |rest| {
            let rest = rest.trim_start();
            rest.strip_prefix('(').and_then(|r| r.split_once(')')).map_or(rest, |(_, r)| r).trim_start()
        });
        if let Some(tree) = item.strip_prefix("use ") {
            let start = offset + (line.len() - tree.len());
            if let Some(end) = code[start..].find(';') {
                found.extend(expand(&code[start..start + end]));
            }
        }
        offset += line.len();
    }
    let bytes = code.as_bytes();
    for keyword in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(keyword) {
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |n| at + n);
            // A path cut short by a brace or a glob is a use tree, read whole above.
            if !code[at..end].ends_with("::") {
                found.push(code[at..end].to_string());
            }
        }
    }
    found
}

/// Each file's edges to the other files it names.
pub fn graph(files: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    files
        .iter()
        .map(|(module, text)| {
            let code: String =
                text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
            // In an inline `mod tests`, `super` is the file itself.
            let (outer, inner) = code
                .split_once("\nmod tests {")
                .or_else(|| code.split_once("\n    mod tests {"))
                .unwrap_or((&code, ""));
            let mut inline = module.clone();
            inline.push("tests".into());
            let mut edges = BTreeSet::new();
            for (at, part) in [(module, outer), (&inline, inner)] {
                edges.extend(paths(part).iter().filter_map(|p| resolve(files, at, p)));
            }
            edges.remove(module);
            (module.clone(), edges)
        })
        .collect()
}

/// A loop through `from`, if there is one, as the files along it.
pub fn cycle_from(graph: &BTreeMap<Module, BTreeSet<Module>>, from: &Module) -> Option<Vec<Module>> {
    let mut stack = vec![(from.clone(), vec![from.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((at, trail)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == from {
                return Some(trail);
            }
            if seen.insert(next.clone()) {
                let mut longer = trail.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

/// Every loop of the crate whose sources are in `src`, each as `a -> b -> ...`.
pub fn loops(src: &Path) -> BTreeSet<String> {
    let mut files = BTreeMap::new();
    modules(src, &Vec::new(), &mut files);
    let graph = graph(&files);
    let name = |m: &Module| if m.is_empty() { "lib".to_string() } else { m.join("/") };
    graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|trail| trail.iter().map(name).collect::<Vec<_>>().join(" -> "))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_sees_a_loop_when_there_is_one() {
        let module = |name: &str| vec![name.to_string()];
        let files: BTreeMap<Module, String> = [
            (vec![], "mod a;\nmod b;\nmod c;\nmod d;".to_string()),
            (module("a"), "use crate::{b::{self, X}, c::Y as Z};".to_string()),
            (module("b"), "fn f() { super::a::g() } // crate::d".to_string()),
            (module("c"), "\nmod tests {\n    use super::*;\n    use crate::d;\n}".to_string()),
            (module("d"), String::new()),
        ]
        .into();
        let graph = graph(&files);
        assert_eq!(graph[&module("a")], [module("b"), module("c")].into());
        assert_eq!(graph[&module("b")], [module("a")].into());
        assert_eq!(graph[&module("c")], [module("d")].into());
        assert!(cycle_from(&graph, &module("a")).is_some());
        assert!(cycle_from(&graph, &module("c")).is_none());
    }
}
