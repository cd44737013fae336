//! The events table's layout against the bytes and syncs of a durable step: the schema before
//! version 11 against an integer run key, a rowid table or not, one B-tree or two, and other
//! page sizes, all fed the same events. The store adopted "packed integer rowid, 2 KiB".
//!
//! Method: one real 10-step run is driven by the engine into a fresh journal (`Sync::Full`),
//! with a clock that never reads the same millisecond twice, so the events of each commit
//! share a time stamp that no other commit has: the run is read back as its commits (the
//! creation, one per step). Each layout is then a child process (`chassis bench --child`)
//! that makes a fresh journal with chassis's own migrations, replaces the `events` table (and
//! the page size) as the layout says, and replays that run 100 times, one commit per
//! transaction in WAL mode with `synchronous = FULL`, as the store commits them: the creation
//! inserts the `runs` row and `run_started`, each step its events, the last one also sets the
//! run's status, and the lease's release is a commit of its own (two layouts instead clear the
//! lease in the last append, to show what that commit costs; one writes the `runs` row alone,
//! the share every layout has). Each replayed run gets a fresh run id made as the engine makes
//! them (time-ordered), written into its events where the original's was. SQLite's automatic
//! checkpoints run as they would (every 1,000 WAL pages), and a last passive checkpoint copies
//! what is left into the database file, so checkpoint writes are counted amortised over all
//! the steps (the set-up and the warm-up are checkpointed before the count starts). The child reads its own `/proc/self/io` around the replay (`wchar`: bytes passed
//! to write calls, nothing but the journal writes then; `write_bytes`: what reached the block
//! layer, in whole 4 KiB pages); under `strace` (`trace.rs`) the writes and syncs are put to the
//! database file and its WAL.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chassis_engine::Engine;
use chassis_store::{Clock, SqliteJournal, Sync};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::harness::{self, complete};
use crate::trace::{self, Tally};
use crate::{Bench, Error, Figure, Unit};

/// Steps of the recorded run.
const STEPS: u32 = 10;

/// Replayed runs per layout (warm-up first, then measured).
const WARMUP: usize = 2;
const RUNS: usize = 100;
const QUICK_RUNS: usize = 3;

/// How a layout keys the events of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    /// The run's text id and the sequence number, as before schema version 11.
    Text,
    /// The `runs` row's integer rowid and the sequence number.
    Integer,
    /// One integer: the `runs` row's rowid × 2³² + the sequence number, as the events'
    /// rowid (one B-tree, nothing beside it).
    Packed,
}

/// One way to lay out the events.
struct Layout {
    name: &'static str,
    page_size: u32,
    key: Key,
    /// The `events` table replacing the migrations' one (which is [`PACKED`]).
    table: &'static str,
    /// Whether the events are written at all (without: the `runs` row's writes alone).
    events: bool,
    /// Whether the lease's release is a commit of its own, as today, or is done by the last
    /// append (which ends the run).
    release_apart: bool,
}

impl Layout {
    const fn new(name: &'static str, page_size: u32, key: Key, table: &'static str) -> Self {
        Layout {
            name,
            page_size,
            key,
            table,
            events: true,
            release_apart: true,
        }
    }
}

/// The events table before schema version 11 (the store's own is now [`PACKED`]).
const TEXT_WITHOUT_ROWID: &str = "CREATE TABLE events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)) WITHOUT ROWID";
const TEXT_ROWID: &str = "CREATE TABLE events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq))";
const INT_WITHOUT_ROWID: &str = "CREATE TABLE events (
    run INTEGER NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run, seq)) WITHOUT ROWID";
const INT_ROWID: &str = "CREATE TABLE events (
    run INTEGER NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run, seq))";
const PACKED: &str = "CREATE TABLE events (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, data TEXT NOT NULL)";

