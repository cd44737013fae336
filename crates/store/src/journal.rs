//! The journal contract every backend keeps.

use std::time::Duration;

use async_trait::async_trait;
use chassis_core::{Event, RunStatus, Wake};
use serde_json::Value;

use crate::Error;

/// A run about to be created.
#[derive(Clone, Debug, Default)]
pub struct NewRun {
    /// Unique id.
    pub run_id: String,
    /// Agent name, for listing.
    pub agent: String,
    /// A key the starter chose so that retrying the start cannot create a second run: a run
    /// created with a key already used is refused with [`Error::KeyUsed`], naming the run.
    pub idempotency_key: Option<String>,
}

/// Who will drive a new run: [`Journal::create`] leases the run to them at once.
#[derive(Clone, Debug)]
pub struct Driver {
    /// Recorded as the lease's owner (a worker's name, `chassis run` on a host).
    pub owner: String,
    /// How long the lease lasts without renewal.
    pub ttl: Duration,
}

/// A created run.
#[derive(Clone, Debug, PartialEq)]
pub struct Created {
    /// Events journaled.
    pub seq: u64,
    /// The creator's lease, when a [`Driver`] was given.
    pub lease: Option<Lease>,
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
    /// When it is next runnable (ms since the epoch); none until a human acts, or ended.
    pub wake_at_ms: Option<i64>,
    /// Who drives it now, and until when its lease holds, if anyone holds one.
    pub lease: Option<(String, i64)>,
    /// The agent version it runs under (its fingerprint).
    pub version: String,
}

/// What [`Journal::purge`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Runs deleted.
    pub runs: u64,
    /// Bytes of journaled events they held.
    pub bytes: u64,
}

/// A run as an archive holds it, for [`Journal::import`].
#[derive(Clone, Debug, PartialEq)]
pub struct Restored {
    /// Its id.
    pub run_id: String,
    /// Its agent.
    pub agent: String,
    /// Its status.
    pub status: RunStatus,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
    /// Every event, with its sequence and time, in order from 1.
    pub events: Vec<Record>,
}

/// An API token as the store keeps it: never the token itself, only its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Who holds it; journaled as the author of their decisions.
    pub name: String,
    /// Its role (`viewer`, `operator`, `approver`, `admin`).
    pub role: String,
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// When it was made (ms since the epoch).
    pub created_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
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
    /// Only runs of this agent version: a fingerprint prefix, or a `[agent] version` label.
    pub version: Option<String>,
    /// Only runs carrying this tag (key and value).
    pub tag: Option<(String, String)>,
    /// Only runs created at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only runs created before this time (ms since the epoch).
    pub until_ms: Option<i64>,
    /// Only runs listed after this one: its creation time and id (a page's cursor), since runs
    /// are listed newest first by (creation time, id).
    pub after: Option<(i64, String)>,
    /// Only the run with this id.
    pub run_id: Option<String>,
    /// Only runs forked from this run.
    pub forked_from: Option<String>,
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
    /// Fencing token: fresh on every claim, checked by [`Journal::append`].
    pub token: u64,
    /// When it expires, ms since the epoch on the store's clock.
    pub until_ms: i64,
}

