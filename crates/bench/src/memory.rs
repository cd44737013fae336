//! Resident memory with many runs in flight at once.
//!
//! Method: a second mock process answers after a long latency, so every run started is still
//! waiting on its first model call when the last one starts. After one warm-up run the base
//! RSS is read (`VmRSS` in `/proc/self/status`); then all runs are spawned on one
//! current-thread runtime, and RSS is sampled every 10 ms while an observer counts runs open
//! and model calls outstanding. The figure is the RSS of the sample with the most runs waiting
//! on the model (all of them, unless the mock answered before the last one started), and
//! per run = (that RSS − base) / runs waiting.

use std::sync::Arc;
use std::time::Duration;

use chassis_engine::Engine;
use chassis_store::Sync;

use crate::harness::{self, InFlight, complete};
use crate::mock::MockProcess;
use crate::{Bench, Error, Figure, MEMORY_STEPS, Target, Unit, measure};

/// The run count the target is set for, and the target in MB (10⁶ bytes), as the issue sets it.
const TARGET_RUNS: usize = 10_000;
const TARGET_MB: f64 = 250.0;

const MB: f64 = 1e6;

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let runs = bench.sizes.memory_runs;
    bench.say(&format!(
        "memory: {runs} runs of {MEMORY_STEPS} steps in flight, mock latency {} ms",
        bench.sizes.memory_latency.as_millis()
    ));
    let mock = MockProcess::start(
        bench.chassis,
        bench.fixture.script(),
        bench.sizes.memory_latency,
        bench.pinning.mock_cpu,
    )?;
    let runtime = harness::runtime()?;
    let agent = bench.fixture.agent("memory", mock.base_url())?;
    let journal = harness::journal(&bench.fixture.db("memory"), Sync::Full)?;
    let in_flight = Arc::new(InFlight::default());
    let engine = Arc::new(Engine::new(journal).with_observer(in_flight.clone()));

    let sample = runtime.block_on(async {
        // What each spawned run holds before it allocates anything (never polled, so unstarted).
        let future = std::mem::size_of_val(&engine.start(&agent, ""));
        complete(&engine, &agent, MEMORY_STEPS).await?;
        let (base, _) =
            measure::rss().ok_or_else(|| bench.failed("cannot read /proc/self/status"))?;
        let tasks: Vec<_> = (0..runs)
            .map(|_| {
                let engine = Arc::clone(&engine);
                let agent = Arc::clone(&agent);
                tokio::spawn(async move { complete(&engine, &agent, MEMORY_STEPS).await })
            })
            .collect();
        // (runs waiting on the model, RSS then), the sample with the most waiting.
        let mut best = (0, base);
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        while tasks.iter().any(|t| !t.is_finished()) {
            ticker.tick().await;
            let waiting = in_flight.in_model();
            if let Some((rss, _)) = measure::rss()
                && (waiting > best.0 || (waiting == best.0 && rss > best.1))
            {
                best = (waiting, rss);
            }
        }
        for task in tasks {
            task.await
                .map_err(|e| bench.failed(format!("a run task ended abnormally: {e}")))??;
        }
        let (_, peak) =
            measure::rss().ok_or_else(|| bench.failed("cannot read /proc/self/status"))?;
        Ok::<_, Error>(Sample {
            future,
            base,
            waiting: best.0,
            rss: best.1,
            peak,
        })
    })?;
    drop(mock);

    let mut in_flight_rss = bench.figure(
        "RSS with the runs below in flight",
        sample.rss as f64 / MB,
        Unit::MB,
    );
    if runs == TARGET_RUNS && sample.waiting == runs {
        in_flight_rss.target = Some(Target::AtMost(TARGET_MB));
    }
    let per_run = if sample.waiting > 0 {
        sample.rss.saturating_sub(sample.base) as f64 / sample.waiting as f64 / 1000.0
    } else {
        f64::NAN
    };
    Ok(vec![
        bench.figure(
            "runs in flight (all waiting on the model) when sampled",
            sample.waiting as f64,
            Unit::Count,
        ),
        in_flight_rss,
        bench.figure(
            "base RSS (runtime, agent, journal open)",
            sample.base as f64 / MB,
            Unit::MB,
        ),
        bench.figure("RSS per run in flight", per_run, Unit::KB),
        bench.figure(
            "peak RSS of the process (VmHWM)",
            sample.peak as f64 / MB,
            Unit::MB,
        ),
        bench.figure(
            "size of one run's future (Engine::start), before it starts",
            sample.future as f64,
            Unit::Bytes,
        ),
    ])
}

/// What the memory run saw, in bytes.
struct Sample {
    future: usize,
    base: u64,
    waiting: usize,
    rss: u64,
    peak: u64,
}
