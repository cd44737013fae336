//! `chassis runs [--status S] [--json]`.

use std::path::Path;

use chassis_core::{RunState, RunStatus};
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
    // Usage and cost are folded from each listed run's journal (the list is bounded).
    let mut usage = Vec::with_capacity(runs.len());
    for r in &runs {
        let records = journal.load(&r.run_id).await?;
        usage.push(RunState::fold(records.iter().map(|rec| &rec.event)).ok());
    }
    if args.json {
        let rows: Vec<serde_json::Value> = runs
            .iter()
            .zip(&usage)
            .map(|(r, state)| {
                serde_json::json!({
                    "run_id": r.run_id,
                    "agent": r.agent,
                    "status": r.status.as_str(),
                    "events": r.last_seq,
                    "created_ms": r.created_ms,
                    "updated_ms": r.updated_ms,
                    "steps": state.as_ref().map(|s| s.steps),
                    "input_tokens": state.as_ref().map(|s| s.usage.input_tokens),
                    "output_tokens": state.as_ref().map(|s| s.usage.output_tokens),
                    "cost_usd": state.as_ref().map(|s| s.cost_usd),
                    "unpriced_calls": state.as_ref().map(|s| s.unpriced_calls),
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
        "{:<32} {:<20} {:<10} {:>5} {:>9} {:>10}  UPDATED",
        "RUN", "AGENT", "STATUS", "STEPS", "TOKENS", "COST"
    );
    let now = now_ms();
    for (r, state) in runs.iter().zip(&usage) {
        let (steps, tokens, cost) = match state {
            Some(s) => (
                s.steps.to_string(),
                (s.usage.input_tokens + s.usage.output_tokens).to_string(),
                if s.unpriced_calls > 0 && s.cost_usd == 0.0 {
                    "unknown".to_string()
                } else {
                    format!(
                        "${:.4}{}",
                        s.cost_usd,
                        if s.unpriced_calls > 0 { "+" } else { "" }
                    )
                },
            ),
            None => ("?".into(), "?".into(), "?".into()),
        };
        println!(
            "{:<32} {:<20} {:<10} {:>5} {:>9} {:>10}  {}",
            r.run_id,
            r.agent,
            r.status.as_str(),
            steps,
            tokens,
            cost,
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
