//! `chassis cancel RUN --reason TEXT`: stop a run, with who and why journaled.

use std::path::Path;

use chassis_engine::Cancelled;

use crate::commands::open_existing_journal;
use crate::commands::resume::os_user;

// Arguments of `chassis cancel`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The run
    run: String,
    /// Why: journaled with the cancel
    #[arg(long)]
    reason: String,
    /// Who cancels (default: the OS user)
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// Print one JSON object {"run_id", "status", "cancelled", "driver"} instead of a line
    #[arg(long)]
    json: bool,
}

/// Journals the cancel; ends the run here when nobody drives it, or leaves it to its driver,
/// which stops at its next safe point.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let engine = crate::commands::engine(db, open_existing_journal(db).await?);
    crate::commands::learn_secrets(&engine, &args.run).await;
    let by = args.by.clone().unwrap_or_else(os_user);
    let cancelled = engine.cancel(&args.run, &by, &args.reason).await?;
    let (status, driver) = match &cancelled {
        Cancelled::Ended(outcome) => (outcome.status.as_str(), None),
        Cancelled::Requested { driver } => ("cancelling", Some(driver.as_str())),
    };
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "run_id": args.run,
                "status": status,
                "cancelled": matches!(cancelled, Cancelled::Ended(_)),
                "driver": driver,
            })
        );
    } else {
        match driver {
            None => noteln!("run {} cancelled (by {by}): {}", args.run, args.reason),
            Some(driver) => noteln!(
                "cancel of run {} recorded (by {by}); {driver} drives it and stops it at its next safe point",
                args.run
            ),
        }
    }
    Ok(crate::exit::COMPLETED)
}
