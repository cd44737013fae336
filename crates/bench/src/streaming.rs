//! Streaming: the time to first token chassis adds to the mock's own, the runtime's cost per
//! chunk, and durable steps/s with many streaming runs against the same runs answered whole.
//!
//! Method.
//! - *Time to first token*: the mock's own is a `stream: true` request sent straight to it
//!   (the same HTTP protocol and request as a run's first call), timed from send to the first
//!   body bytes. chassis's is timed inside the runtime, one run at a time: from the moment the
//!   engine records `model_requested` to the first delta an observer receives for that step
//!   (the request built and sent, the stream read and parsed into a delta). Added = the median
//!   of chassis's − the median of the mock's.
//! - *Throughput*: as the throughput group (one current-thread runtime, fsync per commit, group
//!   commit), one level of concurrent runs, once with `stream = false` and once with
//!   `stream = true`; the deltas are counted by an observer that asks for them, as the
//!   terminal and the server do. Cost per chunk = (runtime CPU streamed − runtime CPU whole) ÷
//!   deltas delivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chassis_core::Event;
use chassis_engine::{Agent, Engine, Observer};
use chassis_store::Sync;
use serde_json::json;

use crate::fixture::Fixture;
use crate::harness::{self, complete};
use crate::mock::MockProcess;
use crate::{Bench, Error, Figure, Target, Unit, measure};

/// Time to first token chassis may add over the mock's own, at the median (ms).
const TARGET_TTFT_ADDED_MS: f64 = 1.0;

/// Streaming steps/s ÷ whole-answer steps/s at the same level, at least.
const TARGET_RATIO: f64 = 0.8;

/// Steps of each run timed for the first token: a tool call, then an answer.
const TTFT_STEPS: u32 = crate::MEMORY_STEPS;

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let mock = bench.mock()?;
    let runtime = harness::runtime()?;
    let whole = bench
        .fixture
        .agent_streaming("stream-off", mock.base_url(), false)?;
    let streamed = bench
        .fixture
        .agent_streaming("stream-on", mock.base_url(), true)?;
    let iters = bench.sizes.streaming_ttft_runs;
    bench.say(&format!(
        "streaming: first token, {iters} requests to the mock and {iters} runs of {TTFT_STEPS} steps"
    ));
    let raw = runtime.block_on(raw_first_chunk(bench, mock, iters))?;
    let ours = runtime.block_on(chassis_first_delta(bench, &streamed, iters))?;
    let raw_median = measure::median(&raw);
    let ours_median = measure::median(&ours);

    let level = bench.sizes.streaming_level;
    bench.say(&format!(
        "streaming: {level} concurrent runs, answered whole then streamed"
    ));
    let whole_level = runtime.block_on(measure_level(bench, &whole, "whole", level))?;
    let streamed_level = runtime.block_on(measure_level(bench, &streamed, "streamed", level))?;
    if streamed_level.deltas == 0 {
        return Err(bench.failed("the streamed runs delivered no delta"));
    }
    let per_chunk = match (whole_level.cpu, streamed_level.cpu) {
        (Some(whole_cpu), Some(streamed_cpu)) => {
            ((streamed_cpu / streamed_level.steps) - (whole_cpu / whole_level.steps))
                * streamed_level.steps
                / streamed_level.deltas as f64
                * 1e6
        }
        _ => f64::NAN,
    };
    let ratio = streamed_level.rate / whole_level.rate;
    Ok(vec![
        bench.figure(
            "time to first token, the mock's own (stream request → first bytes), median",
            raw_median,
            Unit::Millis,
        ),
        bench.figure(
            "time to first token in chassis (model_requested → first delta), median",
            ours_median,
            Unit::Millis,
        ),
        Figure {
            target: Some(Target::AtMost(TARGET_TTFT_ADDED_MS)),
            ..bench.figure(
                "time to first token added by chassis over the mock's, median",
                ours_median - raw_median,
                Unit::Millis,
            )
        },
        bench.figure(
            "time to first token in chassis, p90",
            measure::quantile(&ours, 0.9),
            Unit::Millis,
        ),
        bench.figure(
            format!("durable steps/s, {level} concurrent runs, whole answers"),
            whole_level.rate,
            Unit::PerSecond,
        ),
        bench.figure(
            format!("durable steps/s, {level} concurrent runs, streamed"),
            streamed_level.rate,
            Unit::PerSecond,
        ),
        Figure {
            target: Some(Target::AtLeast(TARGET_RATIO)),
            ..bench.figure(
                format!("streamed ÷ whole steps/s, {level} concurrent runs"),
                ratio,
                Unit::Ratio,
            )
        },
        bench.figure(
            "deltas per streamed step",
            streamed_level.deltas as f64 / streamed_level.steps,
            Unit::Ratio,
        ),
        bench.figure(
            "runtime CPU per delta (streamed − whole, per delta)",
            per_chunk,
            Unit::Micros,
        ),
    ])
}