const LAYOUTS: [Layout; 15] = [
    Layout::new(
        "before v11: text key WITHOUT ROWID, 4 KiB",
        4096,
        Key::Text,
        TEXT_WITHOUT_ROWID,
    ),
    Layout::new(
        "the table before v11, 1 KiB pages",
        1024,
        Key::Text,
        TEXT_WITHOUT_ROWID,
    ),
    Layout::new(
        "the table before v11, 2 KiB pages",
        2048,
        Key::Text,
        TEXT_WITHOUT_ROWID,
    ),
    Layout::new(
        "the table before v11, 8 KiB pages",
        8192,
        Key::Text,
        TEXT_WITHOUT_ROWID,
    ),
    Layout::new(
        "text key, rowid table + index, 4 KiB",
        4096,
        Key::Text,
        TEXT_ROWID,
    ),
    Layout::new(
        "integer key WITHOUT ROWID, 4 KiB",
        4096,
        Key::Integer,
        INT_WITHOUT_ROWID,
    ),
    Layout::new(
        "integer key, rowid table + index, 4 KiB",
        4096,
        Key::Integer,
        INT_ROWID,
    ),
    Layout::new("packed integer rowid, 4 KiB", 4096, Key::Packed, PACKED),
    Layout::new("packed integer rowid, 1 KiB", 1024, Key::Packed, PACKED),
    Layout::new("packed integer rowid, 2 KiB", 2048, Key::Packed, PACKED),
    Layout::new("packed integer rowid, 8 KiB", 8192, Key::Packed, PACKED),
    Layout {
        release_apart: false,
        ..Layout::new(
            "before v11, no release commit, 4 KiB",
            4096,
            Key::Text,
            TEXT_WITHOUT_ROWID,
        )
    },
    Layout {
        release_apart: false,
        ..Layout::new(
            "packed, no release commit, 2 KiB",
            2048,
            Key::Packed,
            PACKED,
        )
    },
    Layout {
        release_apart: false,
        ..Layout::new(
            "packed, no release commit, 1 KiB",
            1024,
            Key::Packed,
            PACKED,
        )
    },
    Layout {
        events: false,
        ..Layout::new(
            "the runs row alone (no events), 4 KiB",
            4096,
            Key::Text,
            TEXT_WITHOUT_ROWID,
        )
    },
];

/// A clock that reads the system's, but never the same millisecond twice: every commit of the
/// store reads it once, so each commit's events get a time stamp of their own.
#[derive(Debug, Default)]
struct DistinctClock {
    last: AtomicU64,
}

