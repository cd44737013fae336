//! Retention: purge with an archive, then import, of many ended runs, on SQLite and on
//! PostgreSQL (when [`crate::Options::pg`], `chassis bench --pg` or `CHASSIS_BENCH_PG_URL`,
//! names a server).
//!
//! Method: one real 2-step run against the mock gives the events a short run journals (8:
//! `run_started`, two model calls, one tool call, `run_completed`). The journal is filled with
//! copies of it under fresh ids (each tool call's idempotency key renamed to its run), one
//! `Journal::create` per run holding all its events, 256 at a time so that the SQLite writer
//! commits them in groups; the filling is not timed. A digest of the whole journal is taken
//! (every run's id, agent, status, version, creation and last-event times, and every event's
//! sequence, time and JSON). Then what `chassis purge --older-than 0ms --archive FILE` does is
//! timed, through the same engine calls (`Engine::purgeable`, `Engine::write_archive`,
//! `Engine::purge`); the journal must then list no run. Then what `chassis import FILE` does
//! (`Engine::import_archive`, one run at a time, as the command) is timed, and the digest taken
//! again must equal the first.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chassis_core::{Event, RunStatus, Wake};
use chassis_engine::{Engine, PurgeFilter};
use chassis_store::{Journal, ListFilter, NewRun, Sync};

use crate::harness::{self, complete};
use crate::{Bench, Error, Figure, Unit};

/// Steps of the template run: two model calls and the tool call between them.
pub(crate) const RETENTION_STEPS: u32 = 2;

/// Runs created at once while filling.
const FILL_CONCURRENCY: usize = 256;

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let mock = bench.mock()?;
    let runtime = harness::runtime()?;
    let runs = bench.sizes.retention_runs;
    let agent = bench.fixture.agent("retention", mock.base_url())?;
    let template = runtime.block_on(async {
        let journal = harness::journal(&bench.fixture.db("retention-template"), Sync::Full)?;
        let engine = Engine::new(journal.clone());
        let outcome = complete(&engine, &agent, RETENTION_STEPS).await?;
        let records = journal.load(&outcome.run_id).await?;
        Ok::<_, Error>((
            outcome.run_id,
            records.into_iter().map(|r| r.event).collect::<Vec<_>>(),
        ))
    })?;

    let mut figures = Vec::new();
    let sqlite: Arc<dyn Journal> = harness::journal(&bench.fixture.db("retention"), Sync::Full)?;
    let archive = bench.fixture.root().join("retention-sqlite.jsonl.gz");
    figures.extend(runtime.block_on(round_trip(
        bench, "SQLite", sqlite, &template, runs, &archive,
    ))?);

    match bench.pg {
        Some(url) => {
            let archive = bench.fixture.root().join("retention-pg.jsonl.gz");
            figures.extend(runtime.block_on(async {
                let schema = PgSchema::create(bench, url).await?;
                let measured = match chassis_store::open(&schema.url).await {
                    Ok(journal) => {
                        round_trip(bench, "PostgreSQL", journal, &template, runs, &archive).await
                    }
                    Err(e) => Err(e.into()),
                };
                schema.drop(bench).await;
                measured
            })?);
        }
        None => bench
            .say("retention: PostgreSQL skipped (no --pg URL and CHASSIS_BENCH_PG_URL is not set)"),
    }
    Ok(figures)
}

