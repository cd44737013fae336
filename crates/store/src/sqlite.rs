//! The embedded journal: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread that takes every append ready at that moment
//! and commits them in one transaction, so concurrent runs share one fsync (group commit).
//! Each append sits in its own savepoint: a refused append does not disturb its neighbours.
//! Several processes may share the file; `BEGIN IMMEDIATE` serializes their writers and the
//! expected-sequence check runs inside the transaction, so there is no read-then-write race.
//! Lease operations (claim, renew, release, wake) are writes like appends: they go through the
//! same thread and transaction, so a claim sees every claim committed before it, in this
//! process or another.

mod migrate;
mod outbox;
mod rate;
mod schedule;
mod snapshot;

pub(crate) use migrate::VERSION as SCHEMA_VERSION;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chassis_core::{Event, RunStatus, Wake};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, oneshot};

use crate::clock::Clock;
use crate::journal::{
    Created, Driver, Journal, Lease, ListFilter, NewRun, Record, RunSummary, TokenRecord,
};
use crate::lease::{fresh_token, token_to_sql, ttl_ms};
use crate::{Error, encode};

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sync {
    /// fsync on every commit: nothing journaled is lost even on power loss.
    #[default]
    Full,
    /// No fsync on commit: survives a process crash, not a power loss (benchmarks, tests).
    Normal,
}

/// Most writes one commit takes; bounds the latency a batch adds.
const MAX_BATCH: usize = 1024;

/// How long the writer gathers writes for one commit at most, once several runs are writing
/// at once (see `write_loop`). A step's append waits at most this much longer, and the engine
/// overlaps it with the next model call; in exchange the fixed cost of a commit (the fsync,
/// the WAL frames of shared pages, the transaction) is shared by every write that arrived
/// meanwhile.
/// BENCHMARKS.md has what the window buys at each concurrency.
const GATHER: Duration = Duration::from_millis(3);

/// Gathering stops after a slice of this length that brought no write.
const GATHER_SLICE: Duration = Duration::from_micros(200);

/// The most runs whose last sequence the writer remembers (`Known`).
const KNOWN_MAX: usize = 100_000;

/// Who writes an append.
#[derive(Clone, Copy, Debug)]
enum Writer {
    /// The run's driver: its lease's token must still be the run's.
    Lease(u64),
    /// A human decision: no lease needed (the events were checked to be decisions).
    Human,
}

/// A write prepared off the writer thread: events already encoded.
enum Op {
    /// Creates a run, leased to `driver` (owner, ttl in ms) if given.
    Create {
        run_id: String,
        agent: String,
        key: Option<String>,
        facts: crate::StartFacts,
        encoded: Vec<String>,
        status: Option<RunStatus>,
        wake: Wake,
        driver: Option<(String, i64)>,
    },
    /// Appends after event `expected`.
    Append {
        run_id: String,
        expected: u64,
        encoded: Vec<String>,
        status: Option<RunStatus>,
        wake: Wake,
        writer: Writer,
        /// Notifications queued in the same transaction.
        notes: Vec<crate::Notification>,
    },
    Claim {
        worker: String,
        ttl_ms: i64,
        limit: usize,
    },
    ClaimRun {
        run_id: String,
        owner: String,
        ttl_ms: i64,
        /// A holder known to be dead, whose live lease may be taken.
        dead: Option<String>,
    },
    Renew {
        lease: Lease,
        ttl_ms: i64,
    },
    Release {
        lease: Lease,
        seen: u64,
        wake: Wake,
    },
    PutVersion {
        version: String,
        agent: String,
        definition: String,
    },
    PutToken(TokenRecord),
    RevokeToken(String),
    /// Leases due deliveries.
    ClaimDeliveries {
        owner: String,
        ttl_ms: i64,
        limit: usize,
    },
    /// Books a delivery attempt.
    RecordAttempt {
        delivery: Box<crate::Delivery>,
        attempt: crate::Attempt,
    },
    /// Any other write, run inside the writer's transaction (`sqlite/schedule.rs`).
    Exec(Write),
}

/// A write run inside the writer's transaction, given the time.
type Write = Box<dyn Fn(&Connection, i64) -> rusqlite::Result<Done> + Send>;

impl Op {
    /// Whether a power loss may take this write back without harm, so its commit need not wait
    /// for the disk. A process crash loses none of it either way (the WAL is in the OS's
    /// cache), and the next synced commit makes it durable with everything before it.
    ///
    /// - A lease's release: a lost one leaves a lease that lapses after its ttl, and the run's
    ///   status and wake time were written durably by its last append.
    /// - The creation of a run leased to the driver that creates it (`Engine::start`), which
    ///   drives it at once: nothing outside the process has its id yet (it is not queued, and
    ///   no answer names it), and the driver's first synced append makes it durable before any
    ///   effect that is not safe to repeat (a tool that is not read-only waits for a synced
    ///   write of its intent). A power loss before that takes back a run nobody could know of,
    ///   with at most its first model call and read-only tool calls made. A run created for
    ///   others to drive (`submit`, `POST /v1/runs`: no driver) syncs before its id is handed
    ///   out, as before.
    fn may_wait_for_the_next_sync(&self) -> bool {
        matches!(
            self,
            Op::Release { .. }
                | Op::Create {
                    driver: Some(_),
                    ..
                }
        )
    }

    /// The run an append or a create writes, with what it leaves the run at.
    fn appended(&self) -> Option<(&str, Option<RunStatus>)> {
        match self {
            Op::Create { run_id, status, .. } | Op::Append { run_id, status, .. } => {
                Some((run_id, *status))
            }
            Op::Claim { .. }
            | Op::ClaimRun { .. }
            | Op::Renew { .. }
            | Op::Release { .. }
            | Op::PutVersion { .. }
            | Op::PutToken(_)
            | Op::RevokeToken(_)
            | Op::ClaimDeliveries { .. }
            | Op::RecordAttempt { .. }
            | Op::Exec(_) => None,
        }
    }
}

/// What a write produced.
enum Done {
    Seq(u64),
    Created(u64, Option<Lease>),
    Leases(Vec<Lease>),
    Lease(Lease),
    Nothing,
    Changed(bool),
    Deliveries(Vec<crate::Delivery>),
    Schedules(Vec<crate::Schedule>),
    /// Microseconds to wait (0: go).
    Waits(i64),
}

/// A write and where its answer goes once it is durable.
struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Done, Error>>,
}

/// The SQLite journal.
pub struct SqliteJournal {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Request>>>,
    /// The writer's thread, joined on drop (see there).
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// One connection for reads, taken in turn before a blocking thread is: a thousand
    /// concurrent readers (stream polls) wait here, not as a thousand blocked threads.
    /// Opened at the first read: a process that only writes (`chassis run` of a new run) never
    /// pays for a second connection and its reading of the schema.
    reader: Arc<tokio::sync::Mutex<Option<Connection>>>,
    /// How the reader connection is opened.
    sync: Sync,
    clock: Arc<dyn Clock>,
    /// Told when this process makes a run runnable now (a queued run, a decision, a run given
    /// back), so a worker on this journal claims it at once instead of at its next poll.
    work: Notify,
    /// Opened by [`SqliteJournal::open_read_only`]: writes are refused as such.
    read_only: bool,
}

impl SqliteJournal {
    /// Opens (creating if needed) the journal at `path`, creating parent directories, and
    /// migrates its schema; a file from a newer chassis is refused untouched
    /// ([`Error::SchemaTooNew`]).
    pub fn open(path: &Path, sync: Sync) -> Result<SqliteJournal, Error> {
        SqliteJournal::open_with_clock(path, sync, crate::clock::system())
    }

    /// [`SqliteJournal::open`], reading the time from `clock` (simulated time in tests).
    pub fn open_with_clock(
        path: &Path,
        sync: Sync,
        clock: Arc<dyn Clock>,
    ) -> Result<SqliteJournal, Error> {
        let db_err = |e: &dyn std::fmt::Display| Error::Database {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| db_err(&e))?;
        }
        let mut writer = Connection::open(path).map_err(|e| db_err(&e))?;
        writer
            .busy_timeout(Duration::from_secs(30))
            .map_err(|e| db_err(&e))?;
        let found = migrate::check(&writer)?;
        migrate::size_new_file(&writer).map_err(|e| db_err(&e))?;
        configure(&writer, sync).map_err(|e| db_err(&e))?;
        migrate::migrate(&mut writer, found)?;

