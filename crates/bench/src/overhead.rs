//! Per-step runtime overhead, one run at a time: what a step costs beyond the model's share.
//!
//! Method: runs of `n` steps are driven one after another against the 0 ms mock, and each
//! run's wall time is taken from `Engine::start` to its return. The mock's share is then
//! measured on its own: the same request bodies the run sent (rebuilt from the run's folded
//! context, in the provider's wire format) are posted again as raw bytes over a warm
//! connection with the same HTTP client, and each one's round trip is timed (median over
//! repetitions). Overhead per step = (run wall time − Σ round trips) / steps; the figure is the
//! median over runs. So overhead covers everything the runtime adds: building and parsing the
//! provider's JSON, the resilience layers, the tool call, the fold, `decide`, and the journal
//! append with its fsync.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chassis_core::{Event, Message, RunState};
use chassis_engine::{Agent, Engine, Observer};
use chassis_store::{Journal, NewRun, SqliteJournal, Sync};
use serde_json::{Value, json};

use crate::harness::{self, complete};
use crate::measure::{self, median, ms, quantile};
use crate::{Bench, Error, Figure, HttpVersion, Target, Unit};

/// The target for durable overhead, in milliseconds.
const TARGET_MS: f64 = 0.5;

pub(crate) fn run(bench: &Bench) -> Result<Vec<Figure>, Error> {
    let mock = bench.mock()?;
    let quick = bench.sizes.overhead_runs < 10;
    let fsync = measure::fsync_cost(bench.fixture.root(), if quick { 20 } else { 500 })?;
    let runtime = harness::runtime()?;
    let agent = bench.fixture.agent("overhead", mock.base_url())?;
    let mut modes = Vec::new();
    for (sync, label) in [(Sync::Full, "durable"), (Sync::Normal, "no fsync")] {
        bench.say(&format!(
            "overhead, {label}: {} runs of {} steps, one at a time",
            bench.sizes.overhead_runs, bench.sizes.overhead_steps
        ));
        let mode = runtime.block_on(measure_mode(bench, &agent, sync, mock.base_url()))?;
        modes.push((label, mode));
    }

    let mut figures = Vec::new();
    for (label, mode) in &modes {
        let mut overhead = bench.figure(
            format!("per-step overhead, {label}, median"),
            median(&mode.overhead),
            Unit::Millis,
        );
        if *label == "durable" {
            overhead.target = Some(Target::AtMost(TARGET_MS));
        }
        figures.push(overhead);
        figures.push(bench.figure(
            format!("per-step overhead, {label}, p90"),
            quantile(&mode.overhead, 0.9),
            Unit::Millis,
        ));
        figures.push(bench.figure(
            format!("step wall time, {label}, median"),
            median(&mode.wall),
            Unit::Millis,
        ));
        figures.push(bench.figure(
            format!("engine time outside the model call, {label}, per step"),
            median(&mode.engine),
            Unit::Millis,
        ));
        figures.push(bench.figure(
            format!("journal append of one step (4 events), {label}, median"),
            ms(mode.append),
            Unit::Millis,
        ));
    }
    if let Some((_, durable)) = modes.first() {
        figures.push(bench.figure(
            "model call as the engine sees it, per step",
            median(&durable.model_call),
            Unit::Millis,
        ));
        figures.push(bench.figure(
            "raw HTTP round trip to the mock, per step (baseline)",
            durable.http,
            Unit::Millis,
        ));
    }
    figures.push(bench.figure(
        "fsync alone (1 KiB write + fdatasync), median",
        ms(fsync),
        Unit::Millis,
    ));
    Ok(figures)
}

/// One sync mode's samples, per step, in milliseconds.
struct Mode {
    /// Per run: (wall − Σ baseline round trips) / steps.
    overhead: Vec<f64>,
    /// Per run: wall / steps.
    wall: Vec<f64>,
    /// Per run: time outside the model calls / steps.
    engine: Vec<f64>,
    /// Per run: time inside the model calls (as the engine sees them) / steps.
    model_call: Vec<f64>,
    /// Σ baseline round trips / steps.
    http: f64,
    /// Median time of appending one step's four events.
    append: Duration,
}

