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
    // 11: events in one integer B-tree (BENCHMARKS.md, "Bytes and fsyncs per durable step").
    PACKED_EVENTS,
];

/// The schema version [`PACKED_EVENTS`] takes a file to.
const PACKED_VERSION: usize = 11;

/// Each run gets a stable integer key, `run_key` (its rowid, declared so that `VACUUM` keeps
/// it), and the events become a rowid table whose rowid is `run_key << 32 | seq` with nothing
/// beside it: an append adds to the right edge of one table B-tree, which splits cheaply,
/// where the `(run_id, seq)` primary key of a `WITHOUT ROWID` table rebalanced full leaves
/// with their siblings (3.5 WAL pages per step against 1.5). A run's events are the range
/// `[run_key << 32 | 1, run_key << 32 | 0xFFFFFFFF]`. The keys are the old rowids, and the
/// events are copied as they are, run by run in key order (each run's events read in order
/// from the old primary key, so nothing is sorted in a temporary B-tree); `check_packable`
/// first refuses a file whose events would not all fit.
const PACKED_EVENTS: &str = "
    CREATE TABLE runs_keyed (
        run_key         INTEGER PRIMARY KEY,
        run_id          TEXT NOT NULL UNIQUE,
        agent           TEXT NOT NULL,
        status          TEXT NOT NULL,
        created_ms      INTEGER NOT NULL,
        wake_at_ms      INTEGER,
        lease_owner     TEXT,
        lease_token     INTEGER,
        lease_until_ms  INTEGER,
        idempotency_key TEXT,
        version         TEXT,
        version_label   TEXT
    );
    INSERT INTO runs_keyed (run_key, run_id, agent, status, created_ms, wake_at_ms,
                            lease_owner, lease_token, lease_until_ms, idempotency_key,
                            version, version_label)
        SELECT rowid, run_id, agent, status, created_ms, wake_at_ms, lease_owner, lease_token,
               lease_until_ms, idempotency_key, version, version_label
        FROM runs ORDER BY rowid;
    DROP TABLE runs;
    ALTER TABLE runs_keyed RENAME TO runs;
    CREATE INDEX runs_by_status ON runs (status, created_ms);
    CREATE INDEX runs_by_created ON runs (created_ms, run_id);
    CREATE INDEX runs_runnable ON runs (wake_at_ms) WHERE wake_at_ms IS NOT NULL;
    CREATE UNIQUE INDEX runs_by_idempotency_key ON runs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX runs_by_version ON runs (version, created_ms);
    CREATE TABLE events_packed (
        id    INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        data  TEXT NOT NULL
    );
    INSERT INTO events_packed (id, at_ms, data)
        SELECT (runs.run_key << 32) | events.seq, events.at_ms, events.data
        FROM runs CROSS JOIN events ON events.run_id = runs.run_id
        ORDER BY runs.run_key, events.seq;
    DROP TABLE events;
    ALTER TABLE events_packed RENAME TO events;
";

/// Refuses to pack the events of a file where some would be lost or misplaced: an event of
/// no run (the store never writes one, but a hand-edited file may hold it), a sequence number
/// outside `1..=0xFFFFFFFF`, or a run whose rowid does not fit in 31 bits.
fn check_packable(conn: &Connection) -> Result<(), String> {
    let count = |sql: &str| -> Result<i64, String> {
        conn.query_row(sql, [], |row| row.get(0))
            .map_err(|e| e.to_string())
    };
    let orphans = count(
        "SELECT count(*) FROM events WHERE NOT EXISTS
             (SELECT 1 FROM runs WHERE runs.run_id = events.run_id)",
    )?;
    if orphans > 0 {
        return Err(format!(
            "{orphans} events belong to no run in `runs`; they would be lost. Remove them \
             (`DELETE FROM events WHERE run_id NOT IN (SELECT run_id FROM runs)`) or restore \
             their runs, then open the journal again"
        ));
    }
    let out_of_range = count("SELECT count(*) FROM events WHERE seq < 1 OR seq > 4294967295")?;
    if out_of_range > 0 {
        return Err(format!(
            "{out_of_range} events have a sequence number outside 1..=4294967295, which the \
             new layout cannot key"
        ));
    }
    let too_many = count("SELECT count(*) FROM runs WHERE rowid < 1 OR rowid > 2147483647")?;
    if too_many > 0 {
        return Err(format!(
            "{too_many} runs have a rowid outside 1..=2147483647, which the new layout cannot \
             use as a run key"
        ));
    }
    Ok(())
}

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

/// The page size of new journal files. Every commit rewrites whole pages, and an append
/// touches about one leaf: 2 KiB pages wrote 7.8 KB per step against 11.7 KB at SQLite's
/// default 4 KiB, while a leaf still holds an event of up to about 2 KB without overflow pages
/// (1 KiB pages write less still, but spill most events). BENCHMARKS.md has the figures.
pub(crate) const PAGE_SIZE: i64 = 2048;