        let (tx, rx) = mpsc::channel::<Request>();
        let thread_path = path.display().to_string();
        let thread_clock = Arc::clone(&clock);
        let writer_thread = std::thread::Builder::new()
            .name("chassis-journal".into())
            .spawn(move || write_loop(writer, rx, &thread_path, sync, thread_clock.as_ref()))
            .map_err(|e| db_err(&e))?;
        Ok(SqliteJournal {
            path: path.to_path_buf(),
            writer: Mutex::new(Some(tx)),
            writer_thread: Some(writer_thread),
            reader: Arc::new(tokio::sync::Mutex::new(None)),
            sync,
            clock,
            work: Notify::new(),
            read_only: false,
        })
    }

    /// Opens the journal at `path` for reading only: nothing is created, migrated or written
    /// (every write answers [`Error::ReadOnly`]). Works on a file or directory the process may
    /// not write: when SQLite cannot make its shared-memory file beside a WAL journal there, the
    /// file is opened as immutable, which is right while nobody writes it (nobody here can).
    /// A file at an older schema is refused, naming how to upgrade it.
    pub fn open_read_only(path: &Path) -> Result<SqliteJournal, Error> {
        let db_err = |e: &dyn std::fmt::Display| Error::Database {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if !path.is_file() {
            return Err(db_err(&"no such file"));
        }
        let reader = match read_only_connection(path, false) {
            Ok(conn) => conn,
            Err(_) => read_only_connection(path, true).map_err(|e| db_err(&e))?,
        };
        let found = migrate::check(&reader)?;
        if found != migrate::VERSION {
            return Err(db_err(&format!(
                "schema version {found} is older than this chassis reads ({}); run a command that \
                 writes (`chassis db migrate`) once to upgrade it",
                migrate::VERSION
            )));
        }
        Ok(SqliteJournal {
            path: path.to_path_buf(),
            writer: Mutex::new(None),
            writer_thread: None,
            reader: Arc::new(tokio::sync::Mutex::new(Some(reader))),
            sync: Sync::Full,
            clock: crate::clock::system(),
            work: Notify::new(),
            read_only: true,
        })
    }

    /// Wakes a worker waiting on this journal when `wake` makes a run runnable now. One permit
    /// is kept when nobody waits, so work made between a worker's last claim and its wait is
    /// not left for the next poll.
    fn work_for_now(&self, wake: Wake) {
        let now = self.clock.now_ms();
        if match wake {
            Wake::Now => true,
            Wake::At(at) => at <= now,
            Wake::Never => false,
        } {
            self.work.notify_one();
        }
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn submit(&self, op: Op) -> Result<Done, Error> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.path.display().to_string(),
            });
        }
        let (reply, done) = oneshot::channel();
        {
            let writer = self.writer.lock().map_err(|_| Error::Closed)?;
            writer
                .as_ref()
                .ok_or(Error::Closed)?
                .send(Request { op, reply })
                .map_err(|_| Error::Closed)?;
        }
        done.await.map_err(|_| Error::Closed)?
    }

    async fn append_op(
        &self,
        run_id: &str,
        expected: u64,
        events: &[Event],
        wake: Wake,
        writer: Writer,
        notes: &[crate::Notification],
    ) -> Result<u64, Error> {
        let op = Op::Append {
            run_id: run_id.to_string(),
            expected,
            encoded: events.iter().map(encode).collect::<Result<Vec<_>, _>>()?,
            status: events.iter().rev().find_map(RunStatus::after),
            wake,
            writer,
            notes: notes.to_vec(),
        };
        match self.submit(op).await? {
            Done::Seq(seq) => Ok(seq),
            _ => Err(Error::Closed),
        }
    }

    /// Every token record, or the live one with `hash`.
    async fn read_tokens(&self, hash: Option<String>) -> Result<Vec<TokenRecord>, Error> {
        let path = self.path.display().to_string();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT name, role, hash, created_ms, revoked_ms FROM tokens
                     WHERE ?1 IS NULL OR (hash = ?1 AND revoked_ms IS NULL)
                     ORDER BY created_ms, rowid",
                )
                .and_then(|mut stmt| {
                    stmt.query_map(params![hash], |row| {
                        Ok(TokenRecord {
                            name: row.get(0)?,
                            role: row.get(1)?,
                            hash: row.get(2)?,
                            created_ms: row.get(3)?,
                            revoked_ms: row.get(4)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()
                });
            rows.map_err(|e| Error::Database {
                path,
                message: e.to_string(),
            })
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let mut conn = Arc::clone(&self.reader).lock_owned().await;
        let path = self.path.clone();
        let sync = self.sync;
        tokio::task::spawn_blocking(move || {
            let conn = match &mut *conn {
                Some(conn) => conn,
                empty => empty.insert(connect(&path, sync).map_err(|e| Error::Database {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?),
            };
            f(conn)
        })
        .await
        .map_err(|_| Error::Closed)?
    }
}

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        // Dropping the sender ends the writer thread once it has answered what it holds.
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
        // Waiting for it means nothing queued is lost to a process that exits next, and the
        // connection is closed, not abandoned: the last connection to close folds the WAL into
        // the database file and removes it. Abandoned, the WAL stays (growing to about 2 MB
        // before SQLite checkpoints it) and the next process to open the journal reads it all
        // back and checks every frame before its first statement.
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

/// A connection that cannot write; `immutable` also skips locking and the shared-memory file.
/// The first read happens here, so a file SQLite cannot open read-only fails now.
fn read_only_connection(path: &Path, immutable: bool) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if immutable {
        let mut uri = url_path(path);
        uri.insert_str(0, "file:");
        uri.push_str("?mode=ro&immutable=1");
        Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)?
    } else {
        Connection::open_with_flags(path, flags)?
    };
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    })?;
    Ok(conn)
}

/// `path` with the characters a `file:` URI reserves escaped.
fn url_path(path: &Path) -> String {
    let text = path.display().to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn connect(path: &Path, sync: Sync) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    configure(&conn, sync)?;
    Ok(conn)
}

fn configure(conn: &Connection, sync: Sync) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let level = match sync {
        Sync::Full => "FULL",
        Sync::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", level)?;
    Ok(())
}

/// Each run's last sequence number as this writer committed it, so that an append need not
/// look it up in the events B-tree. It holds only while no other connection wrote to the file:
/// `PRAGMA data_version`, read inside every write transaction, changes when one did, and then
/// the memo is dropped. Runs leave it when they end.
#[derive(Default)]
struct Known {
    data_version: Option<i64>,
    last_seq: std::collections::HashMap<String, u64>,
}

impl Known {
    /// Called inside the write transaction, before any write.
    fn check(&mut self, conn: &Connection) {
        let version = conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, i64>(0)))
            .ok();
        if version.is_none() || version != self.data_version {
            self.last_seq.clear();
        }
        self.data_version = version;
    }

    /// Records what a write that succeeded did to its run. Only executing runs are kept: one
    /// that stops (waiting, paused, ended) leaves, and a memo grown past `KNOWN_MAX` (runs
    /// abandoned mid-step, say) starts over, so it stays bounded by the runs in flight.
    fn note(&mut self, op: &Op, done: &Done) {
        let seq = match done {
            Done::Seq(seq) | Done::Created(seq, _) => *seq,
            Done::Leases(_)
            | Done::Lease(_)
            | Done::Nothing
            | Done::Changed(_)
            | Done::Deliveries(_)
            | Done::Schedules(_)
            | Done::Waits(_) => return,
        };
        if let Some((run_id, status)) = op.appended() {
            if status.is_some_and(|s| s != RunStatus::Running) {
                self.last_seq.remove(run_id);
            } else {
                if self.last_seq.len() >= KNOWN_MAX && !self.last_seq.contains_key(run_id) {
                    self.last_seq.clear();
                }
                self.last_seq.insert(run_id.to_string(), seq);
            }
        }
    }

    /// Forgets everything: the transaction did not commit.
    fn forget(&mut self) {
        self.last_seq.clear();
        self.data_version = None;
    }
}

