//! One module per command.

pub mod bench;
pub mod demo;
pub mod mock;
pub mod resume;
pub mod run;
pub mod runs;
pub mod show;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chassis_store::{Journal, SqliteJournal, Sync};

use crate::exit::UsageError;

/// Opens the journal, creating it if needed.
pub fn open_journal(db: &Path) -> anyhow::Result<Arc<dyn Journal>> {
    let journal = SqliteJournal::open(db, Sync::Full).context("cannot open the journal")?;
    Ok(Arc::new(journal))
}

/// Opens an existing journal for commands that only read or continue runs.
pub fn open_existing_journal(db: &Path) -> anyhow::Result<Arc<dyn Journal>> {
    if !db.exists() {
        return Err(UsageError(format!(
            "no journal at {} (start a run with `chassis run` or `chassis demo`, or pass --db / CHASSIS_DB)",
            db.display()
        ))
        .into());
    }
    open_journal(db)
}

/// Prints a run outcome as the run commands do: the answer, or JSON.
pub fn print_outcome(outcome: &chassis_engine::RunOutcome, json: bool) -> u8 {
    if json {
        let value = serde_json::json!({
            "run_id": outcome.run_id,
            "status": outcome.status.as_str(),
            "output": outcome.output,
            "reason": outcome.reason,
        });
        println!("{value}");
    } else {
        match (&outcome.output, &outcome.reason) {
            (Some(output), _) => println!("{output}"),
            (None, Some(reason)) => {
                eprintln!("run {} {}: {reason}", outcome.run_id, outcome.status)
            }
            (None, None) => eprintln!("run {} is {}", outcome.run_id, outcome.status),
        }
    }
    crate::exit::of_status(outcome.status)
}