/// Fills `journal` with `runs` copies of the template, purges them into `archive`, imports
/// them back, and checks nothing changed.
async fn round_trip(
    bench: &Bench<'_>,
    store: &str,
    journal: Arc<dyn Journal>,
    template: &(String, Vec<Event>),
    runs: usize,
    archive: &std::path::Path,
) -> Result<Vec<Figure>, Error> {
    bench.say(&format!(
        "retention ({store}): filling with {runs} runs of {} events",
        template.1.len()
    ));
    fill(bench, &journal, template, runs).await?;
    let engine = Engine::new(Arc::clone(&journal));
    let before = Digest::of(&*journal).await?;
    if before.runs != runs as u64 {
        return Err(bench.failed(format!(
            "{store}: the journal holds {} runs after filling, not {runs}",
            before.runs
        )));
    }
    // Every run's last event is now older than "0 ms ago".
    tokio::time::sleep(Duration::from_millis(10)).await;

    bench.say(&format!(
        "retention ({store}): purge --older-than 0ms --archive"
    ));
    let began = Instant::now();
    let selected = engine
        .purgeable(&PurgeFilter {
            older_than_ms: 0,
            statuses: vec![
                RunStatus::Completed,
                RunStatus::Failed,
                RunStatus::Cancelled,
            ],
            agent: None,
        })
        .await?;
    let selected_in = began.elapsed();
    engine
        .write_archive(&selected, archive)
        .await
        .map_err(|e| bench.failed(format!("{store}: {e}")))?;
    let archived_in = began.elapsed();
    let ids: Vec<String> = selected.into_iter().map(|s| s.run_id).collect();
    let purged = engine.purge(&ids).await?;
    let purge_took = began.elapsed();
    if purged.runs != runs as u64 {
        return Err(bench.failed(format!(
            "{store}: purge removed {} runs of the {runs} ({} selected)",
            purged.runs,
            ids.len()
        )));
    }
    let left = journal
        .list(&ListFilter {
            limit: Some(1),
            ..ListFilter::default()
        })
        .await?;
    if !left.is_empty() {
        return Err(bench.failed(format!(
            "{store}: run {} is still listed after the purge",
            left[0].run_id
        )));
    }
    let archive_bytes = std::fs::metadata(archive)
        .map_err(Error::io(format!("reading {}", archive.display())))?
        .len();

    bench.say(&format!("retention ({store}): import"));
    let began = Instant::now();
    let imported = engine
        .import_archive(archive)
        .await
        .map_err(|e| bench.failed(format!("{store}: {e}")))?;
    let import_took = began.elapsed();
    if imported.runs != runs as u64 || imported.skipped != 0 {
        return Err(bench.failed(format!(
            "{store}: import restored {} runs and skipped {}, of {runs}",
            imported.runs, imported.skipped
        )));
    }
    let after = Digest::of(&*journal).await?;
    if after != before {
        return Err(bench.failed(format!(
            "{store}: the journal after purge and import differs from before: {before:?} then {after:?}"
        )));
    }
    bench.say(&format!(
        "retention ({store}): round trip exact: {} runs, {} events, digest {:016x}; purge {:.1} s \
         (select {:.1} s, archive {:.1} s, delete {:.1} s), import {:.1} s",
        after.runs,
        after.events,
        after.hash,
        purge_took.as_secs_f64(),
        selected_in.as_secs_f64(),
        (archived_in - selected_in).as_secs_f64(),
        (purge_took - archived_in).as_secs_f64(),
        import_took.as_secs_f64(),
    ));

    let per_second = |took: Duration| runs as f64 / took.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(vec![
        bench.figure(
            format!("retention ({store}): purge --archive of {runs} runs, runs/s"),
            per_second(purge_took),
            Unit::PerSecond,
        ),
        bench.figure(
            format!("retention ({store}): purge --archive of {runs} runs, total"),
            purge_took.as_secs_f64() * 1e3,
            Unit::Millis,
        ),
        bench.figure(
            format!("retention ({store}): journal bytes freed, as purge reports"),
            purged.bytes as f64,
            Unit::Bytes,
        ),
        bench.figure(
            format!("retention ({store}): archive size"),
            archive_bytes as f64,
            Unit::Bytes,
        ),
        bench.figure(
            format!("retention ({store}): import of {runs} runs, runs/s"),
            per_second(import_took),
            Unit::PerSecond,
        ),
        bench.figure(
            format!("retention ({store}): import of {runs} runs, total"),
            import_took.as_secs_f64() * 1e3,
            Unit::Millis,
        ),
    ])
}

