//! Running a suite: each case a real run in the journal, several at once, then checked.

use std::sync::Arc;
use std::time::Instant;

use chassis_core::RunStatus;
use chassis_engine::{Agent, Engine};
use chassis_providers::ModelClient;
use chassis_providers::cassette::{self, Recorder, Recording, Replay};

use crate::expect::{Failure, RunFacts};
use crate::judge;
use crate::report::{CaseReport, Mode, Report};
use crate::suite::{Case, Cassettes, Suite, Turn};

/// How a suite is run.
#[derive(Clone, Debug)]
pub struct Options {
    /// How the models are reached.
    pub mode: Mode,
    /// Cases at once; the suite's own setting when `None`.
    pub concurrency: Option<usize>,
    /// In replay, which tools run for real (none by default: a replay has no effects).
    pub live_tools: crate::LiveTools,
}

/// Called with each case's result as soon as it is known (progress output).
pub type OnCase = Arc<dyn Fn(&CaseReport) + Send + Sync>;

/// Runs every case of `suite` with `engine` and reports. A case that cannot run is reported
/// as an error; this never stops the other cases.
pub async fn run(
    suite: Arc<Suite>,
    engine: Arc<Engine>,
    options: &Options,
    on_case: Option<OnCase>,
) -> Report {
    let started_at_ms = chassis_engine::now_ms();
    let permits = Arc::new(tokio::sync::Semaphore::new(
        options.concurrency.unwrap_or(suite.concurrency).max(1),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..suite.cases.len() {
        let (suite, engine, permits, on_case) = (
            suite.clone(),
            engine.clone(),
            permits.clone(),
            on_case.clone(),
        );
        let (mode, live) = (options.mode, options.live_tools);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let report = run_case(&suite, &suite.cases[index], &engine, mode, live).await;
            if let Some(on_case) = on_case {
                on_case(&report);
            }
            (index, report)
        });
    }
    let mut reports: Vec<Option<CaseReport>> = vec![None; suite.cases.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, report)) = joined {
            reports[index] = Some(report);
        }
    }
    let cases = reports
        .into_iter()
        .zip(&suite.cases)
        .map(|(report, case)| {
            report.unwrap_or_else(|| CaseReport {
                name: case.name.clone(),
                error: Some("the case's task panicked".into()),
                ..CaseReport::default()
            })
        })
        .collect();
    Report::new(&suite.name, options.mode, started_at_ms, cases)
}