fn write_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Request>,
    path: &str,
    sync: Sync,
    clock: &dyn Clock,
) {
    let mut last_batch = 0;
    let mut known = Known::default();
    // Whether the connection commits without an fsync now (a batch of lease releases alone).
    let mut unsynced = false;
    while let Ok(first) = rx.recv() {
        let mut requests = vec![first];
        drain(&rx, &mut requests);
        // Writes arriving together mean several runs are writing: give the others a moment
        // to arrive, so they share this commit's fsync and fixed cost. A lone writer (one run
        // at a time) never waits, and the wait ends as soon as writes stop arriving.
        if last_batch > 1 || requests.len() > 1 {
            gather(&rx, &mut requests);
        }
        last_batch = requests.len();
        let (ops, replies): (Vec<Op>, Vec<_>) =
            requests.into_iter().map(|r| (r.op, r.reply)).unzip();
        let now = i64::try_from(clock.now_ms()).unwrap_or(i64::MAX);
        // A run's lease release is one more commit after its last append: under `Sync::Full`
        // it would be one more fsync per run (0.1 per step of a 10-step run). A batch of
        // releases alone commits without one; anything else waits for the disk as always, and
        // never commits while the connection could not be set back to syncing.
        let relax = sync == Sync::Full && ops.iter().all(Op::may_wait_for_the_next_sync);
        if relax != unsynced {
            let level = if relax { "NORMAL" } else { "FULL" };
            #[cfg(test)]
            tests::CONTROL_LOG.with(|log| {
                log.borrow_mut()
                    .push(format!("PRAGMA synchronous = {level}"))
            });
            match conn.pragma_update(None, "synchronous", level) {
                Ok(()) => unsynced = relax,
                Err(e) if unsynced => {
                    let message = format!(
                        "the journal's writer could not go back to synchronous = FULL ({e});                          nothing was committed, try again"
                    );
                    for reply in replies {
                        let _ = reply.send(Err(Error::Database {
                            path: path.to_string(),
                            message: message.clone(),
                        }));
                    }
                    continue;
                }
                // Still syncing: the releases only cost their fsync.
                Err(_) => {}
            }
        }
        let results = commit(&mut conn, now, &ops, path, &mut known);
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have gone away (cancelled); its write is still durable.
            let _ = reply.send(result);
        }
        if reset_if_wedged(&mut conn, path, sync, &mut known) {
            // A new connection syncs as configured.
            unsynced = false;
        }
    }
}

/// Opens the writer's connection anew when a failed `ROLLBACK` left it inside a transaction:
/// every later `BEGIN` would fail on it, wedging the journal. Closing the old connection
/// rolls back whatever it still held. True when the connection was opened anew.
fn reset_if_wedged(conn: &mut Connection, path: &str, sync: Sync, known: &mut Known) -> bool {
    if conn.is_autocommit() {
        return false;
    }
    known.forget();
    match connect(Path::new(path), sync) {
        Ok(fresh) => {
            tracing::warn!(
                path,
                "the journal's writer connection was left inside a transaction; it was opened anew"
            );
            *conn = fresh;
            true
        }
        Err(e) => {
            // Keep the old one: the next BEGIN reports the state, and the next batch tries again.
            let _ = control(conn, "ROLLBACK");
            tracing::error!(path, error = %e, "the journal's writer connection is stuck in a transaction and cannot be opened anew");
            false
        }
    }
}

/// Waits for more writes in slices of [`GATHER_SLICE`], while each slice brings some, for at
/// most [`GATHER`] in all.
fn gather(rx: &mpsc::Receiver<Request>, requests: &mut Vec<Request>) {
    let began = Instant::now();
    while requests.len() < MAX_BATCH && began.elapsed() + GATHER_SLICE <= GATHER {
        #[cfg(test)]
        tests::CONTROL_LOG.with(|log| log.borrow_mut().push("(gather)".into()));
        std::thread::sleep(GATHER_SLICE);
        let before = requests.len();
        drain(rx, requests);
        if requests.len() == before {
            break;
        }
    }
}

/// Takes every request already waiting, up to [`MAX_BATCH`].
fn drain(rx: &mpsc::Receiver<Request>, requests: &mut Vec<Request>) {
    while requests.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(request) => requests.push(request),
            Err(_) => break,
        }
    }
}

/// Runs one of the transaction-control statements, prepared once per connection (rusqlite's
/// `Transaction` and `Savepoint` parse theirs again on every use).
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    #[cfg(test)]
    tests::CONTROL_LOG.with(|log| log.borrow_mut().push(sql.to_string()));
    #[cfg(test)]
    if tests::FAIL_CONTROL.with(|fail| fail.borrow().contains(&sql)) {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            Some(format!("{sql} failed (injected)")),
        ));
    }
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Commits every write it can in one transaction; returns one result per write.
fn commit(
    conn: &mut Connection,
    now: i64,
    ops: &[Op],
    path: &str,
    known: &mut Known,
) -> Vec<Result<Done, Error>> {
    let db_err = |e: rusqlite::Error| Error::Database {
        path: path.to_string(),
        message: e.to_string(),
    };
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        return ops.iter().map(|_| Err(db_err(clone_err(&e)))).collect();
    }
    known.check(conn);
    let results: Vec<Result<Done, Error>> = if let [op] = ops {
        // A write alone needs no savepoint: if it is refused, the whole transaction goes.
        match apply(conn, op, now, known) {
            Ok(done) => {
                known.note(op, &done);
                vec![Ok(done)]
            }
            Err(e) => {
                let _ = control(conn, "ROLLBACK");
                return vec![Err(e.into_error(path))];
            }
        }
    } else {
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            // Each write in its own savepoint: a refused one leaves its neighbours be.
            if let Err(e) = control(conn, "SAVEPOINT op") {
                results.push(Err(db_err(e)));
                continue;
            }
            let refused = match apply(conn, op, now, known) {
                Ok(done) => match control(conn, "RELEASE op") {
                    Ok(()) => {
                        known.note(op, &done);
                        results.push(Ok(done));
                        continue;
                    }
                    Err(e) => db_err(e),
                },
                Err(e) => e.into_error(path),
            };
            if let Err(e) =
                control(conn, "ROLLBACK TO op").and_then(|()| control(conn, "RELEASE op"))
            {
                // The refused write may be half in the transaction: committing would keep its
                // rows. The whole batch goes, and every write in it is told so.
                let _ = control(conn, "ROLLBACK");
                known.forget();
                let message = format!(
                    "a refused write could not be undone ({e}), so no write of its batch was \
                     committed; try again"
                );
                return ops
                    .iter()
                    .map(|_| {
                        Err(Error::Database {
                            path: path.to_string(),
                            message: message.clone(),
                        })
                    })
                    .collect();
            }
            results.push(Err(refused));
        }
        results
    };
    if let Err(e) = control(conn, "COMMIT") {
        let _ = control(conn, "ROLLBACK");
        known.forget();
        return ops.iter().map(|_| Err(db_err(clone_err(&e)))).collect();
    }
    results
}

fn clone_err(e: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(e.to_string()),
    )
}

/// An append's failure before it is tied to the database path.
enum ApplyError {
    Journal(Error),
    Sql(rusqlite::Error),
}

impl ApplyError {
    fn into_error(self, path: &str) -> Error {
        match self {
            ApplyError::Journal(e) => e,
            ApplyError::Sql(e) => Error::Database {
                path: path.to_string(),
                message: e.to_string(),
            },
        }
    }
}

impl From<rusqlite::Error> for ApplyError {
    fn from(e: rusqlite::Error) -> Self {
        ApplyError::Sql(e)
    }
}

