//! `chassis export RUN --cassette FILE`: a journaled run's model exchanges as a cassette.

use std::path::{Path, PathBuf};

use chassis_core::Event;
use chassis_eval::cassette::Cassette;

use crate::commands::open_reading_journal;

// Arguments of `chassis export`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The run: its id, a unique prefix of it, or `last` (see `chassis runs`)
    run: String,
    /// Write the run's model exchanges to this cassette file (replay it with `chassis run --replay`)
    #[arg(long, value_name = "FILE")]
    cassette: PathBuf,
    /// Print one JSON object `{"run_id", "cassette", "exchanges"}` instead of a line
    #[arg(long)]
    json: bool,
}

/// Rebuilds each step's request from the journal and writes request and answer as a cassette.
///
/// The journal is redacted as it is written; the cassette is redacted again with the secrets
/// known now (the run's agent spec, when it still loads, and the API key variables), because
/// a cassette is a file that gets shared and a journal may predate a `[redact]` entry.
pub(crate) async fn run(db: &Path, mut args: Args) -> anyhow::Result<u8> {
    let journal = open_reading_journal(db).await?;
    args.run = crate::commands::resolve_run(journal.as_ref(), &args.run).await?;
    let records = journal.load(&args.run).await?;
    let cassette = Cassette::from_events(records.iter().map(|r| &r.event))?;
    let telemetry = crate::telemetry();
    if let Some(Event::RunStarted(start)) = records.first().map(|r| &r.event)
        && let Ok(text) =
            std::fs::read_to_string(crate::commands::agent_paths(db).locate(&start.spec_path))
        && let Ok(spec) = chassis_core::spec::AgentSpec::parse(&text)
        && let Ok(redactor) = chassis_engine::Redactor::for_spec(&spec)
    {
        telemetry.redact_logs(&redactor);
    }
    let scrub = |text: &str| telemetry.redact(text);
    let cassette = cassette.scrubbed(&scrub);
    cassette.save(&args.cassette)?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "run_id": args.run,
                "cassette": args.cassette.display().to_string(),
                "exchanges": cassette.exchanges.len(),
            })
        );
    } else {
        noteln!(
            "wrote {} exchange(s) of run {} to {}",
            cassette.exchanges.len(),
            args.run,
            args.cassette.display()
        );
    }
    Ok(crate::exit::COMPLETED)
}
