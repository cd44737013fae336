//! `chassis runs [--status S] [--json]`.

use std::path::Path;

use chassis_core::{RunState, RunStatus};
use chassis_store::ListFilter;

use crate::commands::open_existing_journal;
use crate::exit::UsageError;
use crate::progress::usd;

/// Arguments of `chassis runs`.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Lists runs, newest first.
pub async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let only_queued = args.status.as_deref() == Some(QUEUED);
    let status = match &args.status {
        Some(_) if only_queued => Some(RunStatus::Running),
        Some(text) => Some(RunStatus::parse(text).ok_or_else(|| {
            UsageError(format!(
                "--status: unknown status `{text}` (use queued, running, waiting, paused, completed or failed)"
            ))
        })?),
        None => None,
    };
    let journal = open_existing_journal(db).await?;
    let runs = journal
        .list(&ListFilter {
            status,
            agent: args.agent.clone(),
            // A version or queued filter reads every run and applies the limit after filtering.
            limit: (args.agent_version.is_none() && !only_queued).then_some(args.limit),
            ..ListFilter::default()
        })
        .await?;
    let runs: Vec<_> = if only_queued {
        runs.into_iter()
            .filter(is_queued)
            .take(args.limit)
            .collect()
    } else {
        runs
    };
    // Usage and cost are folded from each listed run's journal (the list is bounded).
    let mut usage = Vec::with_capacity(runs.len());
    for r in &runs {
        let records = journal.load(&r.run_id).await?;
        usage.push(RunState::fold(records.iter().map(|rec| &rec.event)).ok());
    }
    let (runs, usage): (Vec<_>, Vec<_>) = match &args.agent_version {
        Some(wanted) => runs
            .into_iter()
            .zip(usage)
            .filter(|(_, s)| s.as_ref().is_some_and(|s| version_matches(s, wanted)))
            .take(args.limit)
            .unzip(),
        None => (runs, usage),
    };
    if args.by_version {
        print_by_version(&runs, &usage, args.json);
        return Ok(crate::exit::COMPLETED);
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
                    "queued": is_queued(r),
                    "events": r.last_seq,
                    "created_ms": r.created_ms,
                    "updated_ms": r.updated_ms,
                    "steps": state.as_ref().map(|s| s.steps),
                    "input_tokens": state.as_ref().map(|s| s.usage.input_tokens),
                    "output_tokens": state.as_ref().map(|s| s.usage.output_tokens),
                    "cost_usd": state.as_ref().map(|s| s.cost_usd),
                    "unpriced_calls": state.as_ref().map(|s| s.unpriced_calls),
                    "version": state.as_ref().map(|s| s.version.clone()),
                    "version_label": state.as_ref().and_then(|s| s.version_label.clone()),
                })
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
    for (r, state) in runs.iter().zip(&usage) {
        let (steps, tokens, cost) = match state {
            Some(s) => (
                s.steps.to_string(),
                (s.usage.input_tokens + s.usage.output_tokens).to_string(),
                if s.unpriced_calls > 0 && s.cost_usd == 0.0 {
                    "unknown".to_string()
                } else {
                    format!(
                        "{}{}",
                        usd(s.cost_usd),
                        if s.unpriced_calls > 0 { "+" } else { "" }
                    )
                },
            ),
            None => ("?".into(), "?".into(), "?".into()),
        };
        let version = state.as_ref().map_or("?", |s| version_of(s));
        outln!(
            "{:<32} {:<20} {:<12} {:<10} {:>5} {:>9} {:>10}  {}",
            r.run_id,
            r.agent,
            version,
            shown_status(r),
            steps,
            tokens,
            cost,
            ago(now - r.updated_ms)
        );
    }
    Ok(crate::exit::COMPLETED)
}

/// How a run that was submitted and not yet picked up by a worker is shown.
const QUEUED: &str = "queued";

/// Whether a run was submitted and never picked up: nothing was journaled after its
/// `run_started` (a worker that claims a run journals `run_resumed` before anything else).
fn is_queued(run: &chassis_store::RunSummary) -> bool {
    run.status == RunStatus::Running && run.last_seq == 1
}

/// The run's status as the table shows it: `queued` for a run no worker has picked up yet.
fn shown_status(run: &chassis_store::RunSummary) -> &'static str {
    if is_queued(run) {
        QUEUED
    } else {
        run.status.as_str()
    }
}

fn now_ms() -> i64 {
    chassis_engine::now_ms() as i64
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

/// How a run's version is shown: its fingerprint, or `-` for runs from before versions were
/// recorded.
fn version_of(state: &RunState) -> &str {
    if state.version.is_empty() {
        "-"
    } else {
        &state.version
    }
}

/// Whether `wanted` names the run's version: its label, or a prefix of its fingerprint.
fn version_matches(state: &RunState, wanted: &str) -> bool {
    state.version_label.as_deref() == Some(wanted)
        || (!state.version.is_empty() && state.version.starts_with(wanted))
}

/// `chassis runs --by-version`: one row per (agent, version), newest version first.
fn print_by_version(runs: &[chassis_store::RunSummary], states: &[Option<RunState>], json: bool) {
    #[derive(Default)]
    struct Group {
        agent: String,
        version: String,
        label: Option<String>,
        runs: usize,
        by_status: std::collections::BTreeMap<&'static str, usize>,
        steps: u64,
        cost_usd: f64,
        unpriced_calls: u32,
        last_ms: i64,
    }
    let mut groups: Vec<Group> = Vec::new();
    for (r, state) in runs.iter().zip(states) {
        let Some(s) = state else { continue };
        let index = match groups
            .iter()
            .position(|g| g.agent == r.agent && g.version == s.version)
        {
            Some(index) => index,
            None => {
                groups.push(Group {
                    agent: r.agent.clone(),
                    version: s.version.clone(),
                    label: s.version_label.clone(),
                    ..Group::default()
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[index];
        g.runs += 1;
        *g.by_status.entry(r.status.as_str()).or_default() += 1;
        g.steps += u64::from(s.steps);
        g.cost_usd += s.cost_usd;
        g.unpriced_calls += s.unpriced_calls;
        g.last_ms = g.last_ms.max(r.updated_ms);
    }
    if json {
        let rows: Vec<serde_json::Value> = groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "agent": g.agent,
                    "version": g.version,
                    "version_label": g.label,
                    "runs": g.runs,
                    "by_status": g.by_status,
                    "avg_steps": g.steps as f64 / g.runs as f64,
                    "avg_cost_usd": g.cost_usd / g.runs as f64,
                    "unpriced_calls": g.unpriced_calls,
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
    for g in &groups {
        let count = |status: &str| g.by_status.get(status).copied().unwrap_or(0);
        let avg_cost = g.cost_usd / g.runs as f64;
        let cost = if g.unpriced_calls > 0 && g.cost_usd == 0.0 {
            "unknown".to_string()
        } else {
            format!(
                "{}{}",
                usd(avg_cost),
                if g.unpriced_calls > 0 { "+" } else { "" }
            )
        };
        outln!(
            "{:<20} {:<12} {:<12} {:>5} {:>9} {:>6} {:>7} {:>6.1} {:>10}  {}",
            g.agent,
            if g.version.is_empty() {
                "-"
            } else {
                &g.version
            },
            g.label.as_deref().unwrap_or("-"),
            g.runs,
            count("completed"),
            count("failed"),
            count("waiting") + count("paused"),
            g.steps as f64 / g.runs as f64,
            cost,
            ago(now - g.last_ms)
        );
    }
}
