//! State snapshots: the fold's state of a run after some event, kept so that loading a long
//! run folds only the events after it (bounded resume).
//!
//! A snapshot is a cache of what the journal already says: it is written after the events it
//! folds are durable, by whoever drives the run, and a reader that cannot use it (missing,
//! undecodable, from an older chassis) folds the whole journal instead.

use async_trait::async_trait;

use crate::Error;

/// Snapshots kept in the store.
#[async_trait]
pub trait Snapshots: Send + Sync {
    /// Keeps `state` (JSON) as the state of `run_id` after event `seq`, dropping its older
    /// snapshots ([`Error::RunNotFound`] if the run does not exist).
    async fn put_snapshot(&self, run_id: &str, seq: u64, state: &str) -> Result<(), Error>;

    /// The run's latest snapshot: the event it was taken after and the state.
    async fn latest_snapshot(&self, run_id: &str) -> Result<Option<(u64, String)>, Error>;
}
