//! The chassis journal: an append-only log of [`Event`]s per run.
//!
//! [`Journal`] is the contract every backend keeps (an SQLite file, or PostgreSQL for several
//! workers), and `conformance` (feature `test-support`) is the suite that proves it.
//! An append carries the sequence number the writer expects the journal to be at, so a
//! stale or concurrent writer is refused, never interleaved.
//! Workers share runs through leases ([`Journal::claim`]); a leased append is fenced by the
//! lease's token, so a worker that lost its lease cannot write.
//! [`open`] picks the backend from a target string; [`resolve_run`] turns what a person typed
//! (a prefix, `last`) into a run id.

pub mod clock;
mod error;
mod journal;
mod lease;
mod outbox;
mod postgres;
mod rate;
pub mod resolve;
mod schedule;
mod snapshot;
mod sqlite;

#[cfg(feature = "test-support")]
pub mod conformance;

pub use chassis_core::Wake;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
pub use journal::{
    Created, Driver, Journal, Lease, ListFilter, NewRun, Purged, Record, Restored, RunSummary,
    TokenRecord,
};
pub use outbox::{
    Attempt, Delivery, DeliveryStatus, Notification, Outbox, OutboxFilter, delivery_id,
};
pub use postgres::{DEFAULT_POOL_SIZE, PostgresJournal, redact};
pub use rate::{Capacity, RateLimits};
pub use resolve::resolve_run;
pub use schedule::{Fired, Schedule, Schedules};
pub use snapshot::Snapshots;
pub use sqlite::{SqliteJournal, Sync};

use std::path::PathBuf;
use std::sync::Arc;

use chassis_core::Event;

/// Opens the journal `target` names: a `postgres://` or `postgresql://` URL opens
/// [`PostgresJournal`], anything else is the path of an SQLite file (fsync on every commit).
///
/// Either way the schema is created or migrated first, and a database from a newer chassis
/// is refused untouched ([`Error::SchemaTooNew`]). Errors never show a password.
pub async fn open(target: &str) -> Result<Arc<dyn Journal>, Error> {
    if postgres::is_url(target) {
        let journal = PostgresJournal::connect(target, DEFAULT_POOL_SIZE).await?;
        return Ok(Arc::new(journal));
    }
    if let Some((scheme, _)) = target.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(Error::InvalidTarget {
            target: redact(target),
            message: format!(
                "unsupported scheme `{scheme}`: expected postgres:// or postgresql://, or the path of an SQLite file"
            ),
        });
    }
    if target.trim().is_empty() {
        return Err(Error::InvalidTarget {
            target: "(empty)".to_string(),
            message: "expected a postgres:// URL or the path of an SQLite file".to_string(),
        });
    }
    let path = PathBuf::from(target);
    let journal = tokio::task::spawn_blocking(move || SqliteJournal::open(&path, Sync::Full))
        .await
        .map_err(|_| Error::Closed)??;
    Ok(Arc::new(journal))
}

/// The schema version this build brings the journal `target` names to (see [`open`]):
/// after a successful [`open`], the journal is at this version.
pub fn schema_version(target: &str) -> i64 {
    if postgres::is_url(target) {
        postgres::SCHEMA_VERSION
    } else {
        sqlite::SCHEMA_VERSION
    }
}

/// Refuses a human write that holds anything but human decisions, naming the first other.
pub(crate) fn check_decisions(run_id: &str, events: &[Event]) -> Result<(), Error> {
    match events.iter().find(|e| !e.is_human_decision()) {
        Some(event) => Err(Error::NotADecision {
            run_id: run_id.to_string(),
            kind: event.kind(),
        }),
        None => Ok(()),
    }
}

/// The `run_tags` key under which a fork's original run is kept, for
/// [`ListFilter::forked_from`](crate::ListFilter::forked_from); tags people give are read from
/// `run_started`, never from this table, so it shows nowhere.
pub(crate) const FORKED_FROM_KEY: &str = "chassis.forked_from";

/// What listing and filtering need from a run's first event: its version, label and tags.
pub(crate) struct StartFacts {
    pub(crate) version: Option<String>,
    pub(crate) label: Option<String>,
    pub(crate) tags: Vec<(String, String)>,
}

impl StartFacts {
    pub(crate) fn of(events: &[Event]) -> StartFacts {
        match events.first() {
            Some(Event::RunStarted(start)) => StartFacts {
                version: Some(start.version.clone()).filter(|v| !v.is_empty()),
                label: start.version_label.clone(),
                tags: start
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .chain(
                        start
                            .forked_from
                            .as_ref()
                            .map(|f| (FORKED_FROM_KEY.to_string(), f.run.clone())),
                    )
                    .collect(),
            },
            _ => StartFacts {
                version: None,
                label: None,
                tags: Vec::new(),
            },
        }
    }
}

/// Serialized form of an event, as the journal stores it.
pub(crate) fn encode(event: &Event) -> Result<String, Error> {
    serde_json::to_string(event).map_err(|e| Error::Encode(e.to_string()))
}
