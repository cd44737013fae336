//! `chassis import FILE`: restore the runs a `chassis purge --archive FILE` wrote.

use std::path::{Path, PathBuf};

use chassis_engine::ArchiveError;

use crate::commands::open_journal;
use crate::exit::UsageError;

// Arguments of `chassis import`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The archive: gzip-compressed JSONL, one run a line, as `chassis purge --archive` writes
    file: PathBuf,
    /// Print one JSON object {"runs", "skipped"} instead of a line
    #[arg(long)]
    json: bool,
}

/// Restores every run of the archive; a run whose id the journal has already is skipped.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    // Before the journal is opened, which would create an SQLite file for nothing.
    std::fs::metadata(&args.file)
        .map_err(|e| UsageError(format!("{}: cannot read: {e}", args.file.display())))?;
    let engine = crate::commands::engine(db, open_journal(db).await?);
    let done = engine
        .import_archive(&args.file)
        .await
        .map_err(|e| match e {
            ArchiveError::Engine(e) => anyhow::Error::new(e),
            // A file that cannot be read or is not an archive is a usage error.
            other => anyhow::Error::new(UsageError(other.to_string())),
        })?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({ "runs": done.runs, "skipped": done.skipped })
        );
    } else {
        noteln!(
            "imported {} run(s) from {}{}",
            done.runs,
            args.file.display(),
            if done.skipped > 0 {
                format!(
                    "; {} already in the journal, left as they are",
                    done.skipped
                )
            } else {
                String::new()
            }
        );
    }
    Ok(crate::exit::COMPLETED)
}
