//! `chassis run AGENT.toml --input TEXT`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chassis_engine::{Agent, Engine};

use crate::commands::{open_journal, print_outcome};
use crate::progress::Progress;

/// Arguments of `chassis run`.
#[derive(clap::Args)]
pub struct Args {
    /// The agent spec (agent.toml)
    agent: PathBuf,
    /// The run's input (the first user message)
    #[arg(long, short)]
    input: String,
    /// Print one JSON object {"run_id", "status", "output"} instead of the answer
    #[arg(long)]
    json: bool,
    /// Do not print progress on stderr
    #[arg(long, short)]
    quiet: bool,
}

/// Loads the agent (nothing is journaled if that fails) and drives a new run.
pub async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let agent = Agent::load(&args.agent).await?;
    let mut engine = Engine::new(open_journal(db)?);
    if !args.quiet && !args.json {
        engine = engine.with_observer(Arc::new(Progress));
    }
    let outcome = engine.start(&agent, &args.input).await?;
    Ok(print_outcome(&outcome, args.json))
}