/// Gives a file with no pages yet (a new journal) [`PAGE_SIZE`]. Must run before anything
/// writes to the file, `PRAGMA journal_mode = WAL` included; a file that has pages keeps its
/// own size (SQLite fixes it at the first page, and a WAL file cannot change it).
pub(super) fn size_new_file(conn: &Connection) -> rusqlite::Result<()> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |row| row.get(0))?;
    if pages == 0 {
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    }
    Ok(())
}

/// Brings the schema from `found` (what [`check`] read at open) to [`VERSION`], in one
/// transaction; nothing to do, and nothing read again, when it is there already.
pub(super) fn migrate(conn: &mut Connection, found: i64) -> Result<(), Error> {
    if found == VERSION {
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
        if done + 1 == PACKED_VERSION {
            check_packable(&tx)
                .map_err(|e| db_err(format!("migration to schema version {}: {e}", done + 1)))?;
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use rusqlite::params;

    use super::*;
    use crate::conformance::{completed, requested, started};
    use crate::{Journal, ListFilter, NewRun, SqliteJournal, Sync, Wake, encode};

    /// The rows of a file's runs, as SQL gives them, by run id.
    const RUNS: &str = "SELECT run_id, agent, status, created_ms, wake_at_ms, lease_owner,
                               lease_token, lease_until_ms, idempotency_key, version,
                               version_label
                        FROM runs ORDER BY run_id";

    type RunRow = (
        String,
        String,
        String,
        i64,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );

    fn runs(conn: &Connection) -> Vec<RunRow> {
        let mut stmt = conn.prepare(RUNS).unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Every event as `(run_id, seq, at_ms, data)`, read with `sql`.
    fn events(conn: &Connection, sql: &str) -> Vec<(String, u64, i64, String)> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    const OLD_EVENTS: &str = "SELECT run_id, seq, at_ms, data FROM events ORDER BY run_id, seq";
    const NEW_EVENTS: &str = "SELECT run_id, id & 4294967295, at_ms, data
                              FROM events JOIN runs ON id >> 32 = run_key
                              ORDER BY run_id, id";

    /// A journal file as schema version 10 (the last with `events (run_id, seq)`) left it, made
    /// by the migrations of that version with SQLite's default page size, holding: a completed
    /// run with a version, tags, an idempotency key and a snapshot; a purged run (a gap in the
    /// rowids); a running run leased to a worker whose lease has expired; a waiting run.
    /// Their events are interleaved, as concurrent runs write them.
    fn old_file(path: &Path) {
        let conn = Connection::open(path).unwrap();
        for migration in &MIGRATIONS[..PACKED_VERSION - 1] {
            conn.execute_batch(migration).unwrap();
        }
        conn.pragma_update(None, "user_version", PACKED_VERSION - 1)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO runs (run_id, agent, status, created_ms, wake_at_ms, idempotency_key,
                               version, version_label)
                 VALUES ('done', 'agent', 'completed', 100, NULL, 'key-1', 'v1', 'prod');
             INSERT INTO runs (run_id, agent, status, created_ms) VALUES ('gone', 'agent',
                 'completed', 101);
             INSERT INTO runs (run_id, agent, status, created_ms, wake_at_ms, lease_owner,
                               lease_token, lease_until_ms)
                 VALUES ('live', 'agent', 'running', 102, 150, 'w1', -7, 200);
             INSERT INTO runs (run_id, agent, status, created_ms) VALUES ('paused', 'other',
                 'waiting', 103);
             DELETE FROM runs WHERE run_id = 'gone';
             INSERT INTO run_tags VALUES ('done', 'team', 'a');
             INSERT INTO snapshots VALUES ('done', 2, '{\"state\":1}');",
        )
        .unwrap();
        let mut at = 1000;
        let mut insert = |run: &str, seq: u64, event: &chassis_core::Event| {
            at += 7;
            conn.execute(
                "INSERT INTO events (run_id, seq, at_ms, data) VALUES (?1, ?2, ?3, ?4)",
                params![run, seq, at, encode(event).unwrap()],
            )
            .unwrap();
        };
        for run in ["done", "live", "paused"] {
            insert(run, 1, &started("agent"));
        }
        for step in 1..=3 {
            insert("done", u64::from(step) + 1, &requested(step));
            insert("live", u64::from(step) + 1, &requested(step));
        }
        insert("done", 5, &completed());
        insert("paused", 2, &requested(1));
    }

    /// A file of the previous schema is migrated: its runs keep every column and get their
    /// old rowid as key, every run's events load as they were stored, byte for byte, and the
    /// file keeps its page size; then leases, appends, new runs and purges work on it.
    /// Every run's id and its key as `column` holds it, in id order.
    fn run_keys(conn: &Connection, column: &str) -> Vec<(String, i64)> {
        conn.prepare(&format!(
            "SELECT run_id, {column} FROM runs ORDER BY run_id"
        ))
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    #[tokio::test]
    async fn a_journal_of_the_previous_schema_keeps_its_events_and_takes_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        old_file(&path);
        let (runs_before, events_before, keys_before) = {
            let conn = Connection::open(&path).unwrap();
            let keys = run_keys(&conn, "rowid");
            (runs(&conn), events(&conn, OLD_EVENTS), keys)
        };
        assert_eq!(events_before.len(), 11);
        assert_eq!(keys_before.len(), 3);

        let journal = SqliteJournal::open(&path, Sync::Full).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            assert_eq!(check(&conn).unwrap(), VERSION);
            assert_eq!(runs(&conn), runs_before);
            assert_eq!(events(&conn, NEW_EVENTS), events_before);
            let keys = run_keys(&conn, "run_key");
            assert_eq!(keys, keys_before);
            let page_size: i64 = conn
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .unwrap();
            assert_eq!(page_size, 4096, "an existing file keeps its page size");
        }
        for run in ["done", "live", "paused"] {
            let loaded = journal.load(run).await.unwrap();
            let stored: Vec<crate::Record> = events_before
                .iter()
                .filter(|(id, ..)| id == run)
                .map(|(_, seq, at_ms, data)| crate::Record {
                    seq: *seq,
                    at_ms: *at_ms,
                    event: serde_json::from_str(data).unwrap(),
                })
                .collect();
            assert_eq!(loaded, stored, "{run}");
            assert_eq!(journal.load_after(run, 2).await.unwrap(), stored[2..]);
        }
        let listed = journal.list(&ListFilter::default()).await.unwrap();
        let last: Vec<(String, u64, i64)> = listed
            .iter()
            .map(|s| (s.run_id.clone(), s.last_seq, s.updated_ms))
            .collect();
        let at = |run: &str, seq: u64| {
            events_before
                .iter()
                .find(|(id, s, ..)| id == run && *s == seq)
                .map(|e| e.2)
                .unwrap()
        };
        assert_eq!(
            last,
            [
                ("paused".to_string(), 2, at("paused", 2)),
                ("live".to_string(), 4, at("live", 4)),
                ("done".to_string(), 5, at("done", 5)),
            ]
        );

        // The expired lease of `live` is taken, and its driver appends.
        let lease = journal
            .claim("w2", Duration::from_secs(60), 10)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(lease.run_id, "live");
        assert_eq!(
            journal
                .append(&lease, 4, &[requested(4)], Wake::Now)
                .await
                .unwrap(),
            5
        );
        let stale = journal.append(&lease, 4, &[requested(4)], Wake::Now).await;
        assert!(matches!(stale, Err(crate::Error::SequenceConflict { .. })));
        // A new run gets a key of its own: no other run's events are mixed into it.
        let created = journal
            .create(
                &NewRun {
                    run_id: "new".into(),
                    agent: "agent".into(),
                    idempotency_key: None,
                },
                &[started("agent"), requested(1)],
                Wake::Now,
                None,
            )
            .await
            .unwrap();
        assert_eq!(created.seq, 2);
        assert_eq!(journal.load("new").await.unwrap().len(), 2);
        assert_eq!(journal.load("live").await.unwrap().len(), 5);
        // A migrated run is purged with its events, and only them.
        let purged = journal.purge(&["done".to_string()]).await.unwrap();
        assert_eq!(purged.runs, 1);
        assert!(matches!(
            journal.load("done").await,
            Err(crate::Error::RunNotFound(_))
        ));
        assert_eq!(journal.load("paused").await.unwrap().len(), 2);
        drop(journal);
        let conn = Connection::open(&path).unwrap();
        let left: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 5 + 2 + 2, "live, paused and new");
    }

    /// Events the new layout cannot key are not dropped: the migration is refused, naming
    /// them, and the file stays at its version.
    #[test]
    fn events_of_no_run_refuse_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        old_file(&path);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("INSERT INTO events VALUES ('nobody', 1, 5, '{}')")
                .unwrap();
        }
        let err = SqliteJournal::open(&path, Sync::Normal).err().unwrap();
        assert!(
            err.to_string()
                .contains("migration to schema version 11: 1 events belong to no run"),
            "{err}"
        );
        let conn = Connection::open(&path).unwrap();
        assert_eq!(check(&conn).unwrap(), PACKED_VERSION as i64 - 1);
        assert_eq!(events(&conn, OLD_EVENTS).len(), 12);
    }

    /// A new journal file gets 2 KiB pages.
    #[test]
    fn a_new_journal_has_2_kib_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        drop(SqliteJournal::open(&path, Sync::Normal).unwrap());
        let conn = Connection::open(&path).unwrap();
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        assert_eq!(page_size, PAGE_SIZE);
        assert_eq!(PAGE_SIZE, 2048);
    }
}
