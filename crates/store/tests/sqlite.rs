//! The SQLite journal against the conformance suite, on a real file.

use std::sync::Arc;
use std::time::Duration;

use chassis_store::conformance::{completed, raised, requested, resumed, started};
use chassis_store::{Error, Journal, ListFilter, NewRun, SqliteJournal, Sync, Wake};

async fn sqlite() -> (Arc<dyn Journal>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("nested/chassis.db"), Sync::Full).unwrap();
    (Arc::new(journal), dir)
}

chassis_store::journal_conformance!(sqlite());

fn new_run(id: &str) -> NewRun {
    NewRun {
        run_id: id.into(),
        agent: "agent".into(),
        idempotency_key: None,
    }
}

fn driver() -> chassis_store::Driver {
    chassis_store::Driver {
        owner: "a".into(),
        ttl: Duration::from_secs(60),
    }
}

/// Creates run `id`, started and leased to [`driver`], as `Engine::start` does.
async fn driven(journal: &SqliteJournal, id: &str) -> chassis_store::Lease {
    journal
        .create(
            &new_run(id),
            &[started("agent")],
            Wake::Now,
            Some(&driver()),
        )
        .await
        .unwrap()
        .lease
        .unwrap()
}

#[tokio::test]
async fn two_handles_on_one_file_share_the_sequence_rule() {
    // Two processes are two handles on one file; the second writer sees the first's appends.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chassis.db");
    let a = SqliteJournal::open(&path, Sync::Normal).unwrap();
    let b = SqliteJournal::open(&path, Sync::Normal).unwrap();
    // `a` drives the run; `b` is a human deciding from another process.
    let lease = driven(&a, "r").await;
    b.decide("r", 1, &[raised()], Wake::Now).await.unwrap();
    let refused = a
        .append(&lease, 1, &[resumed()], Wake::Now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            Error::SequenceConflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{refused}"
    );
    assert_eq!(a.load("r").await.unwrap().len(), 2);
    // Each writer remembers the runs it appended to, and forgets them when the other writes.
    assert_eq!(
        a.append(&lease, 2, &[resumed()], Wake::Now).await.unwrap(),
        3
    );
    assert_eq!(b.decide("r", 3, &[raised()], Wake::Now).await.unwrap(), 4);
    assert_eq!(
        a.append(&lease, 4, &[resumed()], Wake::Now).await.unwrap(),
        5
    );
    assert_eq!(a.load("r").await.unwrap().len(), 5);
}

/// A journal dropped closes its connection instead of abandoning it: what was queued is
/// written, the WAL is folded into the database file and removed, so the next process to open
/// the file (the next `chassis run`) has no WAL to read back. While another handle has the
/// file open, the WAL stays for it.
#[tokio::test]
async fn a_dropped_journal_leaves_no_wal_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chassis.db");
    let wal = dir.path().join("chassis.db-wal");
    let a = SqliteJournal::open(&path, Sync::Full).unwrap();
    let b = SqliteJournal::open(&path, Sync::Full).unwrap();
    let lease = driven(&a, "r").await;
    a.append(&lease, 1, &[requested(1)], Wake::Now)
        .await
        .unwrap();
    a.release(&lease, 2, Wake::Never).await.unwrap();
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the writes are in the WAL"
    );
    drop(a);
    assert!(
        std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0),
        "another handle still has the file open: the WAL stays"
    );
    drop(b);
    assert!(!wal.exists(), "the last handle to close removes the WAL");
    let reopened = SqliteJournal::open(&path, Sync::Full).unwrap();
    assert_eq!(
        reopened.load("r").await.unwrap().len(),
        2,
        "nothing was lost"
    );
}

#[tokio::test]
async fn two_handles_on_one_file_never_share_a_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chassis.db");
    let a = SqliteJournal::open(&path, Sync::Normal).unwrap();
    let b = SqliteJournal::open(&path, Sync::Normal).unwrap();
    a.create(&new_run("r"), &[started("agent")], Wake::Now, None)
        .await
        .unwrap();
    let lease = a
        .claim("a", Duration::from_secs(60), 5)
        .await
        .unwrap()
        .remove(0);
    assert!(
        b.claim("b", Duration::from_secs(60), 5)
            .await
            .unwrap()
            .is_empty()
    );
    a.release(&lease, 1, Wake::Now).await.unwrap();
    assert_eq!(
        b.claim("b", Duration::from_secs(60), 5)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The schema chassis wrote before leases existed (user_version 1).
const VERSION_1: &str = "
CREATE TABLE runs (
    run_id     TEXT PRIMARY KEY,
    agent      TEXT NOT NULL,
    status     TEXT NOT NULL,
    last_seq   INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX runs_by_status ON runs (status, created_ms);
CREATE INDEX runs_by_created ON runs (created_ms);
CREATE TABLE events (
    run_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    at_ms  INTEGER NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
PRAGMA user_version = 1;
";

#[tokio::test]
async fn an_old_file_is_migrated_and_its_running_runs_become_claimable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(VERSION_1).unwrap();
        let data = serde_json::to_string(&started("agent")).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO runs VALUES ('live', 'agent', 'running', 1, 5, 5);
             INSERT INTO runs VALUES ('done', 'agent', 'completed', 1, 6, 6);
             INSERT INTO events VALUES ('live', 1, 5, '{data}');
             INSERT INTO events VALUES ('done', 1, 6, '{data}');"
        ))
        .unwrap();
    }
    let journal = SqliteJournal::open(&path, Sync::Normal).unwrap();
    assert_eq!(journal.load("live").await.unwrap().len(), 1);
    let leases = journal
        .claim("w", Duration::from_secs(60), 5)
        .await
        .unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].run_id, "live");
    assert_eq!(
        journal
            .append(&leases[0], 1, &[requested(1)], Wake::Now)
            .await
            .unwrap(),
        2
    );
    drop(journal);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, chassis_store::schema_version("old.db"));
}

