//! The chassis journal: an append-only log of [`Event`]s per run.
//!
//! [`Journal`] is the contract every backend keeps (SQLite here; PostgreSQL later), and
//! `conformance` (feature `test-support`) is the suite that proves it.
//! An append carries the sequence number the writer expects the journal to be at, so a
//! stale or concurrent writer is refused, never interleaved.

mod error;
mod journal;
mod sqlite;

#[cfg(feature = "test-support")]
pub mod conformance;

pub use error::Error;
pub use journal::{Journal, ListFilter, NewRun, Record, RunSummary};
pub use sqlite::{SqliteJournal, Sync};

use chassis_core::Event;

/// Serialized form of an event, as the journal stores it.
pub(crate) fn encode(event: &Event) -> Result<String, Error> {
    serde_json::to_string(event).map_err(|e| Error::Encode(e.to_string()))
}
