//! Durable throughput: steps per second with many runs in flight on one core.
//!
//! Method: for each level `c`, `c` tasks on one current-thread runtime each drive runs back to
//! back until the level has done at least the minimum number of steps; every run journals
//! with an fsync per commit (`Sync::Full`), and appends that are ready together share one
//! commit (group commit). Steps per second = steps / wall time. The CPU time this process and
//! the mock used is read from `/proc`, so a level limited by the mock rather than the runtime
//! shows it: runtime CPU per step is the runtime's cost whatever the mock does.

use std::sync::Arc;

use chassis_engine::{Agent, Engine};
use chassis_store::Sync;

use crate::harness::{self, InFlight};
use crate::mock::MockProcess;
use crate::{Bench, Error, Figure, Target, Unit, measure};

/// The level the issue sets a target for, and the target.
const TARGET_LEVEL: usize = 1_000;
const TARGET_STEPS_PER_S: f64 = 5_000.0;

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let mock = bench.mock()?;
    let runtime = harness::runtime()?;
    // One agent for every level: its HTTP connections are reused from level to level.
    let agent = bench.fixture.agent("throughput", mock.base_url())?;
    let mut figures = Vec::new();
    for &level in &bench.sizes.throughput_levels {
        let level_figures = runtime.block_on(measure_level(bench, &agent, mock, level))?;
        figures.extend(level_figures);
    }
    Ok(figures)
}

async fn measure_level(
    bench: &Bench<'_>,
    agent: &Arc<Agent>,
    mock: &MockProcess,
    level: usize,
) -> Result<Vec<Figure>, Error> {
    let steps = bench.sizes.throughput_steps;
    let per_run = steps as usize;
    let runs_each = bench
        .sizes
        .throughput_min_steps
        .div_ceil(level * per_run)
        .max(1);
    bench.say(&format!(
        "throughput: {level} concurrent runs × {runs_each} runs of {steps} steps, durable"
    ));
    let journal = harness::journal(
        &bench.fixture.db(&format!("throughput-{level}")),
        Sync::Full,
    )?;
    let in_flight = Arc::new(InFlight::default());
    let engine = Arc::new(Engine::new(journal).with_observer(in_flight.clone()));

    let cpu_before = measure::cpu_seconds(None);
    let mock_before = mock.cpu_seconds();
    let wall = harness::drive(&engine, agent, level, runs_each, steps)
        .await?
        .as_secs_f64();
    let total = (level * runs_each * per_run) as f64;
    let cpu = delta(cpu_before, measure::cpu_seconds(None));
    let mock_cpu = delta(mock_before, mock.cpu_seconds());

    let label = format!(
        "{level} concurrent {}",
        if level == 1 { "run" } else { "runs" }
    );
    let mut rate = bench.figure(
        format!("durable steps/s, {label}"),
        total / wall,
        Unit::PerSecond,
    );
    if level == TARGET_LEVEL {
        rate.target = Some(Target::AtLeast(TARGET_STEPS_PER_S));
    }
    let mut figures = vec![rate];
    if let Some(cpu) = cpu {
        figures.push(bench.figure(
            format!("runtime CPU per step, {label}"),
            cpu / total * 1e6,
            Unit::Micros,
        ));
    }
    if let Some(mock_cpu) = mock_cpu {
        figures.push(bench.figure(
            format!("mock CPU per step, {label}"),
            mock_cpu / total * 1e6,
            Unit::Micros,
        ));
    }
    figures.push(bench.figure(
        format!("runs in flight at once (peak), {label}"),
        in_flight.open_peak() as f64,
        Unit::Count,
    ));
    Ok(figures)
}

fn delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}
