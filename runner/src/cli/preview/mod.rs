//! `entrepot preview`: what a Mapping change does to real payloads, before it merges.
//! The old and the new version of each Mapping that changed (read from two paths, or
//! from a git ref and the working tree) run over recorded payloads (samples, or records
//! exported with `entrepot deadletters export`, personal data masked); it prints a
//! per-field diff and the schema violations the change introduces, writes a markdown
//! summary for the pull request, and exits [`EXIT_BREAKS`] when a record that passed
//! fails with the change. See docs/preview.md.

mod compare;
mod report;
mod samples;
mod source;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};

use self::{
    compare::{Version, preview},
    report::MappingReport,
    source::Mappings,
};

/// The exit code when the change breaks records that passed before.
pub const EXIT_BREAKS: u8 = 2;

/// Options of `entrepot preview`.
#[derive(clap::Args)]
pub struct PreviewArgs {
    /// The new Mappings: a manifest file or a folder of manifests (as on this branch).
    #[arg(long, value_name = "PATH")]
    new: PathBuf,
    /// The old Mappings: a manifest file or a folder.
    #[arg(long, value_name = "PATH", required_unless_present = "base", conflicts_with = "base")]
    old: Option<PathBuf>,
    /// The old Mappings are --new's path as it was at this git ref (e.g. origin/main).
    #[arg(long, value_name = "REF")]
    base: Option<String>,
    /// Only this Mapping (its name, or namespace/name); default every Mapping that differs.
    #[arg(long)]
    mapping: Option<String>,
    /// Recorded payloads: JSON files (a payload or an array of them), JSON-lines files
    /// (what `entrepot deadletters export` writes), or folders of them. Files in a
    /// subfolder named after a Mapping are run through that Mapping only.
    #[arg(long, value_name = "PATH", required = true, num_args = 1..)]
    samples: Vec<PathBuf>,
    /// Also write the markdown summary to this file (for the pull request's comment).
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Print the markdown summary instead of the per-record report.
    #[arg(long)]
    markdown: bool,
}

/// Runs `entrepot preview`.
pub fn run(args: PreviewArgs) -> Result<ExitCode> {
    let new = source::from_path(&args.new)?;
    let old = match (&args.old, &args.base) {
        (Some(path), _) => source::from_path(path)?,
        (None, Some(reference)) => source::from_git(reference, &args.new)?,
        (None, None) => bail!("give the old Mappings: --old PATH, or --base REF (a git ref)"),
    };
    let chosen = changed(&old, &new, args.mapping.as_deref())?;
    if chosen.is_empty() {
        println!("No Mapping differs: nothing to preview.");
        return write_summary(&args, &[]).map(|()| ExitCode::SUCCESS);
    }
    let all = samples::load(&args.samples)?;
    let mut reports = Vec::new();
    for (key, change) in chosen {
        let name = &key.name;
        // Samples under a folder named after the Mapping are its own; the others are everyone's.
        let own: Vec<samples::Sample> =
            all.iter().filter(|s| belongs(&s.name, name) || !others(&s.name, &new, name)).cloned().collect();
        let records = match (old.get(&key), new.get(&key)) {
            (old_spec, Some(new_spec)) => {
                let old_version = old_spec.map(Version::new);
                preview(old_version.as_ref(), &Version::new(new_spec), &own)
            }
            (Some(_), None) => Vec::new(),
            (None, None) => unreachable!("a Mapping chosen is on one side"),
        };
        reports.push(MappingReport { key: key.to_string(), change, records });
    }
    if args.markdown {
        print!("{}", report::markdown(&reports));
    } else {
        print!("{}", report::text(&reports));
    }
    write_summary(&args, &reports)?;
    let breaks = reports.iter().any(|r| r.broken().next().is_some());
    Ok(if breaks { ExitCode::from(EXIT_BREAKS) } else { ExitCode::SUCCESS })
}

/// Whether sample `name` lies in a folder named `mapping`.
fn belongs(name: &str, mapping: &str) -> bool {
    name.split(['/', '\\']).rev().skip(1).any(|dir| dir == mapping)
}

/// Whether sample `name` lies in the folder of a Mapping other than `mapping`.
fn others(name: &str, mappings: &Mappings, mapping: &str) -> bool {
    mappings.keys().any(|k| k.name != mapping && belongs(name, &k.name))
}

/// The Mappings to preview, with how they changed: `only` (which must exist on a side),
/// or every one whose program, lookups or output differ.
fn changed(
    old: &Mappings,
    new: &Mappings,
    only: Option<&str>,
) -> Result<Vec<(crate::manifest::ObjectKey, &'static str)>> {
    let keys: std::collections::BTreeSet<_> = old.keys().chain(new.keys()).cloned().collect();
    let mut chosen = Vec::new();
    for key in keys {
        if only.is_some_and(|m| m != key.name && m != key.to_string()) {
            continue;
        }
        let change = match (old.get(&key), new.get(&key)) {
            (Some(a), Some(b)) if a.program == b.program && a.lookups == b.lookups && a.produces == b.produces => {
                if only.is_none() {
                    continue;
                }
                "unchanged"
            }
            (Some(_), Some(_)) => "changed",
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (None, None) => continue,
        };
        chosen.push((key, change));
    }
    if let Some(m) = only
        && chosen.is_empty()
    {
        bail!("--mapping {m}: no such Mapping in the old or the new manifests");
    }
    Ok(chosen)
}

fn write_summary(args: &PreviewArgs, reports: &[MappingReport]) -> Result<()> {
    if let Some(file) = &args.summary {
        let text = if reports.is_empty() {
            "## Mapping preview (`entrepot preview`)\n\nNo Mapping differs.\n".to_string()
        } else {
            report::markdown(reports)
        };
        std::fs::write(file, text).with_context(|| format!("cannot write the summary to {}", file.display()))?;
    }
    Ok(())
}
