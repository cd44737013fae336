//! `chassis purge --older-than 30d [--status completed,failed,cancelled] [--agent A]
//! [--archive FILE]`: delete ended runs, optionally archived first as gzip-compressed JSONL.

use std::path::{Path, PathBuf};

use chassis_core::RunStatus;
use chassis_engine::{ArchiveError, PurgeFilter};

use crate::commands::open_existing_journal;
use crate::exit::UsageError;

// Arguments of `chassis purge`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Only runs whose last event is older than this, e.g. `30d`, `12h`
    #[arg(long, value_name = "DURATION")]
    older_than: String,
    /// Only runs in these ended statuses, comma-separated (default: completed,failed,cancelled);
    /// running, waiting and paused runs are never purged
    #[arg(long, value_name = "STATUSES", value_delimiter = ',')]
    status: Vec<String>,
    /// Only runs of this agent
    #[arg(long)]
    agent: Option<String>,
    /// Write the runs here first, one JSON object a line, gzip-compressed (`chassis import`
    /// restores them); nothing is deleted unless the whole archive was written
    #[arg(long, value_name = "FILE")]
    archive: Option<PathBuf>,
    /// Print one JSON object {"runs", "bytes", "archive"} instead of a line
    #[arg(long)]
    json: bool,
}

/// Selects the runs, archives them if asked, deletes them, reports what was freed.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let older = chassis_core::duration::parse(&args.older_than)
        .map_err(|e| UsageError(format!("--older-than: {e}")))?;
    let statuses = if args.status.is_empty() {
        vec![
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
    } else {
        args.status
            .iter()
            .map(|text| {
                RunStatus::parse(text.trim()).ok_or_else(|| {
                    UsageError(format!(
                        "--status: unknown status `{text}` (use completed, failed or cancelled)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let engine = crate::commands::engine(db, open_existing_journal(db).await?);
    let filter = PurgeFilter {
        older_than_ms: u64::try_from(older.as_millis()).unwrap_or(u64::MAX),
        statuses,
        agent: args.agent.clone(),
    };
    let runs = engine.purgeable(&filter).await?;
    if let Some(path) = &args.archive {
        engine
            .write_archive(&runs, path)
            .await
            .map_err(|e| match e {
                ArchiveError::Create { .. } => {
                    anyhow::Error::new(UsageError(format!("--archive {e}")))
                }
                ArchiveError::Write { .. } => {
                    anyhow::anyhow!("--archive {e}; nothing was deleted")
                }
                other => anyhow::Error::new(other),
            })?;
    }
    let ids: Vec<String> = runs.into_iter().map(|s| s.run_id).collect();
    let purged = engine.purge(&ids).await?;
    // Selected but not deleted: a notification of theirs is still to be delivered (or another
    // process reopened them meanwhile).
    let kept = (ids.len() as u64).saturating_sub(purged.runs);
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "runs": purged.runs,
                "kept": kept,
                "bytes": purged.bytes,
                "archive": args.archive.as_ref().map(|p| p.display().to_string()),
            })
        );
    } else {
        noteln!(
            "purged {} run(s), {} byte(s) of journal freed{}",
            purged.runs,
            purged.bytes,
            args.archive
                .as_ref()
                .map(|p| format!("; archived in {}", p.display()))
                .unwrap_or_default()
        );
        if kept > 0 {
            noteln!(
                "kept {kept} run(s) whose notifications are not yet delivered (see `chassis outbox`); a later purge takes them"
            );
        }
    }
    Ok(crate::exit::COMPLETED)
}