/// Runs one case: load its agent, attach its cassette, start the run, check the journal; then,
/// for each later turn of a thread, send its message, drive the run, check the turn.
async fn run_case(
    suite: &Suite,
    case: &Case,
    engine: &Engine,
    mode: Mode,
    live: crate::LiveTools,
) -> CaseReport {
    let mut report = CaseReport {
        name: case.name.clone(),
        ..CaseReport::default()
    };
    let error = |mut report: CaseReport, message: String| {
        report.error = Some(message);
        report
    };
    let mut agent = match Agent::load(&case.agent).await {
        Ok(agent) => agent,
        Err(e) => return error(report, format!("agent: {e}")),
    };
    let mut replay = None;
    let mut recorder = None;
    match mode {
        Mode::Live => {}
        Mode::Replay => match replay_of(&suite.cassettes, &case.name) {
            Ok(served) => {
                let served = Arc::new(served.scrubbing(crate::scrub_of(&agent)));
                cassette::replay(&mut agent.models, &served);
                crate::tools::replay_tools(&mut agent, &served, live);
                replay = Some(served);
            }
            Err(e) => return error(report, e),
        },
        Mode::Record => {
            let Some(path) = suite.cassettes.path_of(&case.name) else {
                return error(
                    report,
                    "cassettes built from runs cannot be recorded".into(),
                );
            };
            match Recorder::create(&path) {
                Ok(created) => {
                    let created = Arc::new(created.scrubbing(crate::scrub_of(&agent)));
                    cassette::record(&mut agent.models, &created);
                    crate::tools::record_tools(&mut agent, &created);
                    recorder = Some(created);
                }
                Err(e) => return error(report, e.to_string()),
            }
        }
    }

    let began = Instant::now();
    let tags = [
        ("eval.suite".to_string(), suite.name.clone()),
        ("eval.case".to_string(), case.name.clone()),
    ]
    .into_iter()
    .collect();
    let Some((first, later)) = case.turns.split_first() else {
        return error(report, "the case has no turn".into());
    };
    let outcome = match engine.start_tagged(&agent, &first.input, tags).await {
        Ok(outcome) => outcome,
        Err(e) => return error(report, format!("run: {e}")),
    };
    let run_id = outcome.run_id;
    report.run_id = Some(run_id.clone());
    let cassettes = (replay.as_ref(), recorder.as_ref());
    // Each turn is checked on the journal as it stands once the run has answered it; the
    // next turn's message is sent only to a run that completed the turn before.
    let mut from = 0;
    // The journal as the last turn read it, while nothing has written to the run since.
    let mut last_read = None;
    // Why the case stopped short of its last turn, once the run exists: the run's figures
    // are reported either way.
    let mut stopped = None;
    for (index, turn) in std::iter::once(first).chain(later).enumerate() {
        let number = index + 1;
        let named = |message: String| {
            if case.is_thread() {
                format!("turn {number}: {message}")
            } else {
                message
            }
        };
        if index > 0 {
            if let Some(stop) = turn_not_sent(engine, &run_id, number).await {
                report.failures.push(stop);
                break;
            }
            // The turn writes to the run: what the last turn read is no longer the journal.
            last_read = None;
            if let Err(e) = continue_run(engine, &agent, &run_id, &turn.input).await {
                stopped = Some(named(e));
                break;
            }
        }
        let events = match engine.journal().load(&run_id).await {
            Ok(records) => records.into_iter().map(|r| r.event).collect::<Vec<_>>(),
            Err(e) => {
                stopped = Some(named(format!("journal: {e}")));
                break;
            }
        };
        let facts = match RunFacts::since(&events, from) {
            Ok(facts) => facts,
            Err(e) => {
                stopped = Some(named(format!(
                    "run {run_id}: journal cannot be replayed: {e}"
                )));
                break;
            }
        };
        from = events.len();
        last_read = Some(events);
        if let Some(divergence) = replay.as_ref().and_then(|r| r.tool_divergence()) {
            // A tool call the cassette lacks was refused, not run: the case fails on it, first.
            stopped = Some(named(format!("replay: {divergence}")));
            break;
        }
        if let Some(reason) = &facts.reason
            && mode == Mode::Replay
            && reason.contains(cassette::DIVERGED)
        {
            // The cassette no longer fits the agent: that is the finding, in full, diff and
            // all; the expectations it broke would only repeat it.
            stopped = Some(named(format!("replay: {reason}")));
            break;
        }
        let mut failures = turn.expect.check(&facts);
        if let Err(e) = judge_turn(&agent, turn, &facts, cassettes, &mut failures).await {
            report.error = Some(named(format!("judge: {e}")));
        }
        report.failures.extend(failures.into_iter().map(|f| {
            if case.is_thread() {
                f.in_turn(number)
            } else {
                f
            }
        }));
    }
    report.time_ms = began.elapsed().as_millis() as u64;

    // The report's figures are the whole run's.
    let events = match last_read {
        Some(events) => Ok(events),
        None => match engine.journal().load(&run_id).await {
            Ok(records) => Ok(records.into_iter().map(|r| r.event).collect()),
            Err(e) => Err(format!("journal: {e}")),
        },
    };
    let whole = events.and_then(|events| {
        RunFacts::from_events(&events)
            .map_err(|e| format!("run {run_id}: journal cannot be replayed: {e}"))
    });
    let facts = match whole {
        Ok(facts) => facts,
        Err(e) => return error(report, stopped.unwrap_or(e)),
    };
    report.status = Some(facts.status.as_str().to_string());
    report.version = Some(facts.version.clone()).filter(|v| !v.is_empty());
    report.steps = facts.steps;
    report.cost_usd = facts.cost_usd;
    report.unpriced_calls = facts.unpriced_calls;
    report.tools = facts.calls.iter().map(|(name, _)| name.clone()).collect();
    report.escalated = facts.escalated;
    report.output = facts.output.clone();
    if let Some(stopped) = stopped {
        report.error = Some(stopped);
    }
    report.passed = report.error.is_none() && report.failures.is_empty();
    report
}

