//! `chassis import FILE`: restore the runs a `chassis purge --archive FILE` wrote.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use chassis_core::{Event, RunStatus};
use chassis_store::{Record, Restored};
use serde_json::Value;

use crate::commands::open_journal;
use crate::exit::UsageError;

/// Arguments of `chassis import`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The archive: gzip-compressed JSONL, one run a line, as `chassis purge --archive` writes
    file: PathBuf,
    /// Print one JSON object {"runs", "skipped"} instead of a line
    #[arg(long)]
    json: bool,
}

/// Restores every run of the archive; a run whose id the journal has already is skipped.
pub(crate) async fn run(db: &Path, args: Args) -> anyhow::Result<u8> {
    let file = std::fs::File::open(&args.file)
        .map_err(|e| UsageError(format!("{}: cannot read: {e}", args.file.display())))?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let journal = open_journal(db).await?;
    let (mut runs, mut skipped) = (0u64, 0u64);
    for (index, line) in reader.lines().enumerate() {
        let at = || format!("{} line {}", args.file.display(), index + 1);
        let line = line.map_err(|e| UsageError(format!("{}: {e}", at())))?;
        if line.trim().is_empty() {
            continue;
        }
        let run = restored(&line).map_err(|e| UsageError(format!("{}: {e}", at())))?;
        match journal.import(&run).await {
            Ok(()) => runs += 1,
            Err(chassis_store::Error::RunExists(_)) => skipped += 1,
            Err(e) => return Err(e.into()),
        }
    }
    if args.json {
        outln!(
            "{}",
            serde_json::json!({ "runs": runs, "skipped": skipped })
        );
    } else {
        noteln!(
            "imported {runs} run(s) from {}{}",
            args.file.display(),
            if skipped > 0 {
                format!("; {skipped} already in the journal, left as they are")
            } else {
                String::new()
            }
        );
    }
    Ok(crate::exit::COMPLETED)
}

/// One archive line as a run; the error names the field that is wrong.
fn restored(line: &str) -> Result<Restored, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = |key: &str| {
        value[key]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("`{key}` is missing or not a string"))
    };
    let status = text("status")?;
    let status =
        RunStatus::parse(&status).ok_or_else(|| format!("`status`: unknown status `{status}`"))?;
    let created_ms = value["created_ms"]
        .as_i64()
        .ok_or("`created_ms` is missing or not an integer")?;
    let mut events = Vec::new();
    for (i, event) in value["events"]
        .as_array()
        .ok_or("`events` is missing or not an array")?
        .iter()
        .enumerate()
    {
        let seq = event["seq"]
            .as_u64()
            .ok_or_else(|| format!("events[{i}].seq is missing"))?;
        let at_ms = event["at_ms"]
            .as_i64()
            .ok_or_else(|| format!("events[{i}].at_ms is missing"))?;
        if seq != i as u64 + 1 {
            return Err(format!("events[{i}].seq is {seq}, expected {}", i + 1));
        }
        let event: Event = serde_json::from_value(event["event"].clone())
            .map_err(|e| format!("events[{i}].event: {e}"))?;
        events.push(Record { seq, at_ms, event });
    }
    if events.is_empty() {
        return Err("`events` is empty".to_string());
    }
    Ok(Restored {
        run_id: text("run_id")?,
        agent: text("agent")?,
        status,
        created_ms,
        events,
    })
}