fn apply(conn: &Connection, op: &Op, now: i64, known: &Known) -> Result<Done, ApplyError> {
    match op {
        Op::Create {
            run_id,
            agent,
            key,
            facts,
            encoded,
            status,
            wake,
            driver,
        } => create(
            conn,
            run_id,
            agent,
            key.as_deref(),
            facts,
            encoded,
            *status,
            *wake,
            driver,
            now,
        ),
        Op::PutVersion {
            version,
            agent,
            definition,
        } => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO agent_versions (version, agent, created_ms, definition)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![version, agent, now, definition])?;
            Ok(Done::Nothing)
        }
        Op::PutToken(token) => {
            let taken = conn
                .prepare_cached("SELECT 1 FROM tokens WHERE name = ?1 AND revoked_ms IS NULL")?
                .exists(params![token.name])?;
            if taken {
                return Err(ApplyError::Journal(Error::TokenExists(token.name.clone())));
            }
            conn.prepare_cached(
                "INSERT INTO tokens (name, role, hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                token.name,
                token.role,
                token.hash,
                token.created_ms
            ])?;
            Ok(Done::Nothing)
        }
        Op::RevokeToken(name) => {
            let changed = conn
                .prepare_cached(
                    "UPDATE tokens SET revoked_ms = ?2 WHERE name = ?1 AND revoked_ms IS NULL",
                )?
                .execute(params![name, now])?;
            Ok(Done::Changed(changed > 0))
        }
        Op::Append {
            run_id,
            expected,
            encoded,
            status,
            wake,
            writer,
            notes,
        } => {
            let seq = append(
                conn,
                AppendArgs {
                    run_id,
                    expected: *expected,
                    encoded,
                    status: *status,
                    wake: *wake,
                    writer: *writer,
                    known_seq: known.last_seq.get(run_id.as_str()).copied(),
                },
                now,
            )?;
            outbox::queue(conn, notes, now)?;
            Ok(Done::Seq(seq))
        }
        Op::ClaimDeliveries {
            owner,
            ttl_ms,
            limit,
        } => outbox::claim(conn, owner, *ttl_ms, *limit, now)
            .map(Done::Deliveries)
            .map_err(ApplyError::Sql),
        Op::RecordAttempt { delivery, attempt } => outbox::record(conn, delivery, attempt, now)
            .map(Done::Changed)
            .map_err(ApplyError::Sql),
        Op::Exec(write) => write(conn, now).map_err(ApplyError::Sql),
        Op::Claim {
            worker,
            ttl_ms,
            limit,
        } => claim(conn, worker, *ttl_ms, *limit, now).map(Done::Leases),
        Op::ClaimRun {
            run_id,
            owner,
            ttl_ms,
            dead,
        } => claim_run(conn, run_id, owner, *ttl_ms, dead.as_deref(), now).map(Done::Lease),
        Op::Renew { lease, ttl_ms } => {
            let until_ms = now.saturating_add(*ttl_ms);
            let changed = conn
                .prepare_cached(
                    "UPDATE runs SET lease_until_ms = ?3 WHERE run_id = ?1 AND lease_token = ?2",
                )?
                .execute(params![lease.run_id, token_to_sql(lease.token), until_ms])?;
            if changed == 0 {
                return Err(lease_lost(&lease.run_id));
            }
            Ok(Done::Lease(Lease {
                until_ms,
                ..lease.clone()
            }))
        }
        Op::Release { lease, seen, wake } => {
            let Some(RunRow {
                run_key,
                lease_token: Some(token),
                ..
            }) = run_row(conn, &lease.run_id)?
            else {
                return Ok(Done::Nothing);
            };
            if token != token_to_sql(lease.token) {
                return Ok(Done::Nothing);
            }
            // The driver's wake time stands only if nobody wrote since it last looked;
            // otherwise the later write's wake time (a human's decision, say) does.
            let unchanged = last_seq(conn, run_key)? == *seen;
            conn.prepare_cached(
                "UPDATE runs SET lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL,
                     wake_at_ms = CASE WHEN ?3 THEN ?4 ELSE wake_at_ms END
                 WHERE run_id = ?1 AND lease_token = ?2",
            )?
            .execute(params![
                lease.run_id,
                token_to_sql(lease.token),
                unchanged,
                wake_at(*wake, now)
            ])?;
            Ok(Done::Nothing)
        }
    }
}

/// A wake time as stored: the time, or NULL for never.
fn wake_at(wake: Wake, now: i64) -> Option<i64> {
    match wake {
        Wake::Now => Some(now),
        Wake::At(at) => Some(i64::try_from(at).unwrap_or(i64::MAX)),
        Wake::Never => None,
    }
}

fn lease_lost(run_id: &str) -> ApplyError {
    ApplyError::Journal(Error::LeaseLost {
        run_id: run_id.to_string(),
    })
}

fn run_exists(conn: &Connection, run_id: &str) -> rusqlite::Result<bool> {
    Ok(run_row(conn, run_id)?.is_some())
}

/// What a write checks of a run's row.
struct RunRow {
    run_key: i64,
    lease_token: Option<i64>,
    wake_at_ms: Option<i64>,
}

/// The run's row, if it has one. Every write that looks a run up by its id asks this one
/// statement, so a process prepares (parses and plans) it once, not once per kind of write.
fn run_row(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<RunRow>> {
    conn.prepare_cached("SELECT run_key, lease_token, wake_at_ms FROM runs WHERE run_id = ?1")?
        .query_row(params![run_id], |row| {
            Ok(RunRow {
                run_key: row.get(0)?,
                lease_token: row.get(1)?,
                wake_at_ms: row.get(2)?,
            })
        })
        .optional()
}

/// The most events a run holds: its sequence numbers are the low 32 bits of its events' ids.
const MAX_SEQ: u64 = 0xFFFF_FFFF;

/// The largest run key: `run_key << 32` must fit in an `i64`.
const MAX_RUN_KEY: i64 = 0x7FFF_FFFF;

/// An event's id (its rowid): the run's key above its sequence number (`sqlite/migrate.rs`
/// has why). `seq` is at most [`MAX_SEQ`], checked where events are written.
fn event_id(run_key: i64, seq: u64) -> i64 {
    (run_key << 32) | i64::try_from(seq & MAX_SEQ).unwrap_or(0)
}

/// A write refused because it would not fit the events' keys; the transaction rolls it back.
fn out_of_keys(message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
        Some(message),
    )
}

/// The key of the `runs` row just inserted, refused if it does not fit an event id.
fn new_run_key(conn: &Connection, run_id: &str) -> rusqlite::Result<i64> {
    let key = conn.last_insert_rowid();
    if !(1..=MAX_RUN_KEY).contains(&key) {
        return Err(out_of_keys(format!(
            "run {run_id} would get run key {key}, outside 1..={MAX_RUN_KEY}: the journal's \
             run keys are used up; purge runs or start a new journal file"
        )));
    }
    Ok(key)
}

/// The sequence number of the run's last event (0 when it has none).
fn last_seq(conn: &Connection, run_key: i64) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT id & 4294967295 FROM events WHERE id BETWEEN ?1 AND ?2 ORDER BY id DESC LIMIT 1",
    )?
    .query_row(
        params![event_id(run_key, 1), event_id(run_key, MAX_SEQ)],
        |row| row.get(0),
    )
    .optional()
    .map(Option::unwrap_or_default)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one creation's fields, unpacked once"
)]
fn create(
    conn: &Connection,
    run_id: &str,
    agent: &str,
    key: Option<&str>,
    facts: &crate::StartFacts,
    encoded: &[String],
    status: Option<RunStatus>,
    wake: Wake,
    driver: &Option<(String, i64)>,
    now: i64,
) -> Result<Done, ApplyError> {
    if run_exists(conn, run_id)? {
        return Err(ApplyError::Journal(Error::RunExists(run_id.to_string())));
    }
    if let Some(key) = key {
        let used: Option<String> = conn
            .prepare_cached("SELECT run_id FROM runs WHERE idempotency_key = ?1")?
            .query_row(params![key], |row| row.get(0))
            .optional()?;
        if let Some(used) = used {
            return Err(ApplyError::Journal(Error::KeyUsed {
                key: key.to_string(),
                run_id: used,
            }));
        }
    }
    let lease = driver.as_ref().map(|(owner, ttl_ms)| Lease {
        run_id: run_id.to_string(),
        worker: owner.clone(),
        token: fresh_token(),
        until_ms: now.saturating_add(*ttl_ms),
    });
    conn.prepare_cached(
        "INSERT INTO runs (run_id, agent, status, created_ms, wake_at_ms, idempotency_key,
                           lease_owner, lease_token, lease_until_ms, version, version_label)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        run_id,
        agent,
        status.unwrap_or(RunStatus::Running).as_str(),
        now,
        wake_at(wake, now),
        key,
        lease.as_ref().map(|l| l.worker.clone()),
        lease.as_ref().map(|l| token_to_sql(l.token)),
        lease.as_ref().map(|l| l.until_ms),
        facts.version,
        facts.label,
    ])?;
    let run_key = new_run_key(conn, run_id)?;
    for (key, value) in &facts.tags {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO run_tags (run_id, key, value) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![run_id, key, value])?;
    }
    let seq = insert_events(conn, run_id, run_key, 0, now, encoded)?;
    Ok(Done::Created(seq, lease))
}

/// One append's fields.
struct AppendArgs<'a> {
    run_id: &'a str,
    expected: u64,
    encoded: &'a [String],
    status: Option<RunStatus>,
    wake: Wake,
    writer: Writer,
    known_seq: Option<u64>,
}

