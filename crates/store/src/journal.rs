//! The journal contract every backend keeps.

use std::time::Duration;

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

/// A worker's time-limited claim on a run: while it holds, no other worker is given the run.
///
/// A lease holds while the store's clock is before `until_ms` and nobody else has claimed the
/// run since; one that expired but was not taken is still good (renew it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The run.
    pub run_id: String,
    /// Who holds it.
    pub worker: String,
    /// Fencing token: fresh on every claim, checked by [`Journal::append_leased`].
    pub token: u64,
    /// When it expires, ms since the epoch on the store's clock.
    pub until_ms: i64,
}

/// An append-only, per-run event journal.
///
/// The store also keeps, for each run, when it is next runnable: an append whose last
/// status-changing event is `run_started` or `run_resumed` makes it runnable now; `run_waiting`,
/// `run_paused`, `run_completed` and `run_failed` make it not runnable until [`Journal::wake`].
/// Workers take runnable runs with [`Journal::claim`].
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

    /// Leases up to `limit` runnable runs whose lease is absent or expired to `worker` for
    /// `ttl`; a run is given to exactly one of many concurrent claimers.
    async fn claim(&self, worker: &str, ttl: Duration, limit: usize) -> Result<Vec<Lease>, Error>;

    /// Extends a lease to `ttl` from now; [`Error::LeaseLost`] if another worker took the run
    /// or the lease was released.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error>;

    /// Gives a run back so any worker can claim it at once; a no-op if the lease is already lost.
    async fn release(&self, lease: &Lease) -> Result<(), Error>;

    /// [`Journal::append`], refused whole with [`Error::LeaseLost`] unless `lease` still holds
    /// (checked in the same transaction: a worker whose lease was taken cannot write).
    async fn append_leased(
        &self,
        lease: &Lease,
        expected: u64,
        events: &[Event],
    ) -> Result<u64, Error>;

    /// Makes a run that is not finished runnable at `at_ms` (ms since the epoch) at the latest;
    /// an earlier wake time stands. A no-op on a completed or failed run.
    async fn wake(&self, run_id: &str, at_ms: i64) -> Result<(), Error>;

    /// Waits up to `timeout`, returning early when a run may have become claimable since this
    /// handle's latest [`Journal::claim`] began (a worker loops: claim, and wait when nothing
    /// came). Early returns without work are allowed; callers claim after it either way.
    async fn wait_for_work(&self, timeout: Duration);
}