#[tokio::test]
async fn a_file_from_a_newer_chassis_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 1000;")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteJournal::open(&path, Sync::Full).err().unwrap();
    assert!(
        matches!(
            err,
            Error::SchemaTooNew {
                found: 1000,
                supported,
            } if supported == chassis_store::schema_version("chassis.db")
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "journal schema version 1000 is newer than this chassis supports ({}); upgrade chassis",
            chassis_store::schema_version("chassis.db")
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["new.db"], "no WAL or other file was created");
}

#[tokio::test]
async fn open_takes_a_path_and_refuses_other_urls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/chassis.db");
    let journal = chassis_store::open(path.to_str().unwrap()).await.unwrap();
    journal
        .create(&new_run("r"), &[started("agent")], Wake::Now, None)
        .await
        .unwrap();
    assert!(path.exists());

    let err = chassis_store::open("mysql://bob:hunter2@db/x")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidTarget { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("unsupported scheme `mysql`"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(matches!(
        chassis_store::open("  ").await,
        Err(Error::InvalidTarget { .. })
    ));
}

/// A journal opened for reading sees what a writer commits, and refuses every write as such
/// without touching the file; a missing file is not created.
#[tokio::test]
async fn a_read_only_handle_reads_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chassis.db");
    assert!(SqliteJournal::open_read_only(&path).is_err());
    assert!(!path.exists(), "opening for reading creates nothing");
    let writer = SqliteJournal::open(&path, Sync::Full).unwrap();
    writer
        .create(&new_run("r"), &[started("agent")], Wake::Now, None)
        .await
        .unwrap();
    let reader = SqliteJournal::open_read_only(&path).unwrap();
    assert_eq!(reader.load("r").await.unwrap().len(), 1);
    let refused = reader
        .decide("r", 1, &[raised()], Wake::Now)
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::ReadOnly { .. }), "{refused}");
    let refused = reader
        .create(&new_run("s"), &[started("agent")], Wake::Now, None)
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::ReadOnly { .. }), "{refused}");
    writer.decide("r", 1, &[raised()], Wake::Now).await.unwrap();
    assert_eq!(
        reader.load("r").await.unwrap().len(),
        2,
        "the reader sees new commits"
    );
    assert!(matches!(reader.load("s").await, Err(Error::RunNotFound(_))));
}

/// A step of an executing run (no new status, its wake time still "now") writes event rows
/// only: a trigger on `runs` sees no write, so the step costs the WAL no page of that table.
/// The run's length and last write are read from its last event; a status change does write
/// the row.
#[tokio::test]
async fn a_step_that_changes_no_status_or_wake_writes_only_event_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chassis.db");
    let clock = chassis_store::ManualClock::new(1_000_000);
    let journal = SqliteJournal::open_with_clock(&path, Sync::Normal, clock.clone()).unwrap();
    let lease = driven(&journal, "r").await;
    let watch = rusqlite::Connection::open(&path).unwrap();
    watch
        .execute_batch(
            "CREATE TABLE runs_written (run_id TEXT);
             CREATE TRIGGER runs_written AFTER UPDATE ON runs
             BEGIN INSERT INTO runs_written VALUES (old.run_id); END;",
        )
        .unwrap();
    let written = || -> i64 {
        watch
            .query_row("SELECT count(*) FROM runs_written", [], |row| row.get(0))
            .unwrap()
    };

    let mut seq = 1;
    for step in 1..=3 {
        clock.advance(1_000);
        seq = journal
            .append(&lease, seq, &[requested(step)], Wake::Now)
            .await
            .unwrap();
    }
    assert_eq!(seq, 4);
    assert_eq!(written(), 0, "a step wrote the runs row");
    let listed = journal.list(&ListFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_seq, 4);
    assert_eq!(listed[0].updated_ms, 1_003_000, "the last event's time");

    // The trigger does see writes: a status change is one.
    journal
        .append(&lease, seq, &[completed()], Wake::Never)
        .await
        .unwrap();
    assert_eq!(written(), 1);
}