fn append(conn: &Connection, args: AppendArgs<'_>, now: i64) -> Result<u64, ApplyError> {
    let AppendArgs {
        run_id,
        expected,
        encoded,
        status,
        wake,
        writer,
        known_seq,
    } = args;
    let Some(RunRow {
        run_key,
        lease_token: held,
        wake_at_ms: woken_at,
    }) = run_row(conn, run_id)?
    else {
        return Err(ApplyError::Journal(Error::RunNotFound(run_id.to_string())));
    };
    if let Writer::Lease(token) = writer
        && held != Some(token_to_sql(token))
    {
        return Err(lease_lost(run_id));
    }
    let actual = match known_seq {
        Some(seq) => seq,
        None => last_seq(conn, run_key)?,
    };
    if expected != actual {
        return Err(ApplyError::Journal(Error::SequenceConflict {
            run_id: run_id.to_string(),
            expected,
            actual,
        }));
    }
    let seq = insert_events(conn, run_id, run_key, expected, now, encoded)?;
    // The runs row changes only with the status or the wake time: a step of an executing run
    // (runnable since it started) writes only event pages.
    let wake_at = match (wake, woken_at) {
        (Wake::Now, Some(at)) if at <= now => Some(at),
        _ => wake_at(wake, now),
    };
    if status.is_some() || wake_at != woken_at {
        conn.prepare_cached(
            "UPDATE runs SET status = coalesce(?2, status), wake_at_ms = ?3 WHERE run_id = ?1",
        )?
        .execute(params![run_id, status.map(RunStatus::as_str), wake_at])?;
    }
    Ok(seq)
}

/// Most events one INSERT statement carries; a step is about four.
const ROWS_PER_INSERT: usize = 8;

/// Inserts `encoded` as the events after `start` of the run keyed `run_key`; returns the last
/// sequence number. Up to [`ROWS_PER_INSERT`] rows go in one statement (one statement per row
/// costs a VDBE program run, a reset and three binds each).
fn insert_events(
    conn: &Connection,
    run_id: &str,
    run_key: i64,
    start: u64,
    now: i64,
    encoded: &[String],
) -> rusqlite::Result<u64> {
    let last = start.saturating_add(encoded.len() as u64);
    if last > MAX_SEQ {
        return Err(out_of_keys(format!(
            "run {run_id} would reach event {last}; a run holds at most {MAX_SEQ} events"
        )));
    }
    let mut seq = start;
    for chunk in encoded.chunks(ROWS_PER_INSERT) {
        let mut insert = conn.prepare_cached(insert_sql(chunk.len()))?;
        // ?1 is the time; then one id and one document per row.
        insert.raw_bind_parameter(1, now)?;
        for (i, data) in chunk.iter().enumerate() {
            seq += 1;
            insert.raw_bind_parameter(2 + 2 * i, event_id(run_key, seq))?;
            insert.raw_bind_parameter(3 + 2 * i, data)?;
        }
        insert.raw_execute()?;
    }
    Ok(seq)
}

/// `INSERT INTO events … VALUES` with `rows` rows, built the first time a write has that many.
fn insert_sql(rows: usize) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; ROWS_PER_INSERT + 1] =
        [const { std::sync::OnceLock::new() }; ROWS_PER_INSERT + 1];
    let n = rows.min(ROWS_PER_INSERT);
    SQL[n].get_or_init(|| {
        let rows: Vec<String> = (0..n)
            .map(|i| format!("(?{}, ?1, ?{})", 2 + 2 * i, 3 + 2 * i))
            .collect();
        format!(
            "INSERT INTO events (id, at_ms, data) VALUES {}",
            rows.join(", ")
        )
    })
}

/// Leases the runnable runs that are free, oldest wake time first.
fn claim(
    conn: &Connection,
    worker: &str,
    ttl_ms: i64,
    limit: usize,
    now: i64,
) -> Result<Vec<Lease>, ApplyError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let run_ids = conn
        .prepare_cached(
            "SELECT run_id FROM runs
             WHERE wake_at_ms <= ?1 AND (lease_until_ms IS NULL OR lease_until_ms <= ?1)
             ORDER BY lease_until_ms IS NULL, wake_at_ms, run_id LIMIT ?2",
        )?
        .query_map(params![now, limit], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let until_ms = now.saturating_add(ttl_ms);
    let mut update = conn.prepare_cached(
        "UPDATE runs SET lease_owner = ?2, lease_token = ?3, lease_until_ms = ?4
         WHERE run_id = ?1",
    )?;
    let mut leases = Vec::with_capacity(run_ids.len());
    for run_id in run_ids {
        let token = fresh_token();
        update.execute(params![run_id, worker, token_to_sql(token), until_ms])?;
        leases.push(Lease {
            run_id,
            worker: worker.to_string(),
            token,
            until_ms,
        });
    }
    Ok(leases)
}

