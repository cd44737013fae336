//! Journal bytes per step, for short and long runs.
//!
//! Method: runs of 10 and of 50 steps are journaled into two fresh SQLite files. Then each
//! file is checkpointed (the WAL folded into the database) and measured two ways: the bytes
//! of the events' JSON (`SELECT sum(length(CAST(data AS BLOB))) FROM events`), and the file itself (pages ×
//! page size, so keys, indexes and free space in pages count too), whole and beyond what the
//! same file held empty (its schema: a page for each table and index, whatever the runs).
//! Per step = bytes / steps.
//! Flatness is the ratio of the 50-step figure to the 10-step one for the events of the steps
//! alone (without `run_started` and `run_completed`, which every run has once).

use chassis_engine::Engine;
use chassis_store::Sync;
use rusqlite::Connection;

use crate::harness::{self, complete};
use crate::{Bench, Error, Figure, JOURNAL_STEPS, Target, Unit};

/// Bytes per step the target allows (1.5 KB, read as 1,536 bytes).
const TARGET_BYTES: f64 = 1536.0;

/// Bytes of the SQLite file per step the target allows (1 KB, read as 1,024 bytes).
const TARGET_FILE_BYTES: f64 = 1024.0;

/// How much the per-step bytes of 50-step runs may exceed those of 10-step runs and still be
/// called flat.
const FLAT_RATIO: f64 = 1.10;

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let mock = bench.mock()?;
    let runtime = harness::runtime()?;
    let agent = bench.fixture.agent("journal", mock.base_url())?;
    let mut figures = Vec::new();
    let mut step_only = Vec::new();
    for steps in JOURNAL_STEPS {
        let runs = bench.sizes.journal_runs;
        bench.say(&format!("journal size: {runs} runs of {steps} steps"));
        let path = bench.fixture.db(&format!("journal-{steps}"));
        let empty = runtime.block_on(async {
            let journal = harness::journal(&path, Sync::Full)?;
            drop(journal);
            Size::of(&path)
        })?;
        runtime.block_on(async {
            let journal = harness::journal(&path, Sync::Full)?;
            let engine = Engine::new(journal);
            for _ in 0..runs {
                complete(&engine, &agent, steps).await?;
            }
            Ok::<_, Error>(())
        })?;
        let size = Size::of(&path)?;
        let total_steps = (runs as u64 * u64::from(steps)) as f64;
        let mut data = bench.figure(
            format!("journal bytes per step (event JSON), {steps}-step runs"),
            size.data as f64 / total_steps,
            Unit::Bytes,
        );
        data.target = Some(Target::AtMost(TARGET_BYTES));
        figures.push(data);
        figures.push(bench.figure(
            format!("journal bytes per step (SQLite file), {steps}-step runs"),
            size.file as f64 / total_steps,
            Unit::Bytes,
        ));
        let mut grown = bench.figure(
            format!(
                "journal bytes per step (SQLite file beyond the empty journal's {} B), \
                 {steps}-step runs",
                empty.file
            ),
            size.file.saturating_sub(empty.file) as f64 / total_steps,
            Unit::Bytes,
        );
        grown.target = Some(Target::AtMost(TARGET_FILE_BYTES));
        figures.push(grown);
        step_only.push(size.steps_data as f64 / total_steps);
    }
    if let [short, long] = step_only[..] {
        let mut flat = bench.figure(
            "per-step event bytes, 50-step ÷ 10-step runs",
            long / short,
            Unit::Ratio,
        );
        flat.target = Some(Target::AtMost(FLAT_RATIO));
        figures.push(flat);
    }
    Ok(figures)
}

/// Bytes in one journal file.
struct Size {
    /// JSON of every event.
    data: u64,
    /// JSON of the events that belong to steps (all but `run_started` and `run_completed`).
    steps_data: u64,
    /// The database file after a checkpoint.
    file: u64,
}

impl Size {
    fn of(path: &std::path::Path) -> Result<Size, Error> {
        let sql = |source| Error::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql)?;
        let (data, steps_data): (i64, i64) = conn
            .query_row(
                "SELECT coalesce(sum(length(CAST(data AS BLOB))), 0),
                        coalesce(sum(CASE WHEN json_extract(data, '$.kind')
                                 IN ('run_started', 'run_completed') THEN 0
                                 ELSE length(CAST(data AS BLOB)) END), 0)
                 FROM events",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(sql)?;
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .map_err(sql)?;
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(sql)?;
        Ok(Size {
            data: data as u64,
            steps_data: steps_data as u64,
            file: (pages * page_size) as u64,
        })
    }
}
