//! Production runs become fixtures: cases (and their cassettes) built from journaled runs.
//!
//! Each ended run of an agent gives a case with its input and agent spec, expecting the status
//! it ended with, the tool calls it executed (names and arguments, exactly) and at most the
//! steps it took; its cassette is the run's own exchanges, so the case replays offline.
//! A thread (a run continued with user messages) gives a case of as many turns, each expecting
//! what that turn did.
//! The output is not expected verbatim: edit the written suite to add what matters.

use std::collections::BTreeMap;
use std::path::Path;

use chassis_core::Event;
use chassis_core::state::FoldError;
use chassis_providers::cassette::{self, Cassette};
use chassis_store::{Journal, ListFilter};

use crate::expect::RunFacts;
use crate::suite::{RawCall, RawCase, RawHeader, RawSuite, RawTurn};

/// Why fixtures could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The journal failed.
    #[error(transparent)]
    Store(#[from] chassis_store::Error),
    /// The agent has no ended runs.
    #[error("no completed or failed runs of agent `{agent}` in the journal")]
    NoRuns {
        /// The agent.
        agent: String,
    },
    /// A run's journal cannot be folded.
    #[error("run {run_id}: journal cannot be replayed: {source}")]
    Fold {
        /// The run.
        run_id: String,
        /// What disagreed.
        source: FoldError,
    },
    /// A cassette could not be built or written.
    #[error(transparent)]
    Cassette(#[from] cassette::Error),
    /// The suite file could not be written.
    #[error("{path}: cannot write: {message}")]
    Write {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// A suite built from runs, with each case's cassette.
#[derive(Clone, Debug)]
pub struct Fixtures {
    /// The suite, as it would be written.
    pub suite: RawSuite,
    /// Cassettes by case name.
    pub cassettes: BTreeMap<String, Cassette>,
}

/// The last `last` completed or failed runs of `agent`, oldest first, as cases.
pub async fn from_runs(journal: &dyn Journal, agent: &str, last: usize) -> Result<Fixtures, Error> {
    from_runs_locating(journal, agent, last, &chassis_engine::AgentPaths::default()).await
}

/// [`from_runs`], finding each run's agent where `paths` says (a path the run journaled
/// relative to its project resolves against the project).
pub async fn from_runs_locating(
    journal: &dyn Journal,
    agent: &str,
    last: usize,
    paths: &chassis_engine::AgentPaths,
) -> Result<Fixtures, Error> {
    let listed = journal
        .list(&ListFilter {
            status: None,
            agent: Some(agent.to_string()),
            limit: None,
            ..ListFilter::default()
        })
        .await?;
    let mut runs: Vec<_> = listed
        .into_iter()
        .filter(|r| r.status.is_terminal())
        .take(last)
        .collect();
    if runs.is_empty() {
        return Err(Error::NoRuns {
            agent: agent.to_string(),
        });
    }
    runs.reverse();
    let mut cases = Vec::with_capacity(runs.len());
    let mut cassettes = BTreeMap::new();
    for run in runs {
        let records = journal.load(&run.run_id).await?;
        let events: Vec<_> = records.iter().map(|r| &r.event).collect();
        let fold_error = |source| Error::Fold {
            run_id: run.run_id.clone(),
            source,
        };
        let facts = RunFacts::from_events(events.iter().copied()).map_err(fold_error)?;
        let state = chassis_core::RunState::fold(events.iter().copied()).map_err(fold_error)?;
        cassettes.insert(
            run.run_id.clone(),
            Cassette::from_events(events.iter().copied())?,
        );
        let agent = Some(paths.locate(&state.spec_path).display().to_string());
        // A thread becomes a case of as many turns, each expecting what that turn did.
        let starts: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Event::UserMessage { .. }))
            .map(|(i, _)| i)
            .collect();
        if starts.is_empty() {
            let turn = turn_of(state.input.clone(), &facts);
            cases.push(RawCase {
                name: run.run_id.clone(),
                input: Some(turn.input),
                agent,
                status: turn.status,
                trajectory: turn.trajectory,
                max_steps: turn.max_steps,
                ..RawCase::default()
            });
            continue;
        }
        let mut turns = Vec::with_capacity(starts.len() + 1);
        let bounds = std::iter::once(0).chain(starts.iter().copied());
        let ends = starts.iter().copied().chain(std::iter::once(events.len()));
        for (start, end) in bounds.zip(ends) {
            let input = match events.get(start) {
                Some(Event::UserMessage { text, .. }) => text.clone(),
                _ => state.input.clone(),
            };
            let facts =
                RunFacts::since(events[..end].iter().copied(), start).map_err(fold_error)?;
            turns.push(turn_of(input, &facts));
        }
        cases.push(RawCase {
            name: run.run_id.clone(),
            agent,
            turns,
            ..RawCase::default()
        });
    }
    Ok(Fixtures {
        suite: RawSuite {
            suite: RawHeader {
                name: Some(format!("runs-of-{agent}")),
                cassettes: Some("cassettes".into()),
                ..RawHeader::default()
            },
            cases,
            ..RawSuite::default()
        },
        cassettes,
    })
}

/// A turn expecting what `facts` show: the status, the tool calls with their arguments, and
/// at most the steps taken.
fn turn_of(input: String, facts: &RunFacts) -> RawTurn {
    RawTurn {
        input,
        status: Some(facts.status.as_str().to_string()),
        trajectory: Some(
            facts
                .calls
                .iter()
                .map(|(tool, args)| RawCall::Call {
                    tool: tool.clone(),
                    args: Some(args.clone()),
                })
                .collect(),
        ),
        max_steps: Some(facts.steps),
        ..RawTurn::default()
    }
}

impl Fixtures {
    /// Writes `DIR/suite.toml` and `DIR/cassettes/CASE.json`; returns the suite file's path.
    pub fn write(&self, dir: &Path) -> Result<std::path::PathBuf, Error> {
        let path = dir.join("suite.toml");
        let write_error = |message: String| Error::Write {
            path: path.display().to_string(),
            message,
        };
        let text = toml::to_string(&self.suite).map_err(|e| write_error(e.to_string()))?;
        std::fs::create_dir_all(dir).map_err(|e| write_error(e.to_string()))?;
        let header = "# Cases built from journaled runs by `chassis eval --from-runs`.\n\
                      # Each expects the run's status, its tool calls and at most its steps;\n\
                      # add output expectations (output_contains, output_matches, judge) as needed.\n\n";
        std::fs::write(&path, format!("{header}{text}")).map_err(|e| write_error(e.to_string()))?;
        for (case, cassette) in &self.cassettes {
            cassette.save(&dir.join("cassettes").join(format!("{case}.json")))?;
        }
        Ok(path)
    }
}