/// Leases one run, runnable or not, unless a live lease holds it.
fn claim_run(
    conn: &Connection,
    run_id: &str,
    owner: &str,
    ttl_ms: i64,
    dead: Option<&str>,
    now: i64,
) -> Result<Lease, ApplyError> {
    let row: Option<(Option<String>, Option<i64>)> = conn
        .prepare_cached("SELECT lease_owner, lease_until_ms FROM runs WHERE run_id = ?1")?
        .query_row(params![run_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match row {
        None => Err(ApplyError::Journal(Error::RunNotFound(run_id.to_string()))),
        Some((owner_now, Some(until_ms)))
            if until_ms > now && (dead.is_none() || owner_now.as_deref() != dead) =>
        {
            Err(ApplyError::Journal(Error::Held {
                run_id: run_id.to_string(),
                owner: owner_now.unwrap_or_default(),
                until_ms,
            }))
        }
        Some(_) => {
            let token = fresh_token();
            let until_ms = now.saturating_add(ttl_ms);
            conn.prepare_cached(
                "UPDATE runs SET lease_owner = ?2, lease_token = ?3, lease_until_ms = ?4
                 WHERE run_id = ?1",
            )?
            .execute(params![run_id, owner, token_to_sql(token), until_ms])?;
            Ok(Lease {
                run_id: run_id.to_string(),
                worker: owner.to_string(),
                token,
                until_ms,
            })
        }
    }
}

#[async_trait]
impl Journal for SqliteJournal {
    async fn create(
        &self,
        run: &NewRun,
        events: &[Event],
        wake: Wake,
        driver: Option<&Driver>,
    ) -> Result<Created, Error> {
        let op = Op::Create {
            run_id: run.run_id.clone(),
            agent: run.agent.clone(),
            key: run.idempotency_key.clone(),
            facts: crate::StartFacts::of(events),
            encoded: events.iter().map(encode).collect::<Result<Vec<_>, _>>()?,
            status: events.iter().rev().find_map(RunStatus::after),
            wake,
            driver: driver.map(|d| (d.owner.clone(), ttl_ms(d.ttl))),
        };
        match self.submit(op).await? {
            Done::Created(seq, lease) => {
                if lease.is_none() {
                    self.work_for_now(wake);
                }
                Ok(Created { seq, lease })
            }
            _ => Err(Error::Closed),
        }
    }

    async fn append_with(
        &self,
        lease: &Lease,
        expected: u64,
        events: &[Event],
        wake: Wake,
        notes: &[crate::Notification],
    ) -> Result<u64, Error> {
        self.append_op(
            &lease.run_id,
            expected,
            events,
            wake,
            Writer::Lease(lease.token),
            notes,
        )
        .await
    }

    async fn decide(
        &self,
        run_id: &str,
        expected: u64,
        events: &[Event],
        wake: Wake,
    ) -> Result<u64, Error> {
        crate::check_decisions(run_id, events)?;
        let seq = self
            .append_op(run_id, expected, events, wake, Writer::Human, &[])
            .await?;
        self.work_for_now(wake);
        Ok(seq)
    }

    async fn load_after(&self, run_id: &str, after: u64) -> Result<Vec<Record>, Error> {
        let run_id = run_id.to_string();
        let path = self.path.display().to_string();
        self.read(move |conn| {
            let db_err = |e: rusqlite::Error| Error::Database {
                path: path.clone(),
                message: e.to_string(),
            };
            // One statement, so the run's key and its events are read in one snapshot.
            let mut stmt = conn
                .prepare_cached(
                    "SELECT events.id & 4294967295, events.at_ms, events.data
                     FROM runs, events
                     WHERE runs.run_id = ?1
                       AND events.id BETWEEN (runs.run_key << 32) + ?2 + 1
                                         AND (runs.run_key << 32) + 4294967295
                     ORDER BY events.id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(
                    params![run_id, i64::try_from(after.min(MAX_SEQ)).unwrap_or(0)],
                    |row| {
                        Ok((
                            row.get::<_, u64>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, String>(2)?,
                        ))
                    },
                )
                .map_err(db_err)?;
            let mut records = Vec::new();
            for row in rows {
                let (seq, at_ms, data) = row.map_err(db_err)?;
                let event = serde_json::from_str(&data).map_err(|e| Error::Corrupt {
                    run_id: run_id.clone(),
                    seq,
                    message: e.to_string(),
                })?;
                records.push(Record { seq, at_ms, event });
            }
            if records.is_empty() && !run_exists(conn, &run_id).map_err(db_err)? {
                return Err(Error::RunNotFound(run_id));
            }
            Ok(records)
        })
        .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<RunSummary>, Error> {
        let filter = filter.clone();
        let path = self.path.display().to_string();
        self.read(move |conn| {
            let db_err = |e: rusqlite::Error| Error::Database {
                path: path.clone(),
                message: e.to_string(),
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT runs.run_id, agent, status, coalesce(last.id & 4294967295, 0), created_ms,
                            coalesce(last.at_ms, created_ms), wake_at_ms, lease_owner,
                            lease_until_ms, coalesce(version, '')
                     FROM runs LEFT JOIN events AS last ON last.id =
                         (SELECT id FROM events
                          WHERE id BETWEEN (runs.run_key << 32) + 1
                                       AND (runs.run_key << 32) + 4294967295
                          ORDER BY id DESC LIMIT 1)
                     WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR agent = ?2)
                       AND (?4 IS NULL OR substr(version, 1, length(?4)) = ?4
                            OR version_label = ?4)
                       AND (?5 IS NULL OR runs.run_id IN
                            (SELECT run_id FROM run_tags WHERE key = ?5 AND value = ?6))
                       AND (?7 IS NULL OR created_ms >= ?7)
                       AND (?8 IS NULL OR created_ms < ?8)
                       AND (?9 IS NULL OR created_ms < ?9
                            OR (created_ms = ?9 AND runs.run_id < ?10))
                       AND (?11 IS NULL OR runs.run_id = ?11)
                       AND (?12 IS NULL OR runs.run_id IN
                            (SELECT run_id FROM run_tags WHERE key = ?13 AND value = ?12))
                     ORDER BY created_ms DESC, runs.run_id DESC LIMIT ?3",
                )
                .map_err(db_err)?;
            let limit = filter
                .limit
                .map(|l| i64::try_from(l).unwrap_or(i64::MAX))
                .unwrap_or(-1);
            let (tag_key, tag_value) = filter.tag.clone().unzip();
            let (after_ms, after_id) = filter.after.clone().unzip();
            let rows = stmt
                .query_map(
                    params![
                        filter.status.map(RunStatus::as_str),
                        filter.agent,
                        limit,
                        filter.version,
                        tag_key,
                        tag_value,
                        filter.since_ms,
                        filter.until_ms,
                        after_ms,
                        after_id,
                        filter.run_id,
                        filter.forked_from,
                        crate::FORKED_FROM_KEY
                    ],
                    |row| {
                        let status: String = row.get(2)?;
                        Ok(RunSummary {
                            run_id: row.get(0)?,
                            agent: row.get(1)?,
                            status: RunStatus::parse(&status).unwrap_or(RunStatus::Running),
                            last_seq: row.get(3)?,
                            created_ms: row.get(4)?,
                            updated_ms: row.get(5)?,
                            wake_at_ms: row.get(6)?,
                            lease: match (row.get::<_, Option<String>>(7)?, row.get(8)?) {
                                (Some(owner), Some(until)) => Some((owner, until)),
                                _ => None,
                            },
                            version: row.get(9)?,
                        })
                    },
                )
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }

    async fn claim(&self, worker: &str, ttl: Duration, limit: usize) -> Result<Vec<Lease>, Error> {
        let op = Op::Claim {
            worker: worker.to_string(),
            ttl_ms: ttl_ms(ttl),
            limit,
        };
        match self.submit(op).await? {
            Done::Leases(leases) => Ok(leases),
            _ => Err(Error::Closed),
        }
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        let op = Op::Renew {
            lease: lease.clone(),
            ttl_ms: ttl_ms(ttl),
        };
        match self.submit(op).await? {
            Done::Lease(lease) => Ok(lease),
            _ => Err(Error::Closed),
        }
    }

    async fn claim_run(&self, run_id: &str, owner: &str, ttl: Duration) -> Result<Lease, Error> {
        let op = Op::ClaimRun {
            run_id: run_id.to_string(),
            owner: owner.to_string(),
            ttl_ms: ttl_ms(ttl),
            dead: None,
        };
        match self.submit(op).await? {
            Done::Lease(lease) => Ok(lease),
            _ => Err(Error::Closed),
        }
    }

    async fn take_over(
        &self,
        run_id: &str,
        dead: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lease, Error> {
        let op = Op::ClaimRun {
            run_id: run_id.to_string(),
            owner: owner.to_string(),
            ttl_ms: ttl_ms(ttl),
            dead: Some(dead.to_string()),
        };
        match self.submit(op).await? {
            Done::Lease(lease) => Ok(lease),
            _ => Err(Error::Closed),
        }
    }

    async fn release(&self, lease: &Lease, seen: u64, wake: Wake) -> Result<(), Error> {
        self.submit(Op::Release {
            lease: lease.clone(),
            seen,
            wake,
        })
        .await?;
        self.work_for_now(wake);
        Ok(())
    }

    async fn put_version(&self, version: &str, agent: &str, definition: &str) -> Result<(), Error> {
        self.submit(Op::PutVersion {
            version: version.to_string(),
            agent: agent.to_string(),
            definition: definition.to_string(),
        })
        .await
        .map(|_| ())
    }

    async fn get_version(&self, version: &str) -> Result<Option<String>, Error> {
        let version = version.to_string();
        let path = self.path.display().to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT definition FROM agent_versions WHERE version = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row(params![version], |row| row.get(0))
                        .optional()
                })
                .map_err(|e| Error::Database {
                    path,
                    message: e.to_string(),
                })
        })
        .await
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<(), Error> {
        self.submit(Op::PutToken(token.clone())).await.map(|_| ())
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        self.read_tokens(None).await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, Error> {
        match self.submit(Op::RevokeToken(name.to_string())).await? {
            Done::Changed(changed) => Ok(changed),
            _ => Err(Error::Closed),
        }
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, Error> {
        Ok(self.read_tokens(Some(hash.to_string())).await?.pop())
    }

    async fn purge(&self, run_ids: &[String]) -> Result<crate::Purged, Error> {
        let ids = run_ids.to_vec();
        // Written by the transaction, read once it committed (set, never added to, so a batch
        // tried again reports what finally committed).
        let freed = Arc::new(std::sync::Mutex::new(crate::Purged::default()));
        let report = Arc::clone(&freed);
        self.submit(Op::Exec(Box::new(move |conn, _now| {
            let mut purged = crate::Purged::default();
            for run_id in &ids {
                let ended: Option<i64> = conn
                    .prepare_cached(
                        "SELECT run_key FROM runs WHERE run_id = ?1
                         AND status IN ('completed', 'failed', 'cancelled')",
                    )?
                    .query_row(params![run_id], |row| row.get(0))
                    .optional()?;
                // A run whose notifications are still to be delivered stays until they are: a
                // later purge takes it.
                let pending = || -> rusqlite::Result<bool> {
                    conn.prepare_cached(
                        "SELECT count(*) > 0 FROM outbox WHERE run_id = ?1 AND status = 'pending'",
                    )?
                    .query_row(params![run_id], |row| row.get(0))
                };
                let Some(run_key) = ended else {
                    continue;
                };
                if pending()? {
                    continue;
                }
                let range = params![event_id(run_key, 1), event_id(run_key, MAX_SEQ)];
                let bytes: i64 = conn
                    .prepare_cached(
                        "SELECT coalesce(sum(length(CAST(data AS BLOB))), 0) FROM events
                         WHERE id BETWEEN ?1 AND ?2",
                    )?
                    .query_row(range, |row| row.get(0))?;
                conn.prepare_cached("DELETE FROM events WHERE id BETWEEN ?1 AND ?2")?
                    .execute(range)?;
                conn.prepare_cached("DELETE FROM run_tags WHERE run_id = ?1")?
                    .execute(params![run_id])?;
                conn.prepare_cached("DELETE FROM snapshots WHERE run_id = ?1")?
                    .execute(params![run_id])?;
                conn.prepare_cached("DELETE FROM outbox WHERE run_id = ?1")?
                    .execute(params![run_id])?;
                conn.prepare_cached("DELETE FROM runs WHERE run_id = ?1")?
                    .execute(params![run_id])?;
                purged.runs += 1;
                purged.bytes += u64::try_from(bytes).unwrap_or(0);
            }
            *report
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = purged;
            Ok(Done::Nothing)
        })))
        .await?;
        let purged = *freed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(purged)
    }

    async fn import(&self, run: &crate::Restored) -> Result<(), Error> {
        let events: Vec<Event> = run.events.iter().map(|r| r.event.clone()).collect();
        let facts = crate::StartFacts::of(&events);
        let rows: Vec<(u64, i64, String)> = run
            .events
            .iter()
            .map(|r| Ok((r.seq, r.at_ms, encode(&r.event)?)))
            .collect::<Result<_, Error>>()?;
        let run = run.clone();
        let exists = Arc::new(std::sync::Mutex::new(false));
        let found = Arc::clone(&exists);
        let run_id = run.run_id.clone();
        self.submit(Op::Exec(Box::new(move |conn, _now| {
            let taken = run_exists(conn, &run.run_id)?;
            *found
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = taken;
            if taken {
                return Ok(Done::Nothing);
            }
            conn.prepare_cached(
                "INSERT INTO runs (run_id, agent, status, created_ms, wake_at_ms, version,
                                   version_label)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6)",
            )?
            .execute(params![
                run.run_id,
                run.agent,
                run.status.as_str(),
                run.created_ms,
                facts.version,
                facts.label
            ])?;
            let run_key = new_run_key(conn, &run.run_id)?;
            for (key, value) in &facts.tags {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO run_tags (run_id, key, value) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![run.run_id, key, value])?;
            }
            for (seq, at_ms, data) in &rows {
                if !(1..=MAX_SEQ).contains(seq) {
                    return Err(out_of_keys(format!(
                        "run {}: event {seq} is outside 1..={MAX_SEQ}, the sequence numbers a \
                         run holds",
                        run.run_id
                    )));
                }
                conn.prepare_cached("INSERT INTO events (id, at_ms, data) VALUES (?1, ?2, ?3)")?
                    .execute(params![event_id(run_key, *seq), at_ms, data])?;
            }
            Ok(Done::Nothing)
        })))
        .await?;
        if *exists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Err(Error::RunExists(run_id));
        }
        Ok(())
    }

    async fn wait_for_work(&self, timeout: Duration) {
        // Work this process makes is announced; work another process makes is found by polling.
        tokio::select! {
            () = self.work.notified() => {}
            () = tokio::time::sleep(timeout) => {}
        }
    }

    fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Transaction-control statements that fail on this thread (`control`), so the
        /// writer's failure paths can be driven.
        pub(super) static FAIL_CONTROL: std::cell::RefCell<Vec<&'static str>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    thread_local! {
        /// The transaction-control statements run on this thread (`control`), and
        /// `(gather)` for each slice the writer waited for more writes (`gather`).
        pub(super) static CONTROL_LOG: std::cell::RefCell<Vec<String>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    /// What `f` ran through `control` and `gather` on this thread.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        CONTROL_LOG.with(|log| log.borrow_mut().clear());
        f();
        CONTROL_LOG.with(|log| log.borrow_mut().drain(..).collect())
    }

    fn failing<T>(statements: &[&'static str], f: impl FnOnce() -> T) -> T {
        FAIL_CONTROL.with(|fail| *fail.borrow_mut() = statements.to_vec());
        let out = f();
        FAIL_CONTROL.with(|fail| fail.borrow_mut().clear());
        out
    }

    /// A refused write whose savepoint cannot be rolled back may be half in the transaction:
    /// the whole batch is rolled back and every write in it fails, rather than committing
    /// partial rows. A writer connection left inside a transaction by a failed `ROLLBACK` is
    /// opened anew, rather than refusing every later write.
    #[test]
    fn a_failed_rollback_commits_nothing_and_wedges_nothing() {
        let (dir, mut conn, p) = writer();
        let mut known = Known::default();
        commit(&mut conn, 0, &[append("r1", None, 1)], &p, &mut known);
        let batch = [
            append("r1", Some(1), 2),
            append("r1", Some(1), 5),
            append("r2", None, 1),
        ];
        let results = failing(&["ROLLBACK TO op"], || {
            commit(&mut conn, 0, &batch, &p, &mut known)
        });
        assert_eq!(results.len(), 3);
        for result in &results {
            let message = result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(message.contains("could not be undone"), "{message}");
        }
        assert_eq!(
            events_of(&conn, "r1"),
            1,
            "nothing of the batch was committed"
        );
        assert_eq!(events_of(&conn, "r2"), 0);

        // Now the ROLLBACK fails too: the connection is left inside the transaction.
        let results = failing(&["ROLLBACK TO op", "ROLLBACK"], || {
            commit(&mut conn, 0, &batch, &p, &mut known)
        });
        assert!(results.iter().all(Result::is_err));
        assert!(
            !conn.is_autocommit(),
            "the injected failure left a transaction open"
        );
        reset_if_wedged(&mut conn, &p, Sync::Normal, &mut known);
        assert!(conn.is_autocommit());
        let next = commit(&mut conn, 0, &[append("r1", Some(1), 1)], &p, &mut known);
        assert_eq!(seq(&next[0]), Some(2), "{:?}", next[0].as_ref().err());
        assert_eq!(events_of(&conn, "r2"), 0);
        drop(dir);
    }

    fn append(run_id: &str, expected: Option<u64>, events: usize) -> Op {
        append_then(run_id, expected, events, None)
    }

    /// A create (`expected: None`) or an append that leaves its run in `status`.
    fn append_then(
        run_id: &str,
        expected: Option<u64>,
        events: usize,
        status: Option<RunStatus>,
    ) -> Op {
        let encoded = (0..events).map(|i| format!("{{\"n\":{i}}}")).collect();
        match expected {
            None => Op::Create {
                run_id: run_id.to_string(),
                agent: "a".to_string(),
                key: None,
                facts: crate::StartFacts::of(&[]),
                encoded,
                status,
                wake: Wake::Now,
                driver: None,
            },
            Some(expected) => Op::Append {
                run_id: run_id.to_string(),
                expected,
                encoded,
                status,
                wake: Wake::Now,
                writer: Writer::Human,
                notes: Vec::new(),
            },
        }
    }

    /// A fresh journal file and a writer connection of its own, as the write loop has.
    fn writer() -> (tempfile::TempDir, Connection, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        drop(SqliteJournal::open(&path, Sync::Normal).unwrap());
        let conn = connect(&path, Sync::Normal).unwrap();
        let p = path.display().to_string();
        (dir, conn, p)
    }

    fn events_of(conn: &Connection, run_id: &str) -> i64 {
        conn.query_row(
            "SELECT count(*) FROM runs, events WHERE runs.run_id = ?1
             AND events.id BETWEEN (run_key << 32) + 1 AND (run_key << 32) + 4294967295",
            params![run_id],
            |row| row.get(0),
        )
        .unwrap()
    }

    fn seq(result: &Result<Done, Error>) -> Option<u64> {
        match result {
            Ok(Done::Seq(seq) | Done::Created(seq, _)) => Some(*seq),
            _ => None,
        }
    }

    /// A refused write in a batch leaves the writes around it committed; a refused write
    /// alone commits nothing.
    #[test]
    fn a_refused_write_takes_only_itself_out_of_the_commit() {
        let (_dir, mut conn, p) = writer();
        let mut known = Known::default();

        let created = commit(&mut conn, 0, &[append("r1", None, 1)], &p, &mut known);
        assert_eq!(seq(&created[0]), Some(1));
        let batch = [
            append("r1", Some(1), 2),
            append("r1", Some(1), 5),
            append("r2", None, 1),
            append("r1", Some(3), 1),
        ];
        let results = commit(&mut conn, 0, &batch, &p, &mut known);
        assert_eq!(seq(&results[0]), Some(3));
        assert!(
            matches!(
                &results[1],
                Err(Error::SequenceConflict {
                    expected: 1,
                    actual: 3,
                    ..
                })
            ),
            "{:?}",
            results[1].as_ref().err()
        );
        assert_eq!(seq(&results[2]), Some(1));
        assert_eq!(seq(&results[3]), Some(4));
        assert_eq!(events_of(&conn, "r1"), 4);
        assert_eq!(events_of(&conn, "r2"), 1);

        let alone = commit(&mut conn, 0, &[append("r1", Some(2), 3)], &p, &mut known);
        assert!(matches!(&alone[0], Err(Error::SequenceConflict { .. })));
        assert_eq!(events_of(&conn, "r1"), 4);
        // The connection is usable again: no transaction was left open.
        let next = commit(&mut conn, 0, &[append("r1", Some(4), 1)], &p, &mut known);
        assert_eq!(seq(&next[0]), Some(5));
    }

    /// The writer's memo holds only runs still executing: a run that stops for a human or
    /// ends leaves it, and what it remembers agrees with the file.
    #[test]
    fn the_writer_remembers_only_runs_still_executing() {
        let (_dir, mut conn, p) = writer();
        let mut known = Known::default();
        for run in ["r1", "r2", "r3"] {
            commit(&mut conn, 0, &[append(run, None, 2)], &p, &mut known);
        }
        assert_eq!(known.last_seq.get("r1"), Some(&2));
        assert_eq!(known.last_seq.len(), 3);
        let batch = [
            append_then("r1", Some(2), 1, Some(RunStatus::Waiting)),
            append_then("r2", Some(2), 1, Some(RunStatus::Completed)),
            append_then("r3", Some(2), 1, Some(RunStatus::Running)),
        ];
        let results = commit(&mut conn, 0, &batch, &p, &mut known);
        assert!(results.iter().all(|r| seq(r) == Some(3)));
        assert_eq!(known.last_seq.len(), 1);
        assert_eq!(known.last_seq.get("r3"), Some(&3));
        // A run that left the memo is looked up in the file again.
        let resumed = commit(&mut conn, 0, &[append("r1", Some(3), 1)], &p, &mut known);
        assert_eq!(seq(&resumed[0]), Some(4));
        assert_eq!(known.last_seq.get("r1"), Some(&4));
    }

    /// However many runs are abandoned mid-step, the memo never holds more than `KNOWN_MAX`.
    #[test]
    fn the_writers_memo_stays_bounded() {
        let mut known = Known::default();
        for n in 0..KNOWN_MAX + 10 {
            known.note(&append(&format!("r{n}"), None, 1), &Done::Seq(1));
            assert!(known.last_seq.len() <= KNOWN_MAX);
        }
        assert_eq!(known.last_seq.len(), 10);
        assert_eq!(known.last_seq.get(&format!("r{}", KNOWN_MAX + 9)), Some(&1));
    }

    /// Writes ready at the same moment share one transaction, so one `COMMIT` and one fsync,
    /// each in its own savepoint; a lone writer, one write after another, never waits for
    /// company (no `gather`).
    #[test]
    fn writes_ready_together_share_one_commit_and_a_lone_writer_never_waits() {
        let (dir, conn, p) = writer();
        let path = dir.path().join("j.db");
        let clock = crate::clock::system();

        // Four runs' writes already waiting when the writer looks.
        let (tx, rx) = mpsc::channel();
        let mut answers = Vec::new();
        for run in ["r1", "r2", "r3", "r4"] {
            let (reply, answer) = oneshot::channel();
            tx.send(Request {
                op: append(run, None, 2),
                reply,
            })
            .unwrap();
            answers.push(answer);
        }
        drop(tx);
        let log = logged(|| write_loop(conn, rx, &p, Sync::Normal, clock.as_ref()));
        let mut expected = vec!["(gather)", "BEGIN IMMEDIATE"];
        expected.extend(["SAVEPOINT op", "RELEASE op"].repeat(4));
        expected.push("COMMIT");
        assert_eq!(log, expected);
        for mut answer in answers {
            assert_eq!(seq(&answer.try_recv().unwrap()), Some(2));
        }
        let reader = connect(&path, Sync::Normal).unwrap();
        for run in ["r1", "r2", "r3", "r4"] {
            assert_eq!(events_of(&reader, run), 2);
        }

        // One write at a time, each sent once the last is answered: each goes at once, alone.
        let (tx, rx) = mpsc::channel::<Request>();
        let sender = std::thread::spawn(move || {
            let mut seqs = Vec::new();
            for expected in 2..5 {
                let (reply, answer) = oneshot::channel();
                tx.send(Request {
                    op: append("r1", Some(expected), 1),
                    reply,
                })
                .unwrap();
                seqs.push(seq(&answer.blocking_recv().unwrap()));
            }
            seqs
        });
        let conn = connect(&path, Sync::Normal).unwrap();
        let log = logged(|| write_loop(conn, rx, &p, Sync::Normal, clock.as_ref()));
        assert_eq!(sender.join().unwrap(), [Some(3), Some(4), Some(5)]);
        assert_eq!(log, ["BEGIN IMMEDIATE", "COMMIT"].repeat(3));
    }

    /// Runs a writer under `Sync::Full` on a fresh journal at `path` while `drive` sends it
    /// writes, each answered before the next; returns the statements the writer logged.
    fn full_sync_log(
        path: &Path,
        drive: impl FnOnce(&dyn Fn(Op) -> Result<Done, Error>) + Send + 'static,
    ) -> Vec<String> {
        drop(SqliteJournal::open(path, Sync::Full).unwrap());
        let conn = connect(path, Sync::Full).unwrap();
        let p = path.display().to_string();
        let clock = crate::clock::system();
        let (tx, rx) = mpsc::channel::<Request>();
        let sender = std::thread::spawn(move || {
            let send = |op| {
                let (reply, answer) = oneshot::channel();
                tx.send(Request { op, reply }).unwrap();
                answer.blocking_recv().unwrap()
            };
            drive(&send);
        });
        let log = logged(|| write_loop(conn, rx, &p, Sync::Full, clock.as_ref()));
        sender.join().unwrap();
        log
    }

    /// The creation of run `r1`, leased to `driver` if given.
    fn create_r1(driver: Option<(String, i64)>) -> Op {
        Op::Create {
            run_id: "r1".to_string(),
            agent: "a".to_string(),
            key: None,
            facts: crate::StartFacts::of(&[]),
            encoded: vec!["{}".to_string()],
            status: None,
            wake: Wake::Now,
            driver,
        }
    }

    /// Under `Sync::Full`, a batch of lease releases and of runs created leased to their own
    /// driver commits without waiting for the disk (the next synced commit makes it durable),
    /// and the next batch of anything else syncs again before it commits.
    #[test]
    fn a_lease_release_and_a_driven_creation_wait_for_the_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let log = full_sync_log(&path, |send| {
            let Ok(Done::Created(created, Some(lease))) =
                send(create_r1(Some(("w".to_string(), 60_000))))
            else {
                panic!("a leased create answers its lease");
            };
            assert!(matches!(
                send(Op::Release {
                    lease,
                    seen: created,
                    wake: Wake::Never,
                }),
                Ok(Done::Nothing)
            ));
            assert_eq!(seq(&send(append("r2", None, 1))), Some(1));
        });
        assert_eq!(
            log,
            [
                // The leased creation and the release: neither waits for the disk.
                "PRAGMA synchronous = NORMAL",
                "BEGIN IMMEDIATE",
                "COMMIT",
                "BEGIN IMMEDIATE",
                "COMMIT",
                // The append syncs, and with it everything before.
                "PRAGMA synchronous = FULL",
                "BEGIN IMMEDIATE",
                "COMMIT",
            ]
        );
        let reader = connect(&path, Sync::Normal).unwrap();
        let owner: Option<String> = reader
            .query_row(
                "SELECT lease_owner FROM runs WHERE run_id = 'r1'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(owner, None, "the release was committed");
        assert_eq!(events_of(&reader, "r2"), 1);
    }

    /// A run created for others to drive (no driver: `submit`, `POST /v1/runs`) is durable
    /// before its id is handed out: its commit syncs.
    #[test]
    fn a_queued_creation_syncs_before_its_id_is_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = full_sync_log(&dir.path().join("j.db"), |send| {
            assert!(matches!(send(create_r1(None)), Ok(Done::Created(_, None))));
        });
        assert_eq!(
            log,
            ["BEGIN IMMEDIATE", "COMMIT"],
            "no relaxed sync around it"
        );
    }
}
