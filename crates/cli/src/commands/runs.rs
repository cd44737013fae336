//! `chassis runs [--status S] [--json]`.

use std::path::Path;

use chassis_core::RunStatus;
use chassis_store::ListFilter;

use crate::commands::open_existing_journal;
use crate::exit::UsageError;

/// Arguments of `chassis runs`.
#[derive(clap::Args)]
pub struct Args {
    /// Only runs in this status: running, waiting, paused, completed, failed
    #[arg(long)]
    status: Option<String>,
    /// Only runs of this agent
    #[arg(long)]
    agent: Option<String>,
    /// At most this many runs
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print a JSON array instead of a table
    #[arg(long)]
    json: bool,
}

/// Lists runs, newest first.
pub async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let status = match &args.status {
        Some(text) => Some(RunStatus::parse(text).ok_or_else(|| {
            UsageError(format!(
                "--status: unknown status `{text}` (use running, waiting, paused, completed or failed)"
            ))
        })?),
        None => None,
    };
    let journal = open_existing_journal(db)?;
    let runs = journal
        .list(&ListFilter {
            status,
            agent: args.agent.clone(),
            limit: Some(args.limit),
        })
        .await?;
    if args.json {
        let rows: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "run_id": r.run_id,
                    "agent": r.agent,
                    "status": r.status.as_str(),
                    "events": r.last_seq,
                    "created_ms": r.created_ms,
                    "updated_ms": r.updated_ms,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(crate::exit::COMPLETED);
    }
    if runs.is_empty() {
        println!("no runs");
        return Ok(crate::exit::COMPLETED);
    }
    println!(
        "{:<32} {:<20} {:<10} {:>6}  UPDATED",
        "RUN", "AGENT", "STATUS", "EVENTS"
    );
    let now = now_ms();
    for r in &runs {
        println!(
            "{:<32} {:<20} {:<10} {:>6}  {}",
            r.run_id,
            r.agent,
            r.status.as_str(),
            r.last_seq,
            ago(now - r.updated_ms)
        );
    }
    Ok(crate::exit::COMPLETED)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// "3s ago", "5m ago", "2h ago", "4d ago".
pub fn ago(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}
