//! The archive a purge writes and an import restores: gzip-compressed JSONL, one run a line in
//! the form of [`Engine::archived`].
//!
//! Both halves live here, beside the purge, so that `chassis purge --archive`, `chassis import`
//! and the retention benchmark write and read the same bytes through the same code.

use std::io::{BufRead, Write};
use std::path::Path;

use chassis_core::{Event, RunStatus};
use chassis_store::{Record, Restored, RunSummary};
use serde_json::Value;

use crate::{Engine, Error};

/// Why an archive could not be written or read; each names the file (and the line).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive file could not be created.
    #[error("{path}: cannot create: {source}")]
    Create {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing or syncing the archive failed part way.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The archive file could not be opened or decompressed.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not a run as an archive holds it.
    #[error("{path} line {line}: {message}")]
    Line {
        /// The file.
        path: String,
        /// From 1.
        line: usize,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The journal failed.
    #[error(transparent)]
    Engine(#[from] Error),
}

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Runs restored.
    pub runs: u64,
    /// Runs whose id the journal had already, left as they are.
    pub skipped: u64,
}

impl Engine {
    /// Writes `runs` to `path`, one line each, and syncs the file: once this returns, the
    /// archive is whole on disk and the runs may be deleted.
    pub async fn write_archive(
        &self,
        runs: &[RunSummary],
        path: &Path,
    ) -> Result<(), ArchiveError> {
        let shown = || path.display().to_string();
        let failed = |source| ArchiveError::Write {
            path: shown(),
            source,
        };
        let file = std::fs::File::create(path).map_err(|source| ArchiveError::Create {
            path: shown(),
            source,
        })?;
        let mut gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::default(),
        );
        for summary in runs {
            let line = self.archived(summary).await?;
            writeln!(gz, "{line}").map_err(failed)?;
        }
        let mut inner = gz.finish().map_err(failed)?;
        inner.flush().map_err(failed)?;
        inner.get_ref().sync_all().map_err(failed)?;
        Ok(())
    }

    /// Restores every run of the archive at `path`, one at a time, in its order; a run whose id
    /// the journal has already is skipped. A line that is not a run stops the import there,
    /// named with its line (the runs before it stay imported; importing again skips them).
    pub async fn import_archive(&self, path: &Path) -> Result<Imported, ArchiveError> {
        let shown = || path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| ArchiveError::Read {
            path: shown(),
            source,
        })?;
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
        let mut done = Imported::default();
        for (index, line) in reader.lines().enumerate() {
            let at = |message: String| ArchiveError::Line {
                path: shown(),
                line: index + 1,
                message,
            };
            let line = line.map_err(|e| at(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let run = restored(&line).map_err(at)?;
            match self.journal().import(&run).await {
                Ok(()) => done.runs += 1,
                Err(chassis_store::Error::RunExists(_)) => done.skipped += 1,
                Err(e) => return Err(Error::from(e).into()),
            }
        }
        Ok(done)
    }
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
