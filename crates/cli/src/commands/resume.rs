//! `chassis resume RUN`.

use std::path::Path;
use std::sync::Arc;

use chassis_engine::Engine;

use crate::commands::{open_existing_journal, print_outcome};
use crate::progress::Progress;

/// Arguments of `chassis resume`.
#[derive(clap::Args)]
pub struct Args {
    /// The run id (see `chassis runs`)
    run: String,
    /// Print one JSON object {"run_id", "status", "output"} instead of the answer
    #[arg(long)]
    json: bool,
    /// Do not print progress on stderr
    #[arg(long, short)]
    quiet: bool,
}

/// Continues the run from its journal; a finished run just reports its outcome.
pub async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let mut engine = Engine::new(open_existing_journal(db)?);
    if !args.quiet && !args.json {
        engine = engine.with_observer(Arc::new(Progress));
    }
    let outcome = engine.resume(&args.run).await?;
    Ok(print_outcome(&outcome, args.json))
}