async fn measure_mode(
    bench: &Bench<'_>,
    agent: &Agent,
    sync: Sync,
    base_url: &str,
) -> Result<Mode, Error> {
    let sizes = bench.sizes;
    let steps = sizes.overhead_steps;
    let name = match sync {
        Sync::Full => "overhead-full",
        Sync::Normal => "overhead-normal",
    };
    let journal = harness::journal(&bench.fixture.db(name), sync)?;
    let clock = Arc::new(ModelClock::default());
    let engine = Engine::new(journal.clone()).with_observer(clock.clone());
    for _ in 0..sizes.overhead_warmup {
        complete(&engine, agent, steps).await?;
    }
    let mut samples = Vec::with_capacity(sizes.overhead_runs);
    let mut last_run = String::new();
    for _ in 0..sizes.overhead_runs {
        clock.reset();
        let began = Instant::now();
        let outcome = complete(&engine, agent, steps).await?;
        let wall = began.elapsed();
        samples.push((wall, clock.inside()));
        last_run = outcome.run_id;
    }

    let state = engine.load(&last_run).await?;
    let bodies = request_bodies(
        &state,
        &agent.spec.model.model,
        Some(agent.spec.max_tokens),
        agent.spec.stream,
    );
    if bodies.len() != steps as usize {
        return Err(bench.failed(format!(
            "run {last_run} made {} model calls, expected {steps}",
            bodies.len()
        )));
    }
    let round_trips =
        http_baseline(base_url, bench.fixture.http(), &bodies, sizes.baseline_reps).await?;
    let http_total: f64 = round_trips.iter().sum();
    let per = f64::from(steps);
    let append = append_cost(&journal, &last_run, sizes.overhead_runs.max(10)).await?;
    Ok(Mode {
        overhead: samples
            .iter()
            .map(|(wall, _)| (ms(*wall) - http_total) / per)
            .collect(),
        wall: samples.iter().map(|(wall, _)| ms(*wall) / per).collect(),
        engine: samples
            .iter()
            .map(|(wall, inside)| ms(wall.saturating_sub(*inside)) / per)
            .collect(),
        model_call: samples
            .iter()
            .map(|(_, inside)| ms(*inside) / per)
            .collect(),
        http: http_total / per,
        append,
    })
}

/// Adds up the time between each `model_requested` and its reply.
#[derive(Default)]
struct ModelClock {
    state: Mutex<(Option<Instant>, Duration)>,
}

impl ModelClock {
    fn reset(&self) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (None, Duration::ZERO);
    }

    fn inside(&self) -> Duration {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1
    }
}

impl Observer for ModelClock {
    fn on_event(&self, _run_id: &str, _state: &chassis_core::RunState, event: &Event) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::ModelRequested { .. } => state.0 = Some(Instant::now()),
            Event::ModelResponded { .. } | Event::ModelFailed { .. } => {
                if let Some(began) = state.0.take() {
                    state.1 += began.elapsed();
                }
            }
            Event::RunStarted(_)
            | Event::ModelAttemptFailed { .. }
            | Event::ModelCircuitOpen { .. }
            | Event::ModelFallback { .. }
            | Event::ModelSwitched { .. }
            | Event::ContextCompacted { .. }
            | Event::ToolRefused { .. }
            | Event::ToolStarted { .. }
            | Event::ToolFinished { .. }
            | Event::ToolAttemptFailed { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalDecided { .. }
            | Event::ApprovalEscalated { .. }
            | Event::OutcomeResolved { .. }
            | Event::ToolOutcomeUnknown { .. }
            | Event::LimitReached { .. }
            | Event::LimitRaised { .. }
            | Event::LimitRejected { .. }
            | Event::CancelRequested { .. }
            | Event::ResumeRequested { .. }
            | Event::UserMessage { .. }
            | Event::RunWaiting { .. }
            | Event::RunPaused { .. }
            | Event::RunResumed { .. }
            | Event::RunCompleted { .. }
            | Event::RunFailed { .. }
            | Event::RunCancelled { .. } => {}
        }
    }
}

