//! The embedded journal: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread that takes every append ready at that moment
//! and commits them in one transaction, so concurrent runs share one fsync (group commit).
//! Each append sits in its own savepoint: a refused append does not disturb its neighbours.
//! Several processes may share the file; `BEGIN IMMEDIATE` serializes their writers and the
//! expected-sequence check runs inside the transaction, so there is no read-then-write race.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chassis_core::{Event, RunStatus};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::journal::{Journal, ListFilter, NewRun, Record, RunSummary};
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

/// Most appends one commit takes; bounds the latency a batch adds.
const MAX_BATCH: usize = 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,
    agent      TEXT NOT NULL,
    status     TEXT NOT NULL,
    last_seq   INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_ms);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_ms);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    at_ms  INTEGER NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
PRAGMA user_version = 1;
";

/// An append prepared off the writer thread: events already encoded.
struct Batch {
    run_id: String,
    /// `None` creates the run (with this agent name); `Some(n)` appends after event `n`.
    expected: Option<u64>,
    agent: String,
    encoded: Vec<String>,
    status: Option<RunStatus>,
    reply: oneshot::Sender<Result<u64, Error>>,
}

/// The SQLite journal.
pub struct SqliteJournal {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Batch>>>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteJournal {
    /// Opens (creating if needed) the journal at `path`, creating parent directories.
    pub fn open(path: &Path, sync: Sync) -> Result<SqliteJournal, Error> {
        let db_err = |e: &dyn std::fmt::Display| Error::Database {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| db_err(&e))?;
        }
        let writer = connect(path, sync).map_err(|e| db_err(&e))?;
        writer.execute_batch(SCHEMA).map_err(|e| db_err(&e))?;
        let reader = connect(path, sync).map_err(|e| db_err(&e))?;

        let (tx, rx) = mpsc::channel::<Batch>();
        let thread_path = path.display().to_string();
        std::thread::Builder::new()
            .name("chassis-journal".into())
            .spawn(move || write_loop(writer, rx, &thread_path))
            .map_err(|e| db_err(&e))?;
        Ok(SqliteJournal {
            path: path.to_path_buf(),
            writer: Mutex::new(Some(tx)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn submit(
        &self,
        run_id: &str,
        expected: Option<u64>,
        agent: &str,
        events: &[Event],
    ) -> Result<u64, Error> {
        let encoded = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let status = events.iter().rev().find_map(RunStatus::after);
        let (reply, done) = oneshot::channel();
        let batch = Batch {
            run_id: run_id.to_string(),
            expected,
            agent: agent.to_string(),
            encoded,
            status,
            reply,
        };
        {
            let writer = self.writer.lock().map_err(|_| Error::Closed)?;
            writer
                .as_ref()
                .ok_or(Error::Closed)?
                .send(batch)
                .map_err(|_| Error::Closed)?;
        }
        done.await.map_err(|_| Error::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| Error::Closed)?;
            f(&conn)
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
    }
}

fn connect(path: &Path, sync: Sync) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let level = match sync {
        Sync::Full => "FULL",
        Sync::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", level)?;
    Ok(conn)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Batch>, path: &str) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while batches.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(batch) => batches.push(batch),
                Err(_) => break,
            }
        }
        let results = commit(&mut conn, &batches, path);
        for (batch, result) in batches.into_iter().zip(results) {
            // The caller may have gone away (cancelled); its append is still durable.
            let _ = batch.reply.send(result);
        }
    }
}

