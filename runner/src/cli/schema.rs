//! `entrepot schema`: the canonical model's JSON Schemas, printed or written to files.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};

use entrepot_api::canonical::{self, ENTITIES};

/// Arguments of `entrepot schema`.
#[derive(clap::Args)]
pub struct SchemaArgs {
    /// The entity whose schema to print, e.g. `SalesOrder`; without it, lists every
    /// entity and version.
    entity: Option<String>,
    /// The schema version.
    #[arg(long, default_value = "v1")]
    version: String,
    /// Write every schema to DIR as `<Entity>.<version>.json` (how the committed
    /// `schemas/canonical/` is regenerated).
    #[arg(long, value_name = "DIR", conflicts_with = "entity")]
    write: Option<PathBuf>,
}

/// Runs `entrepot schema`.
pub fn run(args: SchemaArgs) -> Result<ExitCode> {
    if let Some(dir) = args.write {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for e in ENTITIES {
            let path = dir.join(e.file_name());
            std::fs::write(&path, e.render()).with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.entity {
        Some(name) => match canonical::entity(&name, &args.version) {
            Some(e) => print!("{}", e.render()),
            None => bail!("{}", canonical::UnknownEntity { entity: name, version: args.version }),
        },
        None => {
            for e in ENTITIES {
                println!("{} {}", e.name, e.version);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
