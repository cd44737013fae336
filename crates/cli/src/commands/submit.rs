//! `chassis submit AGENT.toml --input TEXT`: journal a run for a worker to drive; and
//! `chassis resume RUN --detach`: wake a run for the workers instead of driving it here.

use std::path::{Path, PathBuf};

use chassis_core::LimitName;
use chassis_engine::{Agent, RunOutcome, StartOptions};

use crate::commands::input::Input;
use crate::commands::{open_existing_journal, open_journal, print_outcome};

// Arguments of `chassis submit`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The agent spec (agent.toml)
    agent: PathBuf,
    #[command(flatten)]
    input: crate::commands::input::InputArgs,
    /// Makes a retry safe: the same key returns the run it first started
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Print one JSON object {"run_id", "existing"} instead of the bare id
    #[arg(long)]
    json: bool,
}

/// Loads the agent (nothing is journaled if that fails), journals the run, prints its id.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let input = args.input.read()?;
    submit(db, &args.agent, &input, args.idempotency_key, args.json).await
}

/// Journals a new run of the agent at `spec` on `input` without driving it; a worker
/// (`chassis worker`) claims it. Prints the run id, or `{"run_id", "existing"}` with `json`.
/// With an idempotency key used before, prints the run that key started.
pub(crate) async fn submit(
    db: &Path,
    spec: &Path,
    input: &Input,
    idempotency_key: Option<String>,
    json: bool,
) -> anyhow::Result<u8> {
    let agent = Agent::load(spec).await?.with_vars(input.json_vars());
    let engine = crate::commands::engine(db, open_journal(db).await?);
    let options = StartOptions {
        idempotency_key,
        ..StartOptions::default()
    };
    let submitted = engine.submit_with(&agent, &input.text, options).await?;
    if json {
        outln!(
            "{}",
            serde_json::json!({ "run_id": submitted.run_id, "existing": submitted.existing })
        );
    } else {
        outln!("{}", submitted.run_id);
    }
    if submitted.existing {
        noteln!(
            "the idempotency key started run {} before; nothing new was submitted",
            submitted.run_id
        );
    }
    Ok(crate::exit::COMPLETED)
}

/// Hands an existing run to the workers: journals `raises` (with who raised them) and a
/// request to resume in one write, which makes the run runnable, and returns at once. A
/// finished run just reports its outcome.
pub(crate) async fn wake(
    db: &Path,
    run_id: &str,
    raises: &[(LimitName, f64)],
    by: &str,
    json: bool,
) -> anyhow::Result<u8> {
    let engine = crate::commands::engine(db, open_existing_journal(db).await?);
    let state = engine.load(run_id).await?;
    if state.status().is_terminal() {
        return Ok(print_outcome(&RunOutcome::of(run_id, &state), json));
    }
    let after = engine.request_resume(run_id, raises, by).await?;
    let woken = after.wake() == chassis_core::Wake::Now;
    if json {
        outln!(
            "{}",
            serde_json::json!({ "run_id": run_id, "status": after.status().as_str(), "woken": woken })
        );
    } else {
        outln!("{run_id}");
        if woken {
            noteln!("run {run_id} ({}) handed to the workers", after.status());
        } else {
            noteln!(
                "run {run_id} ({}) still waits for a human: {}",
                after.status(),
                after
                    .waiting_reason
                    .as_deref()
                    .unwrap_or("see `chassis approvals`")
            );
        }
    }
    Ok(crate::exit::COMPLETED)
}
