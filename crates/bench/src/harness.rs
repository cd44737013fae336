//! What every group does to drive runs: a one-core runtime, a journal, runs that must
//! complete, and counters of what is in flight.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chassis_core::{Event, RunStatus};
use chassis_engine::{Agent, Engine, Observer, RunOutcome};
use chassis_store::{SqliteJournal, Sync};

use crate::Error;
use crate::fixture::Fixture;

/// A current-thread runtime: everything async of the runtime under test on one thread.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("building a tokio runtime"))
}

/// Opens a fresh journal at `path`.
pub(crate) fn journal(path: &Path, sync: Sync) -> Result<Arc<SqliteJournal>, Error> {
    Ok(Arc::new(SqliteJournal::open(path, sync)?))
}

/// Starts a run of `steps` steps and drives it; anything but completion is an error.
pub(crate) async fn complete(
    engine: &Engine,
    agent: &Agent,
    steps: u32,
) -> Result<RunOutcome, Error> {
    let outcome = engine.start(agent, &Fixture::input(steps)).await?;
    if outcome.status != RunStatus::Completed {
        return Err(Error::Failed {
            bench: "run",
            message: format!(
                "run {} ended {}: {}",
                outcome.run_id,
                outcome.status,
                outcome.reason.as_deref().unwrap_or("no reason given")
            ),
        });
    }
    Ok(outcome)
}

/// Drives `level` tasks at once on `engine`, each running `runs_each` runs of `steps` steps back
/// to back; returns how long that took. Any run that does not complete fails the whole.
pub(crate) async fn drive(
    engine: &Arc<Engine>,
    agent: &Arc<Agent>,
    level: usize,
    runs_each: usize,
    steps: u32,
) -> Result<std::time::Duration, Error> {
    let began = std::time::Instant::now();
    let tasks: Vec<_> = (0..level)
        .map(|_| {
            let engine = Arc::clone(engine);
            let agent = Arc::clone(agent);
            tokio::spawn(async move {
                for _ in 0..runs_each {
                    complete(&engine, &agent, steps).await?;
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| Error::Failed {
            bench: "run",
            message: format!("a run task ended abnormally: {e}"),
        })??;
    }
    Ok(began.elapsed())
}

/// Counts runs open (and their peak) and model calls outstanding.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    open: AtomicUsize,
    open_peak: AtomicUsize,
    in_model: AtomicUsize,
}

impl InFlight {
    /// Most runs open at once.
    pub(crate) fn open_peak(&self) -> usize {
        self.open_peak.load(Ordering::Relaxed)
    }

    /// Runs waiting on a model reply now.
    pub(crate) fn in_model(&self) -> usize {
        self.in_model.load(Ordering::Relaxed)
    }

    fn up(count: &AtomicUsize, peak: &AtomicUsize) {
        let now = count.fetch_add(1, Ordering::Relaxed) + 1;
        peak.fetch_max(now, Ordering::Relaxed);
    }
}

impl Observer for InFlight {
    fn on_event(&self, _run_id: &str, _state: &chassis_core::RunState, event: &Event) {
        match event {
            Event::RunStarted(_) => InFlight::up(&self.open, &self.open_peak),
            Event::RunCompleted { .. } | Event::RunFailed { .. } => {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
            Event::ModelRequested { .. } => {
                self.in_model.fetch_add(1, Ordering::Relaxed);
            }
            Event::ModelResponded { .. } | Event::ModelFailed { .. } => {
                self.in_model.fetch_sub(1, Ordering::Relaxed);
            }
            // Benchmark runs neither wait nor pause; nothing else moves a count.
            Event::ModelAttemptFailed { .. }
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
            | Event::RunCancelled { .. } => {}
        }
    }
}

/// The one-call script the worker benchmarks' mock answers from: `ok INPUT`.
pub(crate) const ONE_CALL_SCRIPT: &str =
    "[[scenario]]\nname = \"answer\"\n[[scenario.turn]]\ntext = \"ok {input}\"\n";

/// A directory `name` under the fixture's root with [`ONE_CALL_SCRIPT`] in `script.toml`;
/// returns the directory and the script's path.
pub(crate) fn one_call_dir(
    fixture: &Fixture,
    name: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf), Error> {
    let dir = fixture.root().join(name);
    std::fs::create_dir_all(&dir).map_err(Error::io("creating a benchmark directory"))?;
    let script = dir.join("script.toml");
    std::fs::write(&script, ONE_CALL_SCRIPT).map_err(Error::io("writing the mock's script"))?;
    Ok((dir, script))
}

/// Writes `dir/agent.toml`, an agent `name` of one model call to the mock at `base_url`, its
/// `[model]` and `[providers.mock]` sections ending with `model_keys` and `provider_keys`, and
/// submits `runs` runs of it to the SQLite journal at `db` (queued, for workers to drive).
pub(crate) fn queue_one_call_runs(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    db: &Path,
    agent: (&str, &str, &str),
    base_url: &str,
    runs: usize,
) -> Result<Arc<dyn chassis_store::Journal>, Error> {
    let (name, model_keys, provider_keys) = agent;
    std::fs::write(dir.join("prompt.md.j2"), "Answer: {{ input }}\n")
        .map_err(Error::io("writing the prompt"))?;
    let spec = dir.join("agent.toml");
    std::fs::write(
        &spec,
        format!(
            "[agent]\nname = {name:?}\nprompt = \"prompt.md.j2\"\n\n[model]\n\
             primary = \"mock:m\"\n{model_keys}\n[providers.mock]\nkind = \"openai\"\n\
             base_url = {base_url:?}\n{provider_keys}\n"
        ),
    )
    .map_err(Error::io("writing the agent"))?;
    let journal: Arc<dyn chassis_store::Journal> = journal(db, Sync::Full)?;
    let engine = Engine::new(Arc::clone(&journal));
    runtime.block_on(async {
        let agent = Agent::load(&spec).await?;
        for i in 0..runs {
            engine.submit(&agent, &format!("job {i}")).await?;
        }
        Ok::<(), Error>(())
    })?;
    Ok(journal)
}
