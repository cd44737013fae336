//! `chassis runs [--status S] [--json]`.

use std::path::Path;

use chassis_core::RunStatus;
use chassis_engine::{MAX_PAGE, RunQuery, RunView};
use chassis_telemetry::stats::{Figures, ReportFilter};

use crate::commands::open_reading_journal;
use crate::exit::UsageError;
use crate::progress::usd;

// Arguments of `chassis runs`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Only runs in this status: queued (submitted, not yet picked up), running, waiting,
    /// paused, completed, failed
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
    /// Only runs of this agent version: a fingerprint (or its prefix) or a `[agent] version` label
    #[arg(long, value_name = "VERSION")]
    agent_version: Option<String>,
    /// One row per agent version of the listed runs: counts by status, average steps and cost
    #[arg(long)]
    by_version: bool,
    /// Only runs forked from this run (`chassis fork`): its id or a unique prefix
    #[arg(long, value_name = "RUN")]
    forked_from: Option<String>,
}

/// Lists runs, newest first.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let queued = args.status.as_deref() == Some(QUEUED);
    let status = match &args.status {
        Some(_) if queued => Some(RunStatus::Running),
        Some(text) => Some(RunStatus::parse(text).ok_or_else(|| {
            UsageError(format!(
                "--status: unknown status `{text}` (use queued, running, waiting, paused, completed, failed or cancelled)"
            ))
        })?),
        None => None,
    };
    let journal = open_reading_journal(db).await?;
    // The original may have been purged since: then its id is taken as written.
    let forked_from = match &args.forked_from {
        Some(text) => Some(
            crate::commands::resolve_run(journal.as_ref(), text)
                .await
                .unwrap_or_else(|_| text.clone()),
        ),
        None => None,
    };
    let engine = crate::commands::engine(db, journal);
    if args.by_version {
        // The same figures as `GET /v1/stats`: every matching run, not a page of them.
        let report = chassis_telemetry::stats::report(
            engine.journal().as_ref(),
            &ReportFilter {
                agent: args.agent.clone(),
                version: args.agent_version.clone(),
                status,
                include_eval: true,
                ..ReportFilter::default()
            },
        )
        .await?;
        print_by_version(&report.by_version, args.json);
        return Ok(crate::exit::COMPLETED);
    }
    // The same rows as `GET /v1/runs`, page after page up to --limit.
    let mut query = RunQuery {
        status,
        queued,
        agent: args.agent.clone(),
        version: args.agent_version.clone(),
        limit: args.limit.min(MAX_PAGE),
        forked_from,
        ..RunQuery::default()
    };
    let mut runs: Vec<RunView> = Vec::new();
    while runs.len() < args.limit {
        query.limit = (args.limit - runs.len()).min(MAX_PAGE);
        let page = engine.list_runs(&query).await?;
        runs.extend(page.runs);
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    if args.json {
        let rows: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                let mut row = serde_json::json!({
                    "run_id": r.run_id,
                    "agent": r.agent,
                    "status": r.status.as_str(),
                    "queued": r.queued,
                    "events": r.events,
                    "created_ms": r.created_ms,
                    "updated_ms": r.updated_ms,
                    "steps": r.usage.steps,
                    "input_tokens": r.usage.input_tokens,
                    "output_tokens": r.usage.output_tokens,
                    "cost_usd": r.usage.cost_usd,
                    "unpriced_calls": r.usage.unpriced_calls,
                    "version": r.version,
                    "version_label": r.version_label,
                    "tags": r.tags,
                });
                if let Some(why) = &r.unreadable {
                    row["unreadable"] = why.as_str().into();
                }
                row
            })
            .collect();
        outln!("{}", serde_json::Value::Array(rows));
        return Ok(crate::exit::COMPLETED);
    }
    if runs.is_empty() {
        outln!("no runs");
        return Ok(crate::exit::COMPLETED);
    }
    outln!(
        "{:<32} {:<20} {:<12} {:<10} {:>5} {:>9} {:>10}  UPDATED",
        "RUN",
        "AGENT",
        "VERSION",
        "STATUS",
        "STEPS",
        "TOKENS",
        "COST"
    );
    let now = now_ms();
    for r in &runs {
        let u = &r.usage;
        outln!(
            "{:<32} {:<20} {:<12} {:<10} {:>5} {:>9} {:>10}  {}",
            r.run_id,
            r.agent,
            version_of(&r.version),
            if r.unreadable.is_some() {
                UNREADABLE
            } else if r.queued {
                QUEUED
            } else {
                r.status.as_str()
            },
            u.steps,
            u.input_tokens.saturating_add(u.output_tokens),
            cost(u.cost_usd, u64::from(u.unpriced_calls)),
            ago(now - r.updated_ms)
        );
    }
    for r in runs.iter().filter(|r| r.unreadable.is_some()) {
        errln!(
            "run {} is unreadable: {}",
            r.run_id,
            r.unreadable.as_deref().unwrap_or_default()
        );
    }
    Ok(crate::exit::COMPLETED)
}

