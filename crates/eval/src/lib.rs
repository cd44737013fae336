//! Evaluation of agents: suites of cases run as real runs, checked, reported and gated.
//!
//! A [`Suite`] (TOML) names cases: an input and what the run must show (status, output,
//! tool trajectory, steps, cost, an LLM judge). [`run`] starts every case as a real run in the
//! journal, several at once, optionally recording or replaying each case's cassette
//! ([`chassis_providers::cassette`]), and returns a [`Report`]: each case passed or failed with
//! its reasons, and the suite's metrics, as a table, JSON or JUnit XML. [`baseline::compare`]
//! gates a report against a stored one; [`fixtures::from_runs`] turns journaled runs into cases.

pub mod baseline;
pub mod expect;
pub mod fixtures;
pub mod judge;
pub mod report;
pub mod runner;
pub mod suite;
pub mod tools;

use std::path::Path;
use std::sync::Arc;

use cassette::{Recorder, Replay};
use chassis_engine::Agent;

pub use chassis_providers::cassette;
pub use expect::{Expectations, Failure, RunFacts};
pub use report::{CaseReport, Metrics, Mode, Report};
pub use runner::{OnCase, Options, run};
pub use suite::{Case, Gate, Suite};
pub use tools::LiveTools;

/// Records every model exchange and every tool call's result of `agent` into a new cassette at
/// `path`, redacted by the agent's redactor (request, answer, arguments and result).
pub fn record_into(agent: &mut Agent, path: &Path) -> Result<Arc<Recorder>, cassette::Error> {
    let recorder = Arc::new(Recorder::create(path)?.scrubbing(scrub_of(agent)));
    cassette::record(&mut agent.models, &recorder);
    tools::record_tools(agent, &recorder);
    Ok(recorder)
}

/// Makes every model call and every tool call of `agent` answer from the cassette at `path`,
/// offline and without effects (read-only tools run for real with [`LiveTools::ReadOnly`]);
/// requests and arguments are redacted as a recording redacts them before they are matched.
pub fn replay_from(
    agent: &mut Agent,
    path: &Path,
    live: LiveTools,
) -> Result<Arc<Replay>, cassette::Error> {
    let replay = Arc::new(Replay::load(path)?.scrubbing(scrub_of(agent)));
    cassette::replay(&mut agent.models, &replay);
    tools::replay_tools(agent, &replay, live);
    Ok(replay)
}

/// The agent's redactor as a cassette's [`cassette::Scrub`].
pub fn scrub_of(agent: &Agent) -> cassette::Scrub {
    let redactor = agent.redactor();
    Arc::new(move |text: &str| redactor.redact(text))
}
