//! `chassis send RUN --input TEXT [--resume]`: continue a completed run with a new user
//! message, a thread's next turn.

use std::path::Path;

use crate::commands::open_existing_journal;
use crate::commands::resume::os_user;

// Arguments of `chassis send`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The run: its id, a unique prefix of it, or `last` (see `chassis runs`)
    run: String,
    /// The message (the next user turn); `-` reads it from stdin
    #[arg(long, short, value_name = "TEXT")]
    input: String,
    /// Who sends it, for the audit trail (default: the OS user)
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// Drive the run here until it answers (as `chassis resume` does) and print the answer;
    /// without it, the run waits for a worker or `chassis resume`
    #[arg(long)]
    resume: bool,
    /// Print one JSON object instead of a line: {"run_id", "status"}, or with --resume
    /// {"run_id", "status", "output"}
    #[arg(long)]
    json: bool,
    /// On a terminal, do not show answers as the model writes them (with --resume)
    #[arg(long)]
    no_stream: bool,
}

/// Journals the message (one write, which wakes the run), then drives the run with `--resume`.
pub(crate) async fn run(db: &Path, mut args: Args) -> anyhow::Result<u8> {
    let text = if args.input == "-" {
        crate::commands::input::read_stdin()?
    } else {
        args.input.clone()
    };
    let journal = open_existing_journal(db).await?;
    args.run = crate::commands::resolve_run(journal.as_ref(), &args.run).await?;
    let engine =
        crate::commands::engine(db, journal).with_interrupt(crate::signals::interrupt_on_signals());
    crate::commands::learn_secrets(&engine, &args.run).await;
    let by = args.by.clone().unwrap_or_else(os_user);
    engine.send_message(&args.run, &text, &by).await?;
    if !args.resume {
        if args.json {
            outln!(
                "{}",
                serde_json::json!({ "run_id": args.run, "status": "running" })
            );
        } else {
            noteln!(
                "message sent to run {} (by {by}); a worker answers it, or `chassis resume {}`",
                args.run,
                args.run
            );
        }
        return Ok(crate::exit::COMPLETED);
    }
    crate::commands::resume::drive_here(engine, &args.run, args.json, args.no_stream).await
}
