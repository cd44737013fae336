//! The SQLite schema and its migrations, versioned by `PRAGMA user_version`.
//!
//! Migrations run inside `BEGIN IMMEDIATE`, so two processes opening the same old file never
//! both apply one. A file from a newer chassis is refused before anything is written to it.

use rusqlite::{Connection, TransactionBehavior};

use crate::Error;

/// Migration `n` (from 1) takes the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: runs and their events.
    "
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
    ",
    // 2: when each run is next runnable, and worker leases. Runs left running are runnable.
    "
    ALTER TABLE runs ADD COLUMN wake_at_ms INTEGER;
    ALTER TABLE runs ADD COLUMN lease_owner TEXT;
    ALTER TABLE runs ADD COLUMN lease_token INTEGER;
    ALTER TABLE runs ADD COLUMN lease_until_ms INTEGER;
    UPDATE runs SET wake_at_ms = updated_ms WHERE status = 'running';
    CREATE INDEX runs_runnable ON runs (wake_at_ms) WHERE wake_at_ms IS NOT NULL;
    ",
    // 3: a run's length and last write are read from its events, so an append that changes
    // no status writes only event pages (the runs row was one more WAL page per commit).
    "
    ALTER TABLE runs DROP COLUMN last_seq;
    ALTER TABLE runs DROP COLUMN updated_ms;
    ",
    // 4: a starter's idempotency key, so a retried start finds the run it made.
    "
    ALTER TABLE runs ADD COLUMN idempotency_key TEXT;
    CREATE UNIQUE INDEX runs_by_idempotency_key ON runs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    ",
    // 5: what the service lists and filters by (version, label, tags), pinned agent versions,
    // and API tokens (their hashes).
    "
    ALTER TABLE runs ADD COLUMN version TEXT;
    ALTER TABLE runs ADD COLUMN version_label TEXT;
    UPDATE runs SET
        version = (SELECT json_extract(data, '$.version') FROM events
                   WHERE events.run_id = runs.run_id AND seq = 1),
        version_label = (SELECT json_extract(data, '$.version_label') FROM events
                         WHERE events.run_id = runs.run_id AND seq = 1);
    CREATE INDEX runs_by_version ON runs (version, created_ms);
    DROP INDEX IF EXISTS runs_by_created;
    CREATE INDEX runs_by_created ON runs (created_ms, run_id);
    CREATE TABLE run_tags (
        run_id TEXT NOT NULL,
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (key, value, run_id)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO run_tags (run_id, key, value)
        SELECT events.run_id, t.key, t.value
        FROM events, json_each(json_extract(events.data, '$.tags')) AS t
        WHERE events.seq = 1 AND json_type(json_extract(events.data, '$.tags')) = 'object';
    CREATE TABLE agent_versions (
        version    TEXT PRIMARY KEY,
        agent      TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        definition TEXT NOT NULL
    );
    CREATE TABLE tokens (
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,
        hash       TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );
    CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_ms IS NULL;
    ",
    // The outbox: notifications queued with the events that raised them (`sqlite/outbox.rs`).
    super::outbox::MIGRATION,
    // Schedules and the slots they fired (`sqlite/schedule.rs`).
    super::schedule::MIGRATION,
    // Provider rate limits shared by every process (`sqlite/rate.rs`).
    super::rate::MIGRATION,
    // State snapshots, so a long run loads in bounded time (`sqlite/snapshot.rs`).
    super::snapshot::MIGRATION,
    // A purge finds a run's notifications by their run.
    "CREATE INDEX outbox_by_run ON outbox (run_id);",
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// The file's schema version, refused if it is newer than this build.
pub(super) fn check(conn: &Connection) -> Result<i64, Error> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| Error::Database {
            path: path_of(conn),
            message: e.to_string(),
        })?;
    if found > VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: VERSION,
        });
    }
    Ok(found)
}

/// Brings the schema to [`VERSION`], in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), Error> {
    if check(conn)? == VERSION {
        return Ok(());
    }
    let path = path_of(conn);
    let db_err = |message: String| Error::Database {
        path: path.clone(),
        message,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| db_err(e.to_string()))?;
    // Another process may have migrated between the check and the lock.
    let found = check(&tx)?;
    for (done, migration) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(migration)
            .map_err(|e| db_err(format!("migration to schema version {}: {e}", done + 1)))?;
    }
    tx.pragma_update(None, "user_version", VERSION)
        .map_err(|e| db_err(e.to_string()))?;
    tx.commit().map_err(|e| db_err(e.to_string()))
}

fn path_of(conn: &Connection) -> String {
    conn.path().unwrap_or("").to_string()
}