/// Why turn `number` of a thread cannot be sent, as the failure that ends the case: the run
/// did not complete the turn before (a message goes only to a run that has answered).
async fn turn_not_sent(engine: &Engine, run_id: &str, number: usize) -> Option<Failure> {
    let state = match engine.load(run_id).await {
        Ok(state) => state,
        Err(e) => {
            return Some(
                Failure::new("turn", format!("not sent: the run cannot be loaded: {e}"))
                    .in_turn(number),
            );
        }
    };
    if state.status() == RunStatus::Completed {
        return None;
    }
    let why = state
        .error
        .as_deref()
        .or(state.waiting_reason.as_deref())
        .map(|r| format!(" ({})", crate::expect::clip(r, 200)))
        .unwrap_or_default();
    Some(
        Failure::new(
            "turn",
            format!(
                "not sent: turn {} left the run {}{why}, and only a completed run takes a new message",
                number - 1,
                state.status()
            ),
        )
        .in_turn(number),
    )
}

/// Sends a thread's next user message and drives the run until it has answered, with the
/// case's agent (its models and tools wrapped by the cassette), as `chassis send --resume`.
async fn continue_run(
    engine: &Engine,
    agent: &Agent,
    run_id: &str,
    input: &str,
) -> Result<(), String> {
    engine
        .send_message(run_id, input, "chassis eval")
        .await
        .map_err(|e| format!("send: {e}"))?;
    let state = engine.load(run_id).await.map_err(|e| format!("run: {e}"))?;
    engine
        .resume_with(agent, run_id, state)
        .await
        .map(|_| ())
        .map_err(|e| format!("run: {e}"))
}

/// Asks the turn's judge, if it has one, about the turn's answer; a verdict of FAIL is a
/// failure, a judge that could not answer is the error returned.
async fn judge_turn(
    agent: &Agent,
    turn: &Turn,
    facts: &RunFacts,
    (replay, recorder): (Option<&Arc<Replay>>, Option<&Arc<Recorder>>),
    failures: &mut Vec<Failure>,
) -> Result<(), String> {
    let Some(judged) = &turn.expect.judge else {
        return Ok(());
    };
    let label = judge::label(judged, agent);
    let Some(output) = &facts.output else {
        failures.push(Failure::new(
            "judge",
            "the run has no output to judge".into(),
        ));
        return Ok(());
    };
    let client = judge_client(agent, &label, replay, recorder)?;
    let verdict = judge::grade(client.as_ref(), judged, &label, &turn.input, output).await?;
    if !verdict.pass {
        failures.push(Failure::new(
            "judge",
            format!("{label} says FAIL: {}", verdict.reason),
        ));
    }
    Ok(())
}

/// The judge's client: the agent's own (already wrapped) link when the judge is one of its
/// models; otherwise the cassette in replay, or the provider's client (recorded when recording).
fn judge_client(
    agent: &Agent,
    label: &str,
    replay: Option<&Arc<Replay>>,
    recorder: Option<&Arc<Recorder>>,
) -> Result<Arc<dyn ModelClient>, String> {
    if let Some(client) = judge::chain_client(agent, label) {
        return Ok(client);
    }
    if let Some(replay) = replay {
        return Ok(replay.clone());
    }
    let client = judge::provider_client(&agent.spec, label)?;
    Ok(match recorder {
        Some(recorder) => Arc::new(Recording::new(client, recorder.clone())),
        None => client,
    })
}

/// The cassette a case replays from.
fn replay_of(cassettes: &Cassettes, case: &str) -> Result<Replay, String> {
    match cassettes {
        Cassettes::Dir(dir) => {
            let path = dir.join(format!("{case}.json"));
            if !path.exists() {
                return Err(format!(
                    "no cassette at {} (record one with --record)",
                    path.display()
                ));
            }
            Replay::load(&path).map_err(|e| e.to_string())
        }
        Cassettes::Memory(map) => map
            .get(case)
            .map(|c| Replay::new(format!("run {case}"), c.clone()))
            .ok_or_else(|| format!("no cassette for case {case}")),
    }
}