/// How a run whose journal cannot be read is shown.
const UNREADABLE: &str = "unreadable";

/// How a run that was submitted and not yet picked up by a worker is shown.
const QUEUED: &str = "queued";

/// Dollars, `+` when some calls had no known price, `unknown` when none had one.
fn cost(usd_spent: f64, unpriced_calls: u64) -> String {
    if unpriced_calls > 0 && usd_spent == 0.0 {
        "unknown".to_string()
    } else {
        format!(
            "{}{}",
            usd(usd_spent),
            if unpriced_calls > 0 { "+" } else { "" }
        )
    }
}

fn now_ms() -> i64 {
    chassis_engine::now_ms() as i64
}

/// "3s ago", "5m ago", "2h ago", "4d ago".
pub(crate) fn ago(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// How a run's version is shown: its fingerprint, or `-` for runs from before versions were
/// recorded.
fn version_of(version: &str) -> &str {
    if version.is_empty() { "-" } else { version }
}

/// `chassis runs --by-version`: one row per (agent, version).
fn print_by_version(groups: &[Figures], json: bool) {
    if json {
        let rows: Vec<serde_json::Value> = groups
            .iter()
            .map(|g| {
                let running = g.runs - g.completed - g.failed - g.cancelled - g.stopped;
                serde_json::json!({
                    "agent": g.agent,
                    "version": g.version,
                    "version_label": g.version_label,
                    "runs": g.runs,
                    "by_status": {
                        "completed": g.completed,
                        "failed": g.failed,
                        "cancelled": g.cancelled,
                        "waiting": g.stopped,
                        "running": running,
                    },
                    "avg_steps": g.avg_steps(),
                    "avg_cost_usd": g.avg_cost_usd(),
                    "unpriced_calls": g.unpriced_calls,
                    "completion_rate": g.completion_rate(),
                    "last_ms": g.last_ms,
                })
            })
            .collect();
        outln!("{}", serde_json::Value::Array(rows));
        return;
    }
    if groups.is_empty() {
        outln!("no runs");
        return;
    }
    outln!(
        "{:<20} {:<12} {:<12} {:>5} {:>9} {:>6} {:>7} {:>6} {:>10}  LAST",
        "AGENT",
        "VERSION",
        "LABEL",
        "RUNS",
        "COMPLETED",
        "FAILED",
        "WAITING",
        "STEPS",
        "AVG COST"
    );
    let now = now_ms();
    for g in groups {
        outln!(
            "{:<20} {:<12} {:<12} {:>5} {:>9} {:>6} {:>7} {:>6.1} {:>10}  {}",
            g.agent.as_deref().unwrap_or("-"),
            version_of(g.version.as_deref().unwrap_or_default()),
            g.version_label.as_deref().unwrap_or("-"),
            g.runs,
            g.completed,
            g.failed,
            g.stopped,
            g.avg_steps(),
            cost(g.avg_cost_usd(), g.unpriced_calls),
            ago(now - g.last_ms)
        );
    }
}
