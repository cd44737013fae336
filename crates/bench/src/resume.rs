//! Resume: loading and folding a run of 1,000 events.
//!
//! Method: a real run of 250 steps (249 reads and an answer: 4 events a step, plus
//! `run_started`, the last step's two and `run_completed`) is journaled; then `Engine::load`
//! (read every event from SQLite, decode its JSON, fold) is timed again and again and the
//! median taken. The two halves are timed apart too: `Journal::load` alone, and
//! `RunState::fold` over events already in memory.

use std::time::Instant;

use chassis_core::RunState;
use chassis_engine::Engine;
use chassis_store::{Journal, Sync};

use crate::harness::{self, complete};
use crate::measure::{median, ms, quantile};
use crate::{Bench, Error, Figure, RESUME_STEPS, Target, Unit};

/// The target, in milliseconds.
const TARGET_MS: f64 = 10.0;

/// Events the run is built to have.
const EVENTS: u64 = 1_000;

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let mock = bench.mock()?;
    let iters = bench.sizes.resume_iters;
    bench.say(&format!(
        "resume: a run of {EVENTS} events ({RESUME_STEPS} steps), loaded {iters} times"
    ));
    let runtime = harness::runtime()?;
    let agent = bench.fixture.agent("resume", mock.base_url())?;
    let journal = harness::journal(&bench.fixture.db("resume"), Sync::Full)?;
    let engine = Engine::new(journal.clone());

    let (load, read, fold) = runtime.block_on(async {
        let outcome = complete(&engine, &agent, RESUME_STEPS).await?;
        let run_id = outcome.run_id;
        let state = engine.load(&run_id).await?;
        if state.seq() != EVENTS {
            return Err(bench.failed(format!(
                "run {run_id} has {} events, expected {EVENTS}",
                state.seq()
            )));
        }
        let mut load = Vec::with_capacity(iters);
        let mut read = Vec::with_capacity(iters);
        let mut fold = Vec::with_capacity(iters);
        // One untimed pass warms SQLite's page cache and the statement cache.
        for pass in 0..=iters {
            let began = Instant::now();
            let state = engine.load(&run_id).await?;
            let loaded = began.elapsed();
            std::hint::black_box(&state);

            let began = Instant::now();
            let records = journal.load(&run_id).await?;
            let read_took = began.elapsed();

            let began = Instant::now();
            let state = RunState::fold(records.iter().map(|r| &r.event))
                .map_err(|e| bench.failed(format!("run {run_id}: {e}")))?;
            let fold_took = began.elapsed();
            std::hint::black_box(&state);

            if pass > 0 {
                load.push(ms(loaded));
                read.push(ms(read_took));
                fold.push(ms(fold_took));
            }
        }
        Ok((load, read, fold))
    })?;

    let long = runtime.block_on(long_run(bench, &engine, journal.as_ref(), iters))?;

    let mut figure = bench.figure(
        "resume: load + fold 1,000 events (Engine::load), median",
        median(&load),
        Unit::Millis,
    );
    figure.target = Some(Target::AtMost(TARGET_MS));
    Ok(vec![
        figure,
        bench.figure(
            "resume: load + fold 1,000 events, p99",
            quantile(&load, 0.99),
            Unit::Millis,
        ),
        bench.figure(
            "resume: journal read + JSON decode only, median",
            median(&read),
            Unit::Millis,
        ),
        bench.figure("resume: fold only, median", median(&fold), Unit::Millis),
        {
            let mut figure = bench.figure(
                "resume: 100,000-event run from its snapshot + 999-event tail (Engine::load), median",
                median(&long),
                Unit::Millis,
            );
            figure.target = Some(Target::AtMost(TARGET_MS));
            figure
        },
    ])
}

/// Events of the long run.
const LONG_EVENTS: u64 = 100_000;

