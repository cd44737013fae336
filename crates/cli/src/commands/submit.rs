//! `chassis submit AGENT.toml --input TEXT`: journal a run for a worker to drive; and
//! `chassis resume RUN --detach`: wake a run for the workers instead of driving it here.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chassis_core::{Event, LimitName};
use chassis_engine::{Agent, Engine, RunOutcome, now_ms};

use crate::commands::input::Input;
use crate::commands::{open_existing_journal, open_journal, print_outcome};

/// Arguments of `chassis submit`.
#[derive(clap::Args)]
pub struct Args {
    /// The agent spec (agent.toml)
    agent: PathBuf,
    #[command(flatten)]
    input: crate::commands::input::InputArgs,
    /// Print one JSON object {"run_id"} instead of the bare id
    #[arg(long)]
    json: bool,
}

/// Loads the agent (nothing is journaled if that fails), journals the run, prints its id.
pub async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let input = args.input.read()?;
    submit(db, &args.agent, &input, args.json).await
}

/// Journals a new run of the agent at `spec` on `input` without driving it; a worker
/// (`chassis worker`) claims it. Prints the run id, or `{"run_id"}` with `json`.
pub async fn submit(db: &Path, spec: &Path, input: &Input, json: bool) -> anyhow::Result<u8> {
    let agent = Agent::load(spec).await?.with_vars(input.json_vars());
    let engine = Engine::new(open_journal(db).await?);
    let run_id = engine.submit(&agent, &input.text).await?;
    if json {
        outln!("{}", serde_json::json!({ "run_id": run_id }));
    } else {
        outln!("{run_id}");
    }
    Ok(crate::exit::COMPLETED)
}

/// Hands an existing run to the workers: journals `raises` (with who raised them), then makes
/// the run runnable now, and returns at once. A finished run just reports its outcome.
pub async fn wake(
    db: &Path,
    run_id: &str,
    raises: &[(LimitName, f64)],
    by: &str,
    json: bool,
) -> anyhow::Result<u8> {
    let engine = Engine::new(open_existing_journal(db).await?);
    let state = engine.load(run_id).await?;
    if state.status.is_terminal() {
        let outcome = RunOutcome {
            run_id: run_id.to_string(),
            status: state.status,
            output: state.output.clone(),
            reason: state.error.clone(),
        };
        return Ok(print_outcome(&outcome, json));
    }
    if !raises.is_empty() {
        let events: Vec<Event> = raises
            .iter()
            .map(|&(limit, value)| Event::LimitRaised {
                limit,
                value,
                by: by.to_string(),
            })
            .collect();
        engine
            .journal()
            .append(run_id, state.seq, &events)
            .await
            .with_context(|| format!("run {run_id}: cannot journal the raised limits"))?;
    }
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    engine.journal().wake(run_id, now).await?;
    if json {
        outln!(
            "{}",
            serde_json::json!({ "run_id": run_id, "status": state.status.as_str(), "woken": true })
        );
    } else {
        outln!("{run_id}");
        noteln!("run {run_id} ({}) handed to the workers", state.status);
    }
    Ok(crate::exit::COMPLETED)
}