impl Clock for DistinctClock {
    fn now_ms(&self) -> u64 {
        let system = chassis_store::clock::system().now_ms();
        let mut last = self.last.load(Ordering::SeqCst);
        loop {
            let next = system.max(last + 1);
            match self
                .last
                .compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

/// A real run, as its commits.
#[derive(Debug)]
struct Recording {
    run_id: String,
    agent: String,
    status: String,
    version: Option<String>,
    version_label: Option<String>,
    /// Each commit's events (sequence number, JSON), in order.
    commits: Vec<Vec<(i64, String)>>,
}

impl Recording {
    fn to_json(&self) -> Value {
        json!({
            "run_id": self.run_id,
            "agent": self.agent,
            "status": self.status,
            "version": self.version,
            "version_label": self.version_label,
            "commits": self.commits,
        })
    }

    fn from_json(v: &Value) -> Option<Recording> {
        let text = |key: &str| v[key].as_str().map(str::to_string);
        let commits = v["commits"]
            .as_array()?
            .iter()
            .map(|commit| {
                commit
                    .as_array()?
                    .iter()
                    .map(|event| Some((event[0].as_i64()?, event[1].as_str()?.to_string())))
                    .collect::<Option<Vec<_>>>()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Recording {
            run_id: text("run_id")?,
            agent: text("agent")?,
            status: text("status")?,
            version: text("version"),
            version_label: text("version_label"),
            commits,
        })
    }

    /// Reads the one run of the journal at `path`.
    fn read(path: &Path) -> Result<Recording, Error> {
        let sql = sql_error(path);
        let conn = Connection::open(path).map_err(sql)?;
        let (run_id, agent, status, version, version_label) = conn
            .query_row(
                "SELECT run_id, agent, status, version, version_label FROM runs",
                [],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .map_err(sql)?;
        let mut stmt = conn
            .prepare(
                "SELECT id & 4294967295, at_ms, data FROM events
                 WHERE id >> 32 = (SELECT run_key FROM runs WHERE run_id = ?1) ORDER BY id",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![run_id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .map_err(sql)?;
        let mut commits: Vec<Vec<(i64, String)>> = Vec::new();
        let mut last_at = None;
        for row in rows {
            let (seq, at, data) = row.map_err(sql)?;
            match commits.last_mut() {
                Some(commit) if last_at == Some(at) => commit.push((seq, data)),
                _ => commits.push(vec![(seq, data)]),
            }
            last_at = Some(at);
        }
        Ok(Recording {
            run_id,
            agent,
            status,
            version,
            version_label,
            commits,
        })
    }
}

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> Error + Copy + '_ {
    move |source| Error::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let mock = bench.mock()?;
    let runtime = harness::runtime()?;
    let agent = bench.fixture.agent("layouts", mock.base_url())?;
    let recorded = bench.fixture.db("layouts-recorded");
    bench.say(&format!("layouts: recording a real {STEPS}-step run"));
    runtime.block_on(async {
        let clock: Arc<dyn Clock> = Arc::new(DistinctClock::default());
        let journal = Arc::new(SqliteJournal::open_with_clock(
            &recorded,
            Sync::Full,
            clock,
        )?);
        let engine = Engine::new(journal);
        complete(&engine, &agent, STEPS).await?;
        Ok::<_, Error>(())
    })?;
    let recording = Recording::read(&recorded)?;
    let events: usize = recording.commits.iter().map(Vec::len).sum();
    bench.say(&format!(
        "layouts: {events} events in {} commits",
        recording.commits.len()
    ));
    let recording_path = bench.fixture.root().join("layouts-recording.json");
    std::fs::write(&recording_path, recording.to_json().to_string())
        .map_err(Error::io(format!("writing {}", recording_path.display())))?;
    let strace = crate::steps::tool_available("strace");
    if !strace {
        bench.say("layouts: strace not found: no fsync counts (apt-get install strace)");
    }
    let runs = if bench.sizes.journal_runs < 10 {
        QUICK_RUNS
    } else {
        RUNS
    };
    let mut figures = Vec::new();
    for (i, layout) in LAYOUTS.iter().enumerate() {
        bench.say(&format!("layouts: {}", layout.name));
        let spec = json!({
            "kind": "layout",
            "layout": i,
            "recording": recording_path,
            "db": bench.fixture.db(&format!("layout-{i}")),
            "dir": bench.fixture.root(),
            "warmup": WARMUP,
            "runs": runs,
        });
        let (report, tally) = spawn(bench, &spec, strace)?;
        let steps = report.steps;
        let name = layout.name;
        figures.push(bench.figure(
            format!("{name}: bytes written per step (write calls)"),
            report.wchar / steps,
            Unit::Bytes,
        ));
        if let Some(tally) = tally {
            figures.push(bench.figure(
                format!("{name}: of which the WAL (commits)"),
                tally.wal.bytes / steps,
                Unit::Bytes,
            ));
            figures.push(bench.figure(
                format!("{name}: of which the database file (checkpoints)"),
                tally.db.bytes / steps,
                Unit::Bytes,
            ));
            figures.push(bench.figure(
                format!("{name}: fsyncs per step (WAL + database file)"),
                tally.journal().syncs / steps,
                Unit::Ratio,
            ));
        }
        figures.push(bench.figure(
            format!("{name}: bytes to the block layer per step (whole pages)"),
            report.write_bytes / steps,
            Unit::Bytes,
        ));
        figures.push(bench.figure(
            format!("{name}: database file per step"),
            report.db_bytes / steps,
            Unit::Bytes,
        ));
    }
    Ok(figures)
}

/// What a layout child reports.
#[derive(Debug)]
struct Report {
    steps: f64,
    wchar: f64,
    write_bytes: f64,
    db_bytes: f64,
}

fn spawn(bench: &Bench, spec: &Value, strace: bool) -> Result<(Report, Option<Tally>), Error> {
    let out = tempfile::Builder::new()
        .prefix("chassis-bench-trace-")
        .tempfile_in(bench.fixture.root())
        .map_err(Error::io("creating a file for strace's output"))?
        .into_temp_path();
    let mut command = if strace {
        let mut c = Command::new("strace");
        c.args(trace::strace_args(&out)).arg(bench.chassis);
        c
    } else {
        Command::new(bench.chassis)
    };
    let output = command
        .arg("bench")
        .arg("--child")
        .arg(spec.to_string())
        .env_remove("CHASSIS_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(Error::io("running a layout child"))?;
    if !output.status.success() {
        return Err(bench.failed(format!(
            "the layout child {spec} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| {
            Some(Report {
                steps: v["steps"].as_f64()?,
                wchar: v["wchar"].as_f64()?,
                write_bytes: v["write_bytes"].as_f64()?,
                db_bytes: v["db_bytes"].as_f64()?,
            })
        })
        .ok_or_else(|| bench.failed(format!("the layout child printed no report: {stdout}")))?;
    let tally = if strace {
        let db = PathBuf::from(spec["db"].as_str().unwrap_or_default());
        let text = std::fs::read_to_string(&out)
            .map_err(Error::io(format!("reading {}", out.display())))?;
        Some(
            Tally::parse(&text, &db)
                .ok_or_else(|| bench.failed("strace's output lacks the child's marks"))?,
        )
    } else {
        None
    };
    Ok((report, tally))
}

/// `chassis bench --child` for a layout: replays the recording into a fresh journal laid out
/// as the layout says and prints one line of JSON with what the replay wrote.
pub(crate) fn child(spec: &Value) -> Result<String, Error> {
    let failed = |message: String| Error::Failed {
        bench: "layouts child",
        message,
    };
    let layout = spec["layout"]
        .as_u64()
        .and_then(|i| LAYOUTS.get(i as usize))
        .ok_or_else(|| failed(format!("--child: no such layout in {spec}")))?;
    let path_of = |key: &str| {
        spec[key]
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| failed(format!("--child: `{key}` is missing")))
    };
    let (recording, db, dir) = (path_of("recording")?, path_of("db")?, path_of("dir")?);
    let number = |key: &str| {
        spec[key]
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| failed(format!("--child: `{key}` is missing")))
    };
    let (warmup, runs) = (number("warmup")?, number("runs")?);
    let text = std::fs::read_to_string(&recording)
        .map_err(Error::io(format!("reading {}", recording.display())))?;
    let recording = serde_json::from_str::<Value>(&text)
        .ok()
        .as_ref()
        .and_then(Recording::from_json)
        .ok_or_else(|| failed(format!("{} is not a recording", recording.display())))?;

    let conn = prepare(&db, layout)?;
    let mut replay = Replay {
        conn,
        layout,
        recording: &recording,
        db: &db,
        next: 0,
    };
    for _ in 0..warmup {
        replay.run()?;
    }
    let sql = sql_error(&db);
    // What the set-up and the warm-up left in the WAL is not the replay's.
    replay
        .conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(sql)?;
    trace::mark(&dir, true);
    let before = crate::measure::proc_io();
    let mut steps = 0u64;
    for _ in 0..runs {
        steps += replay.run()?;
    }
    replay
        .conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(sql)?;
    let after = crate::measure::proc_io();
    trace::mark(&dir, false);
    let pages: i64 = replay
        .conn
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .map_err(sql)?;
    Ok(json!({
        "steps": steps,
        "wchar": after.wchar.saturating_sub(before.wchar),
        "write_bytes": after.write_bytes.saturating_sub(before.write_bytes),
        "db_bytes": pages * i64::from(layout.page_size),
    })
    .to_string())
}

/// A fresh journal at `db` with chassis's schema, its `events` table and page size as `layout`
/// says, in WAL mode with `synchronous = FULL`.
fn prepare(db: &Path, layout: &Layout) -> Result<Connection, Error> {
    let sql = sql_error(db);
    {
        // The page size is fixed when the file gets its first page, before the migrations.
        let conn = Connection::open(db).map_err(sql)?;
        conn.pragma_update(None, "page_size", layout.page_size)
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
    }
    drop(SqliteJournal::open(db, Sync::Full)?);
    let conn = Connection::open(db).map_err(sql)?;
    // The journal's own connections may still be closing.
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    conn.execute_batch(&format!("DROP TABLE events; {};", layout.table))
        .map_err(sql)?;
    let page_size: u32 = conn
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .map_err(sql)?;
    if page_size != layout.page_size {
        return Err(Error::Failed {
            bench: "layouts child",
            message: format!(
                "{} has {page_size}-byte pages, not the layout's {}",
                db.display(),
                layout.page_size
            ),
        });
    }
    Ok(conn)
}

/// Replays runs of a recording into one journal.
struct Replay<'a> {
    conn: Connection,
    layout: &'a Layout,
    recording: &'a Recording,
    db: &'a Path,
    /// The number of the next run.
    next: u64,
}

impl Replay<'_> {
    /// One run: its commits as the store makes them. Returns its steps (model calls).
    fn run(&mut self) -> Result<u64, Error> {
        let sql = sql_error(self.db);
        let original = &self.recording.run_id;
        // A fresh run id, made as the engine makes them (a ULID: later runs sort after
        // earlier ones, so their events go to the end of a B-tree keyed by it).
        let run_id = chassis_engine::new_run_id();
        self.next += 1;
        let token = (self.next as i64).wrapping_mul(0x5851_F42D_4C95_7F2D);
        let now = chassis_store::clock::system().now_ms() as i64;
        let last = self.recording.commits.len().saturating_sub(1);
        let mut key = 0i64;
        let mut steps = 0u64;
        for (i, commit) in self.recording.commits.iter().enumerate() {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql)?;
            if i == 0 {
                tx.prepare_cached(
                    "INSERT INTO runs (run_id, agent, status, created_ms, wake_at_ms, lease_owner,
                         lease_token, lease_until_ms, version, version_label)
                     VALUES (?1, ?2, 'running', ?3, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        run_id,
                        self.recording.agent,
                        now,
                        "chassis@bench-host:12345",
                        token,
                        now + 30_000,
                        self.recording.version,
                        self.recording.version_label,
                    ])
                })
                .map_err(sql)?;
                key = tx.last_insert_rowid();
            }
            for (seq, data) in commit {
                if data.contains("\"kind\":\"model_requested\"") {
                    steps += 1;
                }
                if !self.layout.events {
                    continue;
                }
                let data = data.replace(original.as_str(), &run_id);
                let inserted = match self.layout.key {
                    Key::Text => tx
                        .prepare_cached(
                            "INSERT INTO events (run_id, seq, at_ms, data) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .and_then(|mut s| s.execute(params![run_id, seq, now, data])),
                    Key::Integer => tx
                        .prepare_cached(
                            "INSERT INTO events (run, seq, at_ms, data) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .and_then(|mut s| s.execute(params![key, seq, now, data])),
                    Key::Packed => tx
                        .prepare_cached("INSERT INTO events (id, at_ms, data) VALUES (?1, ?2, ?3)")
                        .and_then(|mut s| s.execute(params![(key << 32) | seq, now, data])),
                };
                inserted.map_err(sql)?;
            }
            if i == last {
                let sql_text = if self.layout.release_apart {
                    "UPDATE runs SET status = ?2, wake_at_ms = NULL WHERE run_id = ?1"
                } else {
                    "UPDATE runs SET status = ?2, wake_at_ms = NULL, lease_owner = NULL,
                         lease_token = NULL, lease_until_ms = NULL
                     WHERE run_id = ?1"
                };
                tx.prepare_cached(sql_text)
                    .and_then(|mut s| s.execute(params![run_id, self.recording.status]))
                    .map_err(sql)?;
            }
            tx.commit().map_err(sql)?;
        }
        if self.layout.release_apart {
            // The lease's release: a commit of its own.
            self.conn
                .prepare_cached(
                    "UPDATE runs SET lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL
                     WHERE run_id = ?1",
                )
                .and_then(|mut s| s.execute(params![run_id]))
                .map_err(sql)?;
        }
        if steps == 0 {
            return Err(Error::Failed {
                bench: "layouts child",
                message: "the recorded run has no model_requested event".into(),
            });
        }
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_keeps_the_events_of_a_replayed_run() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let recording = Recording {
            run_id: "run_0123456789".into(),
            agent: "a".into(),
            status: "completed".into(),
            version: None,
            version_label: None,
            commits: vec![
                vec![(1, r#"{"kind":"run_started","run":"run_0123456789"}"#.into())],
                vec![
                    (2, r#"{"kind":"model_requested"}"#.into()),
                    (3, r#"{"kind":"model_responded"}"#.into()),
                ],
                vec![(4, r#"{"kind":"run_completed"}"#.into())],
            ],
        };
        for (i, layout) in LAYOUTS.iter().enumerate() {
            let db = dir.path().join(format!("{i}.db"));
            let conn = prepare(&db, layout).expect("the layout's journal");
            let mut replay = Replay {
                conn,
                layout,
                recording: &recording,
                db: &db,
                next: 0,
            };
            assert_eq!(replay.run().expect("a replayed run"), 1, "{}", layout.name);
            assert_eq!(replay.run().expect("a second one"), 1, "{}", layout.name);
            let ended: i64 = replay
                .conn
                .query_row(
                    "SELECT count(*) FROM runs WHERE status = 'completed' AND lease_token IS NULL",
                    [],
                    |row| row.get(0),
                )
                .expect("the runs");
            assert_eq!(ended, 2, "{}", layout.name);
            let (events, renamed): (i64, i64) = replay
                .conn
                .query_row(
                    "SELECT count(*), coalesce(sum(data LIKE '%run_0123456789%'), 0) FROM events",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .expect("the events");
            if !layout.events {
                assert_eq!(events, 0, "{}", layout.name);
                continue;
            }
            // Each replayed run has an id of its own, in its events too.
            assert_eq!((events, renamed), (8, 0), "{}", layout.name);
            let runs: i64 = replay
                .conn
                .query_row(
                    "SELECT count(*) FROM runs r
                     WHERE (SELECT count(*) FROM events WHERE instr(data, r.run_id) > 0) = 1",
                    [],
                    |row| row.get(0),
                )
                .expect("the runs");
            assert_eq!(runs, 2, "{}", layout.name);
            let page_size: u32 = replay
                .conn
                .query_row("PRAGMA page_size", [], |row| row.get(0))
                .expect("the page size");
            assert_eq!(page_size, layout.page_size, "{}", layout.name);
        }
    }
}