/// Creates `runs` ended runs, each the template under a fresh id.
async fn fill(
    bench: &Bench<'_>,
    journal: &Arc<dyn Journal>,
    template: &(String, Vec<Event>),
    runs: usize,
) -> Result<(), Error> {
    let (template_id, events) = template;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..runs {
        if tasks.len() >= FILL_CONCURRENCY {
            joined(bench, tasks.join_next().await)?;
        }
        let run_id = format!("run_retention_{i:07}");
        let events: Vec<Event> = events
            .iter()
            .map(|event| {
                let mut event = event.clone();
                if let Event::ToolStarted {
                    idempotency_key, ..
                } = &mut event
                {
                    *idempotency_key = idempotency_key.replacen(template_id, &run_id, 1);
                }
                event
            })
            .collect();
        let journal = Arc::clone(journal);
        tasks.spawn(async move {
            journal
                .create(
                    &NewRun {
                        run_id,
                        agent: "retention".to_string(),
                        idempotency_key: None,
                    },
                    &events,
                    Wake::Never,
                    None,
                )
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        joined(bench, Some(done))?;
    }
    Ok(())
}

/// The outcome of one create task.
fn joined(
    bench: &Bench<'_>,
    done: Option<
        Result<Result<chassis_store::Created, chassis_store::Error>, tokio::task::JoinError>,
    >,
) -> Result<(), Error> {
    match done {
        Some(Ok(created)) => created.map(|_| ()).map_err(Error::from),
        Some(Err(e)) => Err(bench.failed(format!("a create task ended abnormally: {e}"))),
        None => Ok(()),
    }
}

/// What a journal holds, summed up: runs, events, and a hash of all of it in run id order.
#[derive(Debug, PartialEq, Eq)]
struct Digest {
    runs: u64,
    events: u64,
    hash: u64,
}

impl Digest {
    async fn of(journal: &dyn Journal) -> Result<Digest, Error> {
        let mut summaries = Vec::new();
        let mut after = None;
        loop {
            let page = journal
                .list(&ListFilter {
                    limit: Some(chassis_engine::MAX_PAGE),
                    after: after.clone(),
                    ..ListFilter::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.created_ms, last.run_id.clone()));
            let full = page.len() == chassis_engine::MAX_PAGE;
            summaries.extend(page);
            if !full {
                break;
            }
        }
        summaries.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        // SipHash with fixed keys: the same bytes hash the same in both passes.
        let mut hasher = DefaultHasher::new();
        let mut events = 0;
        for summary in &summaries {
            (
                &summary.run_id,
                &summary.agent,
                summary.status.as_str(),
                summary.last_seq,
                summary.created_ms,
                summary.updated_ms,
                &summary.version,
            )
                .hash(&mut hasher);
            for record in journal.load(&summary.run_id).await? {
                let json = serde_json::to_string(&record.event).unwrap_or_default();
                (record.seq, record.at_ms, json).hash(&mut hasher);
                events += 1;
            }
        }
        Ok(Digest {
            runs: summaries.len() as u64,
            events,
            hash: hasher.finish(),
        })
    }
}

/// A schema of the benchmark's own on the PostgreSQL server, dropped when it is done.
struct PgSchema {
    /// The server's URL with the schema as its search path.
    url: String,
    name: String,
    client: tokio_postgres::Client,
}

impl PgSchema {
    async fn create(bench: &Bench<'_>, base: &str) -> Result<PgSchema, Error> {
        let failed = |e: tokio_postgres::Error| {
            bench.failed(format!(
                "PostgreSQL at --pg/CHASSIS_BENCH_PG_URL: {e}{}",
                std::error::Error::source(&e).map_or(String::new(), |s| format!(": {s}"))
            ))
        };
        let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
            .await
            .map_err(failed)?;
        tokio::spawn(connection);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("bench_retention_{}_{nanos}", std::process::id());
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(failed)?;
        let joiner = if base.contains('?') { '&' } else { '?' };
        Ok(PgSchema {
            url: format!("{base}{joiner}options=-csearch_path%3D{name}"),
            name,
            client,
        })
    }

    /// Drops the schema and everything in it; a failure is said, not returned.
    async fn drop(self, bench: &Bench<'_>) {
        if let Err(e) = self
            .client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
        {
            bench.say(&format!(
                "retention: could not drop PostgreSQL schema {}: {e}",
                self.name
            ));
        }
    }
}