/// The chat-completions bodies of every model call of a finished run: call `k` saw the
/// context up to (not including) the `k`th assistant message. Streamed as the provider
/// streams them (`stream`), so the baseline's answer travels as the run's did.
fn request_bodies(
    state: &RunState,
    model: &str,
    max_tokens: Option<u32>,
    stream: bool,
) -> Vec<Vec<u8>> {
    let tools: Vec<Value> = state
        .tools
        .iter()
        .map(|t| {
            json!({
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            })
        })
        .collect();
    let wire: Vec<Value> = state.messages().iter().map(wire_message).collect();
    state
        .messages()
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m, Message::Assistant(_)))
        .map(|(i, _)| {
            let mut body = json!({"model": model, "messages": &wire[..i], "tools": tools});
            if !tools.is_empty() {
                body["tool_choice"] = "auto".into();
            }
            if let Some(max_tokens) = max_tokens {
                body["max_tokens"] = max_tokens.into();
            }
            if stream {
                body["stream"] = true.into();
                body["stream_options"] = json!({"include_usage": true});
            }
            serde_json::to_vec(&body).unwrap_or_default()
        })
        .collect()
}

/// A message in the OpenAI wire format, as the provider sends it to a host other than
/// OpenAI's (an assistant message without text has `content: ""`).
fn wire_message(message: &Message) -> Value {
    match message {
        Message::System { content } => json!({"role": "system", "content": content}),
        Message::User { content } => json!({"role": "user", "content": content}),
        Message::Tool { call_id, content } => {
            json!({"role": "tool", "tool_call_id": call_id, "content": content})
        }
        Message::Assistant(reply) => {
            let content = reply.content.as_deref().unwrap_or("");
            let mut value = json!({"role": "assistant", "content": content});
            if !reply.tool_calls.is_empty() {
                value["tool_calls"] = reply
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        })
                    })
                    .collect();
            }
            value
        }
    }
}

/// Median round trip of each body, in milliseconds, over `reps` passes after one warm-up pass.
async fn http_baseline(
    base_url: &str,
    http: HttpVersion,
    bodies: &[Vec<u8>],
    reps: usize,
) -> Result<Vec<f64>, Error> {
    // Built as the provider builds its client.
    let client = chassis_http::builder(http)
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()?;
    let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
    let mut samples = vec![Vec::with_capacity(reps); bodies.len()];
    for pass in 0..=reps {
        for (i, body) in bodies.iter().enumerate() {
            let began = Instant::now();
            let response = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await?
                .error_for_status()?;
            response.bytes().await?;
            if pass > 0 {
                samples[i].push(ms(began.elapsed()));
            }
        }
    }
    Ok(samples.iter().map(|s| median(s)).collect())
}

/// Median time of appending one step's events (taken from `run_id`) to a fresh run.
async fn append_cost(
    journal: &Arc<SqliteJournal>,
    run_id: &str,
    reps: usize,
) -> Result<Duration, Error> {
    let records = journal.load(run_id).await?;
    let events: Vec<Event> = records.into_iter().map(|r| r.event).collect();
    let (Some(started), Some(step)) = (events.first(), events.get(1..5)) else {
        return Ok(Duration::ZERO);
    };
    let target = format!("{run_id}_append_probe");
    let created = journal
        .create(
            &NewRun {
                run_id: target.clone(),
                agent: "bench".into(),
                idempotency_key: None,
            },
            std::slice::from_ref(started),
            chassis_store::Wake::Now,
            Some(&chassis_store::Driver {
                owner: "bench".into(),
                ttl: Duration::from_secs(600),
            }),
        )
        .await?;
    let Some(lease) = created.lease else {
        return Ok(Duration::ZERO);
    };
    let mut seq = created.seq;
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let began = Instant::now();
        seq = journal
            .append(&lease, seq, step, chassis_store::Wake::Now)
            .await?;
        samples.push(began.elapsed().as_secs_f64());
    }
    Ok(Duration::from_secs_f64(median(&samples)))
}
