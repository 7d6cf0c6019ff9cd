//! Where the old and the new Mappings are read: a manifest file or a folder of them, as
//! on disk or as they were at a git ref (`git show <ref>:<path>`, what a pull request's
//! pipeline compares with its base branch).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use entrepot_api::resource::MappingSpec;

use crate::manifest::{Manifests, ObjectKey};

/// The Mappings of one side of the comparison.
pub type Mappings = BTreeMap<ObjectKey, MappingSpec>;

/// The Mappings declared in `path` (a manifest file, or a folder searched recursively).
pub fn from_path(path: &Path) -> Result<Mappings> {
    let manifests = if path.is_dir() {
        Manifests::load_dir(path)?
    } else {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut manifests = Manifests::default();
        manifests.add_text(path, &text)?;
        manifests
    };
    Ok(manifests.mappings)
}

/// The Mappings `path` declared at git ref `reference`: nothing when the path did not
/// exist there (the change adds it).
pub fn from_git(reference: &str, path: &Path) -> Result<Mappings> {
    let (dir, target) = if path.is_dir() {
        (path.to_path_buf(), None)
    } else {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
        (parent.to_path_buf(), Some(PathBuf::from(name)))
    };
    git(&dir, &["rev-parse", "--verify", "--quiet", &format!("{reference}^{{commit}}")])
        .with_context(|| format!("--base {reference}: not a commit of the repository at {}", dir.display()))?;
    // Paths relative to `dir`, as `ls-tree` lists them from there.
    let files: Vec<String> = match &target {
        Some(file) => vec![file.display().to_string()],
        None => git(&dir, &["ls-tree", "-r", "--name-only", reference, "."])?
            .lines()
            .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml"))
            .map(String::from)
            .collect(),
    };
    let mut manifests = Manifests::default();
    for file in files {
        let spec = format!("{reference}:./{file}");
        match git(&dir, &["show", &spec]) {
            Ok(text) => manifests.add_text(&PathBuf::from(format!("{reference}:{file}")), &text)?,
            // The file is new on this branch: nothing to compare with.
            Err(e) if target.is_some() && is_missing(&e) => return Ok(Mappings::new()),
            Err(e) => return Err(e),
        }
    }
    Ok(manifests.mappings)
}

fn is_missing(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("does not exist") || text.contains("exists on disk, but not in")
}

/// Runs git in `dir`; its standard output, or its error output as the error.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run git in {} (is git installed?)", dir.display()))?;
    if !output.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    String::from_utf8(output.stdout).with_context(|| format!("git {}: output is not UTF-8", args.join(" ")))
}
