//! `chassis stats [--agent A] [--since T] [--json]`: how runs go, from the journal alone.
//! Runs of evaluation suites are left out unless `--include-eval`.

use std::path::Path;

use chassis_telemetry::stats::{ReportFilter, Stats};

use crate::commands::open_reading_journal;
use crate::exit::UsageError;

// Arguments of `chassis stats`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Only runs of this agent
    #[arg(long)]
    agent: Option<String>,
    /// Only runs started since T: a duration ago (`30m`, `24h`, `7d`) or a UTC date or time
    /// (`2025-03-01`, `2025-03-01T12:00:00Z`)
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Print {"since_ms", "stats": [{"agent", "runs", "completion_rate", ...}]} as JSON; the
    /// last entry (agent null) covers every agent
    #[arg(long)]
    json: bool,
    /// Count the runs of evaluation suites too (left out by default: they are tests, not
    /// traffic)
    #[arg(long)]
    include_eval: bool,
}

/// Completion rate, error rate, escalation frequency, average cost and time to completion,
/// per agent and overall.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let now = chassis_engine::now_ms();
    let since_ms = args.since.as_deref().map(|t| since(t, now)).transpose()?;
    let journal = open_reading_journal(db).await?;
    let report = chassis_telemetry::stats::report(
        journal.as_ref(),
        &ReportFilter {
            agent: args.agent.clone(),
            since_ms: since_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            include_eval: args.include_eval,
            ..ReportFilter::default()
        },
    )
    .await?;
    let stats = report.by_agent;
    if args.json {
        let value = serde_json::json!({ "since_ms": since_ms, "stats": stats });
        outln!("{value}");
        return Ok(crate::exit::COMPLETED);
    }
    if report.total.runs == 0 {
        outln!("no runs");
        return Ok(crate::exit::COMPLETED);
    }
    outln!(
        "{:<24} {:>5} {:>6} {:>6} {:>5} {:>10} {:>7} {:>9} {:>10} {:>9}",
        "AGENT",
        "RUNS",
        "DONE",
        "FAILED",
        "OPEN",
        "COMPLETION",
        "ERRORS",
        "ESCALATED",
        "AVG COST",
        "AVG TIME"
    );
    for s in &stats {
        outln!("{}", row(s));
    }
    Ok(crate::exit::COMPLETED)
}

fn row(s: &Stats) -> String {
    let count = |status: &str| s.by_status.get(status).copied().unwrap_or(0);
    let open = s.runs - count("completed") - count("failed");
    let percent = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
    let cost = s.avg_cost_usd.map_or("-".to_string(), |c| {
        let lower_bound = if s.unpriced_calls > 0 { "+" } else { "" };
        format!("{}{lower_bound}", crate::progress::usd(c))
    });
    let time = s
        .avg_time_to_completion_ms
        .map_or("-".to_string(), |ms| format!("{:.2}s", ms / 1000.0));
    format!(
        "{:<24} {:>5} {:>6} {:>6} {:>5} {:>10} {:>7} {:>9} {:>10} {:>9}",
        s.agent.as_deref().unwrap_or("(all)"),
        s.runs,
        count("completed"),
        count("failed"),
        open,
        percent(s.completion_rate),
        percent(s.error_rate),
        percent(s.escalation_rate),
        cost,
        time
    )
}

/// `--since`: a duration before `now`, or a date; in ms since the epoch.
pub(crate) fn since(text: &str, now: u64) -> Result<u64, UsageError> {
    if let Ok(ago) = chassis_core::duration::parse(text) {
        return Ok(now.saturating_sub(ago.as_millis() as u64));
    }
    chassis_telemetry::time::parse_rfc3339(text).ok_or_else(|| {
        UsageError(format!(
            "--since {text}: neither a duration (30m, 24h, 7d) nor a date (2025-03-01, 2025-03-01T12:00:00Z)"
        ))
    })
}