/// A 100,000-event run, built from the 1,000-event run's steps renumbered (the journal a real
/// run of 25,000 steps would have), with its snapshot where the driver keeps its last one
/// before the end in the worst case: 999 events before it. Returns `Engine::load` times.
async fn long_run(
    bench: &Bench<'_>,
    engine: &Engine,
    journal: &dyn Journal,
    iters: usize,
) -> Result<Vec<f64>, Error> {
    use chassis_core::{Event, Wake};
    let newest = journal
        .list(&chassis_store::ListFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await?;
    let Some(template) = newest.first() else {
        return Err(bench.failed("no run to copy steps from".to_string()));
    };
    let records = journal.load(&template.run_id).await?;
    let events: Vec<Event> = records.into_iter().map(|r| r.event).collect();
    // One middle step: model_requested up to the next model_requested.
    let starts: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::ModelRequested { .. }))
        .map(|(i, _)| i)
        .collect();
    let (Some(&a), Some(&b)) = (starts.get(1), starts.get(2)) else {
        return Err(bench.failed("the template run has too few steps".to_string()));
    };
    let step = &events[a..b];
    let renumber = |event: &Event, n: u32| -> Event {
        let mut event = event.clone();
        match &mut event {
            Event::ModelRequested { step, .. } | Event::ModelResponded { step, .. } => *step = n,
            Event::ToolStarted {
                call_id,
                idempotency_key,
                ..
            } => {
                *call_id = format!("{n}.0");
                *idempotency_key = format!("long/{n}.0");
            }
            Event::ToolFinished { call_id, .. } => *call_id = format!("{n}.0"),
            _ => {}
        }
        event
    };
    let run_id = "run_resume_100k".to_string();
    let created = journal
        .create(
            &chassis_store::NewRun {
                run_id: run_id.clone(),
                agent: "resume".to_string(),
                idempotency_key: None,
            },
            &events[..1],
            Wake::Now,
            Some(&chassis_store::Driver {
                owner: "bench".to_string(),
                ttl: std::time::Duration::from_secs(3600),
            }),
        )
        .await?;
    let lease = created
        .lease
        .ok_or_else(|| bench.failed("a created run is leased".to_string()))?;
    let mut state =
        RunState::fold(&events[..1]).map_err(|e| bench.failed(format!("run_started: {e}")))?;
    let snapshot_at = LONG_EVENTS - 999;
    let mut batch = Vec::new();
    let mut n = 1;
    while state.seq() < LONG_EVENTS {
        for event in step {
            if state.seq() + batch.len() as u64 >= LONG_EVENTS {
                break;
            }
            batch.push(renumber(event, n));
        }
        n += 1;
        if batch.len() >= 4_000 || state.seq() + batch.len() as u64 >= LONG_EVENTS {
            let expected = state.seq();
            for event in &batch {
                state
                    .apply(event)
                    .map_err(|e| bench.failed(format!("long run: {e}")))?;
            }
            journal
                .append(&lease, expected, &batch, Wake::Never)
                .await?;
            batch.clear();
        }
    }
    // Written once the events it folds are in the journal.
    let text = chassis_engine::encode_snapshot(
        &RunState::fold(
            journal
                .load(&run_id)
                .await?
                .iter()
                .take(snapshot_at as usize)
                .map(|r| &r.event),
        )
        .map_err(|e| bench.failed(format!("long run: {e}")))?,
    )
    .ok_or_else(|| bench.failed("snapshot encoding".to_string()))?;
    journal.put_snapshot(&run_id, snapshot_at, &text).await?;
    bench.say(&format!(
        "resume: a run of {LONG_EVENTS} events, snapshot at {snapshot_at} ({} KiB), loaded {iters} times",
        text.len() / 1024
    ));
    let full = engine.load(&run_id).await?;
    if full.seq() != LONG_EVENTS || full != state {
        return Err(bench.failed(format!(
            "the long run loads to {} events, not the {LONG_EVENTS} folded",
            full.seq()
        )));
    }
    let mut times = Vec::with_capacity(iters);
    for pass in 0..=iters {
        let began = Instant::now();
        let loaded = engine.load(&run_id).await?;
        let took = began.elapsed();
        std::hint::black_box(&loaded);
        if pass > 0 {
            times.push(ms(took));
        }
    }
    Ok(times)
}
