//! Schedules: agents started by cron, fired once per slot by whichever process holds them.
//!
//! A schedule's due slots are fired by one process at a time: [`Schedules::claim_schedules`]
//! leases the schedules that are due, [`Schedules::record_fired`] books what was fired and
//! the next slot, fenced by the claim. Each fired run is also started with the idempotency
//! key of its schedule and slot, so even a claim that lapsed mid-fire cannot start a slot
//! twice: the store refuses a second run with the key.

use std::time::Duration;

use async_trait::async_trait;

use crate::Error;

/// A schedule as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// `sch_…`.
    pub schedule_id: String,
    /// The agent's name.
    pub agent: String,
    /// Where its spec is (as runs journal it: relative to the project when under it).
    pub spec_path: String,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// Each run's input.
    pub input: String,
    /// `skip`, `queue` or `allow`: what a slot does while the previous run goes on.
    pub overlap: String,
    /// `none`, `last` or `all`: which slots missed during downtime are fired.
    pub catch_up: String,
    /// When it was added (ms since the epoch).
    pub created_ms: i64,
    /// The first slot not yet fired (ms since the epoch).
    pub next_slot_ms: i64,
    /// The last run it started.
    pub last_run_id: Option<String>,
    /// The claim's fencing token (0 when listed, not claimed).
    pub token: u64,
}

/// What became of one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    /// The slot (ms since the epoch).
    pub slot_ms: i64,
    /// The run started for it, if one was.
    pub run_id: Option<String>,
    /// `started`, `skipped` (the previous run still went on) or `missed` (downtime, not
    /// caught up).
    pub outcome: String,
}

/// The schedules every journal keeps.
#[async_trait]
pub trait Schedules: Send + Sync {
    /// Keeps a new schedule.
    async fn put_schedule(&self, schedule: &Schedule) -> Result<(), Error>;

    /// Every schedule, oldest first.
    async fn schedules(&self) -> Result<Vec<Schedule>, Error>;

    /// Removes a schedule (its fired slots stay with their runs); false when there was none.
    async fn remove_schedule(&self, schedule_id: &str) -> Result<bool, Error>;

    /// Leases up to `limit` schedules whose next slot is due and that nobody holds to `owner`
    /// for `ttl`.
    async fn claim_schedules(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Schedule>, Error>;

    /// Books the slots a claimed schedule fired (each slot once: a slot booked before is left
    /// as it was), moves it to `next_slot_ms`, and frees it; false when the claim was lost.
    async fn record_fired(
        &self,
        schedule: &Schedule,
        fired: &[Fired],
        next_slot_ms: i64,
    ) -> Result<bool, Error>;

    /// The slots a schedule fired, oldest first.
    async fn fired_slots(&self, schedule_id: &str) -> Result<Vec<Fired>, Error>;

    /// When the next schedule is due (ms since the epoch), if any.
    async fn next_schedule_ms(&self) -> Result<Option<i64>, Error>;
}