/// Commits every batch it can in one transaction; returns one result per batch.
fn commit(conn: &mut Connection, batches: &[Batch], path: &str) -> Vec<Result<u64, Error>> {
    let db_err = |e: rusqlite::Error| Error::Database {
        path: path.to_string(),
        message: e.to_string(),
    };
    let now = now_ms();
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            return batches.iter().map(|_| Err(db_err(clone_err(&e)))).collect();
        }
    };
    let mut results = Vec::with_capacity(batches.len());
    for batch in batches {
        let result = match tx.savepoint() {
            Ok(sp) => match apply(&sp, batch, now) {
                Ok(seq) => sp.commit().map(|()| seq).map_err(db_err),
                Err(e) => Err(e.into_error(path)),
            },
            Err(e) => Err(db_err(e)),
        };
        results.push(result);
    }
    if let Err(e) = tx.commit() {
        return batches.iter().map(|_| Err(db_err(clone_err(&e)))).collect();
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

fn apply(conn: &Connection, batch: &Batch, now: i64) -> Result<u64, ApplyError> {
    let current: Option<u64> = conn
        .prepare_cached("SELECT last_seq FROM runs WHERE run_id = ?1")?
        .query_row(params![batch.run_id], |row| row.get(0))
        .optional()?;
    let start = match (batch.expected, current) {
        (None, None) => {
            conn.prepare_cached(
                "INSERT INTO runs (run_id, agent, status, last_seq, created_ms, updated_ms)
                 VALUES (?1, ?2, 'running', 0, ?3, ?3)",
            )?
            .execute(params![batch.run_id, batch.agent, now])?;
            0
        }
        (None, Some(_)) => return Err(ApplyError::Journal(Error::RunExists(batch.run_id.clone()))),
        (Some(_), None) => {
            return Err(ApplyError::Journal(Error::RunNotFound(
                batch.run_id.clone(),
            )));
        }
        (Some(expected), Some(actual)) if expected != actual => {
            return Err(ApplyError::Journal(Error::SequenceConflict {
                run_id: batch.run_id.clone(),
                expected,
                actual,
            }));
        }
        (Some(expected), Some(_)) => expected,
    };
    let mut insert = conn
        .prepare_cached("INSERT INTO events (run_id, seq, at_ms, data) VALUES (?1, ?2, ?3, ?4)")?;
    let mut seq = start;
    for data in &batch.encoded {
        seq += 1;
        insert.execute(params![batch.run_id, seq, now, data])?;
    }
    match batch.status {
        Some(status) => conn
            .prepare_cached(
                "UPDATE runs SET last_seq = ?2, updated_ms = ?3, status = ?4 WHERE run_id = ?1",
            )?
            .execute(params![batch.run_id, seq, now, status.as_str()])?,
        None => conn
            .prepare_cached("UPDATE runs SET last_seq = ?2, updated_ms = ?3 WHERE run_id = ?1")?
            .execute(params![batch.run_id, seq, now])?,
    };
    Ok(seq)
}

#[async_trait]
impl Journal for SqliteJournal {
    async fn create(&self, run: &NewRun, events: &[Event]) -> Result<u64, Error> {
        self.submit(&run.run_id, None, &run.agent, events).await
    }

    async fn append(&self, run_id: &str, expected: u64, events: &[Event]) -> Result<u64, Error> {
        self.submit(run_id, Some(expected), "", events).await
    }

    async fn load(&self, run_id: &str) -> Result<Vec<Record>, Error> {
        let run_id = run_id.to_string();
        let path = self.path.display().to_string();
        let records = self
            .read(move |conn| {
                let db_err = |e: rusqlite::Error| Error::Database {
                    path: path.clone(),
                    message: e.to_string(),
                };
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq, at_ms, data FROM events WHERE run_id = ?1 ORDER BY seq",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map(params![run_id], |row| {
                        Ok((
                            row.get::<_, u64>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, String>(2)?,
                        ))
                    })
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
                if records.is_empty() {
                    return Err(Error::RunNotFound(run_id));
                }
                Ok(records)
            })
            .await?;
        Ok(records)
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
                    "SELECT run_id, agent, status, last_seq, created_ms, updated_ms FROM runs
                     WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR agent = ?2)
                     ORDER BY created_ms DESC, run_id DESC LIMIT ?3",
                )
                .map_err(db_err)?;
            let limit = filter.limit.map(|l| l as i64).unwrap_or(-1);
            let rows = stmt
                .query_map(
                    params![filter.status.map(RunStatus::as_str), filter.agent, limit],
                    |row| {
                        let status: String = row.get(2)?;
                        Ok(RunSummary {
                            run_id: row.get(0)?,
                            agent: row.get(1)?,
                            status: RunStatus::parse(&status).unwrap_or(RunStatus::Running),
                            last_seq: row.get(3)?,
                            created_ms: row.get(4)?,
                            updated_ms: row.get(5)?,
                        })
                    },
                )
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
        .await
    }
}
