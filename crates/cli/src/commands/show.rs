//! `chassis show RUN [--json] [--follow]`.

use std::path::Path;
use std::time::Duration;

use chassis_core::{RunState, RunStatus, Wake};
use chassis_store::{Journal, Record};

use crate::commands::open_reading_journal;
use crate::progress::describe;

// Arguments of `chassis show`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The run: its id, a unique prefix of it, or `last` (see `chassis runs`)
    run: String,
    /// Print {"run_id", "status", "events": [{"seq", "kind", ...}]} as JSON
    #[arg(long)]
    json: bool,
    /// Keep printing events as they land until the run stops (ends, or waits for a human);
    /// with --json, one JSON object per event per line after the run's object
    #[arg(long, short = 'f')]
    follow: bool,
}

/// How often `--follow` looks for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Prints a run's status and every journaled event.
pub(crate) async fn run(db: &Path, mut args: Args) -> anyhow::Result<u8> {
    let journal = open_reading_journal(db).await?;
    args.run = crate::commands::resolve_run(journal.as_ref(), &args.run).await?;
    let records = journal.load(&args.run).await?;
    let state = RunState::fold(records.iter().map(|r| &r.event));
    if args.json {
        let events: Vec<serde_json::Value> = records.iter().map(|r| r.to_json()).collect();
        let status = state
            .as_ref()
            .map(|s| s.status().as_str())
            .unwrap_or("corrupt");
        let value = serde_json::json!({
            "run_id": args.run,
            "status": status,
            "agent": state.as_ref().ok().map(|s| s.agent.clone()),
            "version": state.as_ref().ok().map(|s| s.version.clone()),
            "tags": state.as_ref().ok().map(|s| s.tags.clone()),
            "version_label": state.as_ref().ok().and_then(|s| s.version_label.clone()),
            "output": state.as_ref().ok().and_then(|s| s.output.clone()),
            "steps": state.as_ref().ok().map(|s| s.steps()),
            "usage": state.as_ref().ok().map(|s| serde_json::json!({
                "input_tokens": s.usage().input_tokens,
                "output_tokens": s.usage().output_tokens,
                "cached_input_tokens": s.usage().cached_input_tokens,
                "cost_usd": s.cost_usd(),
                "unpriced_calls": s.unpriced_calls,
                "model_calls": s.model_calls(),
                "tool_calls": s.tool_calls(),
            })),
            "events": events,
        });
        outln!("{value}");
        if args.follow {
            return follow(journal.as_ref(), &args.run, &records, state.ok(), true).await;
        }
        return Ok(crate::exit::COMPLETED);
    }
    let style = crate::style::Style::stdout();
    match &state {
        Ok(s) => {
            outln!("run      {}", args.run);
            outln!("agent    {}", s.agent);
            if !s.tags.is_empty() {
                let tags: Vec<String> = s.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                outln!("tags     {}", tags.join(", "));
            }
            match (s.version.as_str(), &s.version_label) {
                ("", _) => {}
                (version, Some(label)) => outln!("version  {version} ({label})"),
                (version, None) => outln!("version  {version}"),
            }
            outln!("model    {}", s.model);
            outln!("status   {}", style.bold(s.status().as_str()));
            outln!(
                "usage    {} step(s), {} model call(s), {} tool call(s), {} input + {} output tokens, {}",
                s.steps(),
                s.model_calls(),
                s.tool_calls(),
                s.usage().input_tokens,
                s.usage().output_tokens,
                crate::progress::cost(s.cost_usd(), s.unpriced_calls)
            );
            outln!("input    {}", crate::progress::clip(&s.input, 100, style));
            if let Some(output) = &s.output {
                outln!("output   {}", crate::progress::clip(output, 100, style));
            }
            if let Some(reason) = s.waiting_reason.as_ref().or(s.error.as_ref()) {
                outln!("reason   {reason}");
            }
        }
        Err(e) => outln!("run {}: journal cannot be replayed: {e}", args.run),
    }
    outln!();
    let start = records.first().map(|r| r.at_ms).unwrap_or(0);
    for r in &records {
        print_line(&args.run, r, start);
    }
    if args.follow {
        return follow(journal.as_ref(), &args.run, &records, state.ok(), false).await;
    }
    Ok(crate::exit::COMPLETED)
}

/// One event as a line of `chassis show`.
fn print_line(run_id: &str, r: &Record, start: i64) {
    let style = crate::style::Style::stdout();
    let line = describe(run_id, &r.event, style)
        .map(|line| line.render(style))
        .unwrap_or_default();
    outln!(
        "{:>4}  +{:>7.3}s  {:<22} {}",
        r.seq,
        (r.at_ms - start) as f64 / 1000.0,
        r.event.kind(),
        line.trim_start()
    );
}

/// Whether nothing more lands until a human acts (or ever): the run ended, or it waits and
/// nothing has woken it.
fn stopped(state: &RunState) -> bool {
    state.status() != RunStatus::Running && state.wake() != Wake::Now
}

/// `--follow`: polls the journal (reading only) and prints each new event once, in order, until
/// the run stops; Ctrl-C ends the following, not the run. Exits with the run's status code.
async fn follow(
    journal: &dyn Journal,
    run_id: &str,
    shown: &[Record],
    state: Option<RunState>,
    json: bool,
) -> anyhow::Result<u8> {
    let Some(mut state) = state else {
        anyhow::bail!("run {run_id}: its journal cannot be replayed, so it cannot be followed");
    };
    let start = shown.first().map(|r| r.at_ms).unwrap_or(0);
    let mut after = shown.last().map(|r| r.seq).unwrap_or(0);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while !stopped(&state) {
        tokio::select! {
            _ = &mut interrupted => {
                noteln!("stopped following run {run_id}; it goes on (`chassis show {run_id} --follow` picks up)");
                return Ok(crate::exit::of_status(state.status()));
            }
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        for r in journal.load_after(run_id, after).await? {
            state.apply(&r.event).map_err(|e| {
                anyhow::anyhow!("run {run_id}: event {} cannot be replayed: {e}", r.seq)
            })?;
            after = r.seq;
            if json {
                outln!("{}", r.to_json());
            } else {
                print_line(run_id, &r, start);
            }
        }
    }
    if !json && !state.status().is_terminal() {
        noteln!(
            "run {run_id} is {}: see `chassis approvals`, or `chassis resume {run_id}`",
            state.status().as_str()
        );
    }
    Ok(crate::exit::of_status(state.status()))
}
