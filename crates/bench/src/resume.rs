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
    ])
}
