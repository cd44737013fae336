//! `chassis fork RUN --at SEQ [--input TEXT] [--resume]`: a new run from the first events of
//! another (time travel), linked to it.

use std::path::Path;

use crate::commands::open_existing_journal;
use crate::commands::resume::os_user;

// Arguments of `chassis fork`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The run to fork: its id, a unique prefix of it, or `last`
    run: String,
    /// How many of its events the fork starts with (`chassis show RUN` numbers them)
    #[arg(long, value_name = "SEQ")]
    at: u64,
    /// A new user message after the copied events; `-` reads it from stdin
    #[arg(long, short, value_name = "TEXT")]
    input: Option<String>,
    /// Who forks (the message's author; default: the OS user)
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// Drive the fork here until it stops and print its answer; without it, a worker (or
    /// `chassis resume FORK`) drives it
    #[arg(long)]
    resume: bool,
    /// Print one JSON object instead: {"run_id", "forked_from", "at"}, or with --resume
    /// {"run_id", "status", "output"}
    #[arg(long)]
    json: bool,
    /// On a terminal, do not show answers as the model writes them (with --resume)
    #[arg(long)]
    no_stream: bool,
}

/// Creates the fork; prints its id (or drives it with `--resume`).
pub(crate) async fn run(db: &Path, mut args: Args) -> anyhow::Result<u8> {
    let input = match args.input.as_deref() {
        Some("-") => Some(crate::commands::input::read_stdin()?),
        other => other.map(str::to_string),
    };
    let journal = open_existing_journal(db).await?;
    args.run = crate::commands::resolve_run(journal.as_ref(), &args.run).await?;
    let engine =
        crate::commands::engine(db, journal).with_interrupt(crate::signals::interrupt_on_signals());
    crate::commands::learn_secrets(&engine, &args.run).await;
    let by = args.by.clone().unwrap_or_else(os_user);
    let fork = engine
        .fork(&args.run, args.at, input.as_deref(), &by)
        .await?;
    if !args.resume {
        if args.json {
            outln!(
                "{}",
                serde_json::json!({ "run_id": fork, "forked_from": args.run, "at": args.at })
            );
        } else {
            outln!("{fork}");
            noteln!(
                "forked run {} at event {} as {fork}; a worker drives it, or `chassis resume {fork}`",
                args.run,
                args.at
            );
        }
        return Ok(crate::exit::COMPLETED);
    }
    crate::commands::resume::drive_here(engine, &fork, args.json, args.no_stream).await
}
