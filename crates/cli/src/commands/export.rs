//! `chassis export RUN --cassette FILE`: a journaled run's model exchanges as a cassette.

use std::path::{Path, PathBuf};

use chassis_eval::cassette::Cassette;

use crate::commands::open_existing_journal;

/// Arguments of `chassis export`.
#[derive(clap::Args)]
pub struct Args {
    /// The run: its id, a unique prefix of it, or `last` (see `chassis runs`)
    run: String,
    /// Write the run's model exchanges to this cassette file (replay it with `chassis run --replay`)
    #[arg(long, value_name = "FILE")]
    cassette: PathBuf,
}

/// Rebuilds each step's request from the journal and writes request and answer as a cassette.
pub async fn run(db: &Path, mut args: Args) -> anyhow::Result<u8> {
    let journal = open_existing_journal(db).await?;
    args.run = crate::commands::resolve_run(journal.as_ref(), &args.run).await?;
    let records = journal.load(&args.run).await?;
    let cassette = Cassette::from_events(records.iter().map(|r| &r.event))?;
    cassette.save(&args.cassette)?;
    noteln!(
        "wrote {} exchange(s) of run {} to {}",
        cassette.exchanges.len(),
        args.run,
        args.cassette.display()
    );
    Ok(crate::exit::COMPLETED)
}