/// The mock's own time to first bytes of a streamed answer, over the fixture's protocol.
async fn raw_first_chunk(
    bench: &Bench<'_>,
    mock: &MockProcess,
    iters: usize,
) -> Result<Vec<f64>, Error> {
    // Built as the provider builds its client.
    let client = chassis_http::builder(bench.fixture.http())
        .tcp_nodelay(true)
        .build()
        .map_err(Error::Http)?;
    let url = format!("{}/chat/completions", mock.base_url().trim_end_matches('/'));
    let body = json!({
        "model": "bench-model",
        "stream": true,
        "stream_options": { "include_usage": true },
        "max_tokens": 256,
        "messages": [{ "role": "user", "content": Fixture::input(TTFT_STEPS) }],
    });
    let mut times = Vec::with_capacity(iters);
    for pass in 0..=iters {
        let sent = Instant::now();
        let mut response = client.post(&url).json(&body).send().await?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(bench.failed(format!("the mock answered {status}: {text}")));
        }
        let first = response.chunk().await?;
        let took = measure::ms(sent.elapsed());
        if first.is_none() {
            return Err(bench.failed("the mock's stream was empty"));
        }
        while response.chunk().await?.is_some() {}
        // The first request opens the connection; the runs reuse theirs.
        if pass > 0 {
            times.push(took);
        }
    }
    Ok(times)
}

/// chassis's time from `model_requested` to the step's first delta, one run at a time.
async fn chassis_first_delta(
    bench: &Bench<'_>,
    agent: &Arc<Agent>,
    iters: usize,
) -> Result<Vec<f64>, Error> {
    let journal = harness::journal(&bench.fixture.db("streaming-ttft"), Sync::Full)?;
    let clock = Arc::new(FirstDelta::default());
    let engine = Engine::new(journal).with_observer(clock.clone());
    for pass in 0..=iters {
        complete(&engine, agent, TTFT_STEPS).await?;
        if pass == 0 {
            // The first run opens the connection.
            clock.take();
        }
    }
    let times = clock.take();
    if times.is_empty() {
        return Err(bench.failed("no delta reached the observer"));
    }
    Ok(times)
}

/// Times each model call from `model_requested` to its first delta.
#[derive(Default)]
struct FirstDelta {
    asked: Mutex<HashMap<(String, u32), Instant>>,
    times: Mutex<Vec<f64>>,
}

impl FirstDelta {
    fn take(&self) -> Vec<f64> {
        self.times
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
    }
}

impl Observer for FirstDelta {
    fn on_event(&self, run_id: &str, _state: &chassis_core::RunState, event: &Event) {
        if let Event::ModelRequested { step, .. } = event
            && let Ok(mut asked) = self.asked.lock()
        {
            asked.insert((run_id.to_string(), *step), Instant::now());
        }
    }

    fn wants_deltas(&self) -> bool {
        true
    }

    fn on_delta(&self, run_id: &str, step: u32, _delta: &chassis_providers::Delta) {
        let at = Instant::now();
        let asked = self
            .asked
            .lock()
            .ok()
            .and_then(|mut asked| asked.remove(&(run_id.to_string(), step)));
        if let (Some(asked), Ok(mut times)) = (asked, self.times.lock()) {
            times.push(measure::ms(at.duration_since(asked)));
        }
    }
}

/// Counts deltas, as a terminal or a server that shows them would receive them.
#[derive(Default)]
struct Deltas(AtomicUsize);

impl Observer for Deltas {
    fn on_event(&self, _run_id: &str, _state: &chassis_core::RunState, _event: &Event) {}

    fn wants_deltas(&self) -> bool {
        true
    }

    fn on_delta(&self, _run_id: &str, _step: u32, _delta: &chassis_providers::Delta) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

struct Level {
    rate: f64,
    steps: f64,
    cpu: Option<f64>,
    deltas: usize,
}

async fn measure_level(
    bench: &Bench<'_>,
    agent: &Arc<Agent>,
    label: &str,
    level: usize,
) -> Result<Level, Error> {
    let steps = bench.sizes.throughput_steps;
    let runs_each = bench
        .sizes
        .throughput_min_steps
        .div_ceil(level * steps as usize)
        .max(1);
    let name = format!("streaming-{label}-{level}");
    let journal = harness::journal(&bench.fixture.db(&name), Sync::Full)?;
    let deltas = Arc::new(Deltas::default());
    let engine = Arc::new(Engine::new(journal).with_observer(deltas.clone()));
    let cpu_before = measure::cpu_seconds(None);
    let wall = harness::drive(&engine, agent, level, runs_each, steps)
        .await?
        .as_secs_f64();
    let total = (level * runs_each * steps as usize) as f64;
    let cpu = match (cpu_before, measure::cpu_seconds(None)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    Ok(Level {
        rate: total / wall,
        steps: total,
        cpu,
        deltas: deltas.0.load(Ordering::Relaxed),
    })
}
