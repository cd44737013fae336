//! Running a suite: each case a real run in the journal, several at once, then checked.

use std::sync::Arc;
use std::time::Instant;

use chassis_engine::{Agent, Engine};
use chassis_providers::ModelClient;
use chassis_providers::cassette::{self, Recorder, Recording, Replay};

use crate::expect::{Failure, RunFacts};
use crate::judge;
use crate::report::{CaseReport, Mode, Report};
use crate::suite::{Case, Cassettes, Suite};

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

/// Runs one case: load its agent, attach its cassette, start the run, check the journal.
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
    let outcome = match engine.start_tagged(&agent, &case.input, tags).await {
        Ok(outcome) => outcome,
        Err(e) => return error(report, format!("run: {e}")),
    };
    report.time_ms = began.elapsed().as_millis() as u64;
    report.run_id = Some(outcome.run_id.clone());
    let records = match engine.journal().load(&outcome.run_id).await {
        Ok(records) => records,
        Err(e) => return error(report, format!("journal: {e}")),
    };
    let facts = match RunFacts::from_events(records.iter().map(|r| &r.event)) {
        Ok(facts) => facts,
        Err(e) => {
            return error(
                report,
                format!("run {}: journal cannot be replayed: {e}", outcome.run_id),
            );
        }
    };
    report.status = Some(facts.status.as_str().to_string());
    report.version = Some(facts.version.clone()).filter(|v| !v.is_empty());
    report.steps = facts.steps;
    report.cost_usd = facts.cost_usd;
    report.unpriced_calls = facts.unpriced_calls;
    report.tools = facts.calls.iter().map(|(name, _)| name.clone()).collect();
    report.escalated = facts.escalated;
    report.output = facts.output.clone();
    if let Some(divergence) = replay.as_ref().and_then(|r| r.tool_divergence()) {
        // A tool call the cassette lacks was refused, not run: the case fails on it, first.
        return error(report, format!("replay: {divergence}"));
    }
    if let Some(reason) = &facts.reason
        && mode == Mode::Replay
        && reason.contains(cassette::DIVERGED)
    {
        // The cassette no longer fits the agent: that is the finding, in full, diff and all;
        // the expectations it broke would only repeat it.
        return error(report, format!("replay: {reason}"));
    }

    report.failures = case.expect.check(&facts);

    if let Some(judged) = &case.expect.judge {
        let label = judge::label(judged, &agent);
        match &facts.output {
            None => report.failures.push(Failure {
                expectation: "judge".into(),
                reason: "the run has no output to judge".into(),
            }),
            Some(output) => {
                let client = judge_client(&agent, &label, replay.as_ref(), recorder.as_ref());
                let verdict = match client {
                    Ok(client) => {
                        judge::grade(client.as_ref(), judged, &label, &case.input, output).await
                    }
                    Err(e) => Err(e),
                };
                match verdict {
                    Ok(verdict) if verdict.pass => {}
                    Ok(verdict) => report.failures.push(Failure {
                        expectation: "judge".into(),
                        reason: format!("{label} says FAIL: {}", verdict.reason),
                    }),
                    Err(e) => report.error = Some(format!("judge: {e}")),
                }
            }
        }
    }
    report.passed = report.error.is_none() && report.failures.is_empty();
    report
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