/// An append-only, per-run event journal, with one driver per run.
///
/// **One driver per run.** Every drive holds the run's lease: [`Journal::create`] leases a new
/// run to its creator, [`Journal::claim`] hands runnable runs to workers, and
/// [`Journal::claim_run`] hands one run to whoever resumes it. [`Journal::append`] is fenced by
/// the lease. The only writes without it are a short list of human decisions
/// ([`Event::is_human_decision`]), through [`Journal::decide`].
///
/// **A write and its wake are one.** The store keeps, for each run, when it is next runnable;
/// every write carries that time as the fold computes it after the write
/// ([`chassis_core::RunState::wake`]: now while the run executes or once a human has acted,
/// an approval's expiry, a parked run's retry, or never until a human acts), in the same
/// transaction, so no crash can leave a decision without its wake-up.
///
/// **Notifications go with their events.** [`Journal::append_with`] writes a run's events and
/// the notifications they raise ([`crate::Outbox`]) in one transaction.
#[async_trait]
pub trait Journal:
    crate::Outbox + crate::Schedules + crate::RateLimits + crate::Snapshots + Send + Sync
{
    /// Creates a run whose journal starts with `events` (at least `run_started`), leased to
    /// `driver` if given; [`Error::RunExists`] for a taken id, [`Error::KeyUsed`] for a taken
    /// idempotency key. Without a driver the run is durable when this returns (its id may be
    /// handed out at once). A store may commit a run leased to its driver without waiting for
    /// the disk (SQLite under `Sync::Full` does): the driver's next synced append makes it
    /// durable, and the driver appends with a sync before any effect not safe to repeat.
    async fn create(
        &self,
        run: &NewRun,
        events: &[Event],
        wake: Wake,
        driver: Option<&Driver>,
    ) -> Result<Created, Error>;

    /// Appends `events` if `lease` still holds and the journal holds exactly `expected` events;
    /// returns the new count. Refused whole with [`Error::LeaseLost`] when the lease was
    /// released or taken, [`Error::SequenceConflict`] when the journal moved. Appends from
    /// concurrent writers may share one durable commit.
    async fn append(
        &self,
        lease: &Lease,
        expected: u64,
        events: &[Event],
        wake: Wake,
    ) -> Result<u64, Error> {
        self.append_with(lease, expected, events, wake, &[]).await
    }

    /// [`Journal::append`], queueing `notifications` in the outbox in the same transaction:
    /// both are written, or neither.
    async fn append_with(
        &self,
        lease: &Lease,
        expected: u64,
        events: &[Event],
        wake: Wake,
        notifications: &[crate::Notification],
    ) -> Result<u64, Error>;

    /// Appends human decisions (and nothing else: [`Error::NotADecision`]) if the journal
    /// holds exactly `expected` events, whoever holds the lease, and sets the run's wake time
    /// in the same write. A driver holding the lease finds the journal moved and takes the
    /// decision in.
    async fn decide(
        &self,
        run_id: &str,
        expected: u64,
        events: &[Event],
        wake: Wake,
    ) -> Result<u64, Error>;

    /// Every event of a run, in order.
    async fn load(&self, run_id: &str) -> Result<Vec<Record>, Error> {
        self.load_after(run_id, 0).await
    }

    /// The events of a run after sequence `after`, in order ([`Error::RunNotFound`] if the
    /// run does not exist; an empty list if it has no event after `after`).
    async fn load_after(&self, run_id: &str, after: u64) -> Result<Vec<Record>, Error>;

    /// Runs matching the filter, newest first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<RunSummary>, Error>;

    /// Leases up to `limit` runnable runs whose lease is absent or expired to `worker` for
    /// `ttl`; a run is given to exactly one of many concurrent claimers. Runs whose lease
    /// expired (their driver died) come first, then the rest by wake time.
    async fn claim(&self, worker: &str, ttl: Duration, limit: usize) -> Result<Vec<Lease>, Error>;

    /// Leases one run to `owner` for `ttl`, runnable or not (a human resuming it), unless
    /// someone else holds a live lease on it ([`Error::Held`], naming them and until when).
    async fn claim_run(&self, run_id: &str, owner: &str, ttl: Duration) -> Result<Lease, Error>;

    /// Leases one run to `owner` for `ttl` although `dead` still holds a live lease on it:
    /// for a driver known to be gone (its process on this host no longer exists), so its run
    /// need not wait for the lease to run out. [`Error::Held`] if someone other than `dead`
    /// holds it.
    async fn take_over(
        &self,
        run_id: &str,
        dead: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, Error>;

    /// Extends a lease to `ttl` from now; [`Error::LeaseLost`] if another worker took the run
    /// or the lease was released.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error>;

    /// Gives a run back so any driver can claim it. `seen` is the journal length the driver
    /// last knew and `wake` the wake time its fold computed then: if the journal is still at
    /// `seen`, the run's wake time becomes `wake` (a run woken for nothing goes back to
    /// waiting); if someone appended meanwhile, their write's wake time stands. A no-op if the
    /// lease is already lost.
    async fn release(&self, lease: &Lease, seen: u64, wake: Wake) -> Result<(), Error>;

    /// Waits up to `timeout`, returning early when a run may have become claimable since this
    /// handle's latest [`Journal::claim`] began (a worker loops: claim, and wait when nothing
    /// came). Early returns without work are allowed; callers claim after it either way.
    async fn wait_for_work(&self, timeout: Duration);

    /// Keeps the definition of an agent version (spec, prompt, tools: what the engine needs to
    /// run it again), once: a second put of the same version changes nothing.
    async fn put_version(&self, version: &str, agent: &str, definition: &str) -> Result<(), Error>;

    /// The definition kept for an agent version, if any.
    async fn get_version(&self, version: &str) -> Result<Option<String>, Error>;

    /// Keeps an API token's record; [`Error::TokenExists`] if the name is taken by a token not
    /// revoked.
    async fn put_token(&self, token: &TokenRecord) -> Result<(), Error>;

    /// Every token record, revoked ones too, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, Error>;

    /// Revokes the live token called `name`; false when there is none.
    async fn revoke_token(&self, name: &str) -> Result<bool, Error>;

    /// The live token whose hash is `hash`.
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, Error>;

    /// Deletes the runs of `run_ids` that have ended (completed, failed or cancelled), with
    /// their events and tags, in one transaction; a run that has not ended (running, waiting,
    /// paused) or does not exist is left alone, whatever the caller believed.
    async fn purge(&self, run_ids: &[String]) -> Result<Purged, Error>;

    /// Restores a run exactly as archived: its id, status, creation time, and every event with
    /// its sequence and time; nobody holds it and it wakes never (an archived run has ended).
    /// [`Error::RunExists`] if the id is taken; nothing is written then.
    async fn import(&self, run: &Restored) -> Result<(), Error>;

    /// The clock this journal stamps events and leases with; drivers read time from it too.
    fn clock(&self) -> std::sync::Arc<dyn crate::Clock> {
        crate::clock::system()
    }
}
