//! The journal contract every backend keeps.

use async_trait::async_trait;
use chassis_core::{Event, RunStatus};
use serde_json::Value;

use crate::Error;

/// A run about to be created.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// Unique id.
    pub run_id: String,
    /// Agent name, for listing.
    pub agent: String,
}

/// One stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Position in the run's journal, from 1, without gaps.
    pub seq: u64,
    /// When it was journaled, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The event.
    pub event: Event,
}

impl Record {
    /// The record as JSON: `{"seq", "at_ms", "kind", …fields}`.
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(&self.event).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("seq".into(), self.seq.into());
            map.insert("at_ms".into(), self.at_ms.into());
        }
        value
    }
}

/// A run as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Agent name.
    pub agent: String,
    /// Status after the last event.
    pub status: RunStatus,
    /// Number of events.
    pub last_seq: u64,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Time of the last event, ms since the epoch.
    pub updated_ms: i64,
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs of this agent.
    pub agent: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// An append-only, per-run event journal.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Creates a run whose journal starts with `events` (at least `run_started`).
    async fn create(&self, run: &NewRun, events: &[Event]) -> Result<u64, Error>;

    /// Appends `events` if the journal holds exactly `expected` events; returns the new count.
    /// Appends from concurrent writers may share one durable commit.
    async fn append(&self, run_id: &str, expected: u64, events: &[Event]) -> Result<u64, Error>;

    /// Every event of a run, in order.
    async fn load(&self, run_id: &str) -> Result<Vec<Record>, Error>;

    /// Runs matching the filter, newest first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<RunSummary>, Error>;
}
