//! Driving a run: decide, act, journal, repeat — always under the run's lease.
//!
//! Every drive holds the run's lease: [`Engine::start`] creates the run leased to this engine,
//! [`Engine::resume`] claims it (refused, naming the holder, while another driver has it), and
//! a worker drives what it claimed ([`Engine::drive_claimed`]). The lease is renewed while the
//! run is driven, every append is fenced by it, and it is released with the wake time the fold
//! computes, so a run is never driven by two processes at once and never left behind.
//!
//! Events are applied to the in-memory state as they happen and flushed to the journal in one
//! append per step. Work that is safe to repeat (a model call, a read-only tool) may run before
//! the events that led to it are durable: after a crash it is simply done again. Anything else
//! (a reversible or irreversible tool call) runs only once its intent is durable, and the final
//! answer is reported only once it is journaled. A human's decision that lands while the run
//! is driven (a cancel, a raised limit) is taken in at the next flush.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chassis_core::decide::LimitHit;
use chassis_core::{
    Decision, Event, Inputs, LimitAction, LimitName, RunState, RunStatus, ToolAction, Wake, decide,
};
use chassis_providers::{CallEvent, ChatRequest, Reporter};
use chassis_store::{Clock, Created, Driver, Journal, Lease, NewRun};
use chassis_tools::CallContext;

use crate::{Agent, Error, Observer, Redactor, new_run_id, tokens};

/// Hands a call's deltas to the observers that want them, redacted: each stream (the text,
/// each tool call's arguments) holds back what could still be the beginning of a secret until
/// the next piece shows it is not, or the call ends ([`ObserverDeltas::finish`]).
struct ObserverDeltas {
    observers: Vec<Arc<dyn Observer>>,
    run_id: String,
    step: u32,
    redactor: Redactor,
    streams: std::sync::Mutex<Streams>,
}

/// The redaction state of one call's streams.
#[derive(Default)]
struct Streams {
    text: Option<chassis_redact::Stream>,
    args: BTreeMap<usize, chassis_redact::Stream>,
}

impl ObserverDeltas {
    fn send(&self, delta: chassis_providers::Delta) {
        for observer in &self.observers {
            observer.on_delta(&self.run_id, self.step, &delta);
        }
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the text stream held back, shown: the text is over.
    fn finish_text(&self, streams: &mut Streams) {
        if let Some(rest) = streams.text.take().map(|mut s| s.finish())
            && !rest.is_empty()
        {
            self.send(chassis_providers::Delta::Text(rest));
        }
    }

    /// The call answered: everything held back, shown.
    fn finish(&self) {
        let mut streams = self.streams();
        self.finish_text(&mut streams);
        for (index, mut stream) in std::mem::take(&mut streams.args) {
            let rest = stream.finish();
            if !rest.is_empty() {
                self.send(chassis_providers::Delta::ToolArgs {
                    index,
                    arguments: rest,
                });
            }
        }
    }
}

impl chassis_providers::DeltaSink for ObserverDeltas {
    fn text(&self, text: &str) {
        let shown = {
            let mut streams = self.streams();
            let redactor = &self.redactor;
            streams
                .text
                .get_or_insert_with(|| redactor.stream())
                .push(text)
        };
        if !shown.is_empty() {
            self.send(chassis_providers::Delta::Text(shown));
        }
    }

    fn tool_call_started(&self, index: usize, name: &str) {
        // The text comes before the calls: show what it held back first.
        self.finish_text(&mut self.streams());
        self.send(chassis_providers::Delta::ToolCallStarted {
            index,
            name: self.redactor.redact(name),
        });
    }

    fn tool_args(&self, index: usize, arguments: &str) {
        let shown = {
            let mut streams = self.streams();
            let redactor = &self.redactor;
            streams
                .args
                .entry(index)
                .or_insert_with(|| redactor.stream())
                .push(arguments)
        };
        if !shown.is_empty() {
            self.send(chassis_providers::Delta::ToolArgs {
                index,
                arguments: shown,
            });
        }
    }

    fn abandoned(&self) {
        *self.streams() = Streams::default();
        self.send(chassis_providers::Delta::Abandoned);
    }
}

/// Where a run stands after the engine stopped driving it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    /// The run.
    pub run_id: String,
    /// Its status.
    pub status: RunStatus,
    /// The final answer, when completed.
    pub output: Option<String>,
    /// Why it failed, waits or was cancelled.
    pub reason: Option<String>,
    /// The drive stopped because a person interrupted it (Ctrl-C, SIGTERM).
    pub interrupted: bool,
}

impl RunOutcome {
    /// The outcome a run's state describes.
    pub fn of(run_id: &str, state: &RunState) -> RunOutcome {
        let reason = match state.status() {
            RunStatus::Failed | RunStatus::Cancelled => state.error.clone(),
            RunStatus::Waiting | RunStatus::Paused => state.waiting_reason.clone(),
            RunStatus::Running | RunStatus::Completed => None,
        };
        RunOutcome {
            run_id: run_id.to_string(),
            status: state.status(),
            output: state.output.clone(),
            reason,
            interrupted: false,
        }
    }
}

/// How an engine holds the runs it drives.
#[derive(Clone, Debug)]
pub struct DriveConfig {
    /// Recorded as the owner of its leases: who drives the run, in `Held` errors and listings.
    pub owner: String,
    /// How long a lease lasts without renewal: how soon another process may take over a run
    /// whose driver died.
    pub lease_ttl: Duration,
    /// How often the lease of a run being driven is renewed; well below `lease_ttl`.
    pub renew_every: Duration,
    /// When a person interrupts a drive during a tool call, how long the call may still finish
    /// before its outcome is recorded as unknown.
    pub tool_grace: Duration,
    /// The longest any single tool call may take, whatever the tool's own timeout says (a
    /// backstop for tools without one); a call cut off here may have acted.
    pub tool_deadline: Duration,
    /// Events between two state snapshots of a run (bounded resume); at least 1.
    pub snapshot_every: u64,
}

impl DriveConfig {
    /// 30 s leases renewed every 10 s, 5 s of grace for a tool when interrupted, a 10-minute
    /// deadline for any tool call.
    pub fn new(owner: impl Into<String>) -> DriveConfig {
        DriveConfig {
            owner: owner.into(),
            lease_ttl: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            tool_grace: Duration::from_secs(5),
            tool_deadline: Duration::from_secs(600),
            snapshot_every: crate::snapshot::EVERY,
        }
    }
}

/// The default owner of a process's leases: `chassis@HOST:PID`.
pub fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("chassis@{host}:{}", std::process::id())
}

/// Whether a lease owner named like [`default_owner`] is a process of this host that no longer
/// runs (or is a zombie): its lease need not be waited out. Anything else (another host, a
/// worker's name, a system without `/proc`) is assumed alive.
fn holder_is_gone(owner: &str) -> bool {
    let Some((host, pid)) = owner
        .strip_prefix("chassis@")
        .and_then(|rest| rest.rsplit_once(':'))
    else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    let this = default_owner();
    let this_host = this
        .strip_prefix("chassis@")
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(host, _)| host);
    if this_host != Some(host) || pid == std::process::id() || !Path::new("/proc/self").exists() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `Z` is a zombie, gone already.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// A person's request to stop driving (Ctrl-C, SIGTERM): the engine stops at the next safe
/// point, journals where the run stands, and gives the run back.
#[derive(Clone, Debug)]
pub struct Interrupt {
    tx: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt::new()
    }
}

impl Interrupt {
    /// Not triggered yet.
    pub fn new() -> Interrupt {
        Interrupt {
            tx: Arc::new(tokio::sync::watch::channel(None).0),
        }
    }

    /// Asks every drive watching this to stop; `why` is recorded (e.g. `SIGINT`).
    pub fn trigger(&self, why: &str) {
        self.tx.send_if_modified(|reason| {
            let first = reason.is_none();
            if first {
                *reason = Some(why.to_string());
            }
            first
        });
    }

    /// Why it was triggered, if it was.
    pub fn reason(&self) -> Option<String> {
        self.tx.borrow().clone()
    }

    /// Resolves once triggered.
    pub async fn triggered(&self) -> String {
        let mut rx = self.tx.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The sender lives in `self`: it cannot be gone while we wait.
            None => std::future::pending().await,
        }
    }
}

/// How to start a run.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Labels journaled with the run (e.g. the eval suite).
    pub tags: BTreeMap<String, String>,
    /// A key that makes starting idempotent: a second start with it finds the first run.
    pub idempotency_key: Option<String>,
    /// Prompt variables of this run, over the agent's `[vars]`.
    pub vars: serde_json::Map<String, serde_json::Value>,
}

/// A run handed to the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The run.
    pub run_id: String,
    /// True when the idempotency key had started it before: nothing new was created.
    pub existing: bool,
}

/// Runs agents against a journal.
pub struct Engine {
    journal: Arc<dyn Journal>,
    observers: Vec<Arc<dyn Observer>>,
    redactor: Arc<Redactor>,
    clock: Arc<dyn Clock>,
    drive: DriveConfig,
    interrupt: Option<Interrupt>,
    /// Agents loaded to drive runs, by version: every run of a version shares one (its HTTP
    /// clients and connections, compiled template, tool validators, MCP servers).
    agents: tokio::sync::Mutex<std::collections::HashMap<String, Arc<Agent>>>,
    /// Versions whose definition this engine has kept in the store already.
    pinned: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Where runs' agents are: the project root and the `--agent` override.
    paths: AgentPaths,
    /// Told when this engine queued webhook notifications, so a dispatcher of this process
    /// posts them at once.
    outbox_signal: Arc<tokio::sync::Notify>,
    /// How many appends of this engine queued notifications.
    notes_queued: Arc<std::sync::atomic::AtomicU64>,
}

/// Where the agents of runs are found. A run journals its agent's path relative to the
/// journal's project when the agent lives under it, so a project moved with its journal keeps
/// working; `chassis resume --agent PATH` overrides the journaled path.
#[derive(Clone, Debug, Default)]
pub struct AgentPaths {
    project: Option<PathBuf>,
    agent: Option<PathBuf>,
}

impl AgentPaths {
    /// Paths rooted at the project directory `root` (made absolute).
    pub fn in_project(root: impl Into<PathBuf>) -> AgentPaths {
        let root = root.into();
        AgentPaths {
            project: Some(std::path::absolute(&root).unwrap_or(root)),
            agent: None,
        }
    }

    /// How a run journals the agent at `path`: relative to the project when under it.
    pub fn journaled(&self, path: &Path) -> PathBuf {
        match &self.project {
            Some(root) => path
                .strip_prefix(root)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| path.to_path_buf()),
            None => path.to_path_buf(),
        }
    }

    /// Where the agent a run journaled as `journaled` is now: the override, the path itself
    /// when absolute, else under the project (or the current directory without one).
    pub fn locate(&self, journaled: &str) -> PathBuf {
        if let Some(path) = &self.agent {
            return path.clone();
        }
        let path = Path::new(journaled);
        match &self.project {
            Some(root) if path.is_relative() => root.join(path),
            _ => path.to_path_buf(),
        }
    }
}

/// Provider rate limits kept in the journal's store, shared by every process on it. The gate
/// is process-wide, so it does not keep the journal alive: an engine dropped closes its
/// journal (for SQLite, folding the WAL into the file), and a call made after that goes
/// ungated, as when the store cannot answer.
struct StoreGate(std::sync::Weak<dyn Journal>);

#[async_trait::async_trait]
impl chassis_providers::Gate for StoreGate {
    async fn acquire(
        &self,
        key: &str,
        rpm: Option<u32>,
        tpm: Option<u32>,
        tokens: u64,
    ) -> Result<Option<Duration>, String> {
        let journal = self.0.upgrade().ok_or("the journal is closed")?;
        journal
            .acquire(key, chassis_store::Capacity { rpm, tpm, tokens })
            .await
            .map_err(|e| e.to_string())
    }
}

impl Engine {
    /// An engine writing to `journal`, reading time from the journal's clock, holding leases as
    /// `chassis@HOST:PID`.
    pub fn new(journal: Arc<dyn Journal>) -> Engine {
        // Providers with `rpm` or `tpm` take their capacity from this journal's store.
        chassis_providers::rate::set_gate(Arc::new(StoreGate(Arc::downgrade(&journal))));
        Engine {
            clock: journal.clock(),
            journal,
            observers: Vec::new(),
            redactor: Arc::new(Redactor::default()),
            drive: DriveConfig::new(default_owner()),
            interrupt: None,
            agents: Default::default(),
            pinned: Default::default(),
            paths: AgentPaths::default(),
            outbox_signal: Default::default(),
            notes_queued: Default::default(),
        }
    }

    /// Told whenever this engine queues webhook notifications (what a [`crate::Dispatcher`]
    /// of this process waits on besides its poll).
    pub fn outbox_signal(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.outbox_signal)
    }

    /// How many appends of this engine queued webhook notifications: none means a run this
    /// engine created has nothing in the outbox that this process put there, so a command
    /// that delivers before it exits need not look.
    pub fn notifications_queued(&self) -> u64 {
        self.notes_queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts an append that queued notifications, and wakes this process's dispatcher.
    pub(crate) fn queued_notifications(&self) {
        self.notes_queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.outbox_signal.notify_one();
    }

    /// Roots this engine at a project directory: a run journals its agent's path relative to
    /// it (when the agent lives under it), and relative paths in the journal resolve against
    /// it, so moving the project with its journal does not break `resume` or `worker`.
    pub fn with_project(mut self, root: impl Into<PathBuf>) -> Engine {
        self.paths.project = AgentPaths::in_project(root).project;
        self
    }

    /// Finds the agent of the runs this engine drives at `path`, whatever path they journaled
    /// (`chassis resume --agent PATH`). A run still continues under its own version.
    pub fn with_agent_path(mut self, path: impl Into<PathBuf>) -> Engine {
        let path = path.into();
        self.paths.agent = Some(std::path::absolute(&path).unwrap_or(path));
        self
    }

    /// Where this engine finds runs' agents (observers that read a run's spec use it too).
    pub fn agent_paths(&self) -> &AgentPaths {
        &self.paths
    }

    /// Reports every event to `observer` too.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Engine {
        self.observers.push(observer);
        self
    }

    /// Removes secrets from every event before it is applied, journaled or observed.
    pub fn with_redactor(mut self, redactor: Arc<Redactor>) -> Engine {
        self.redactor = redactor;
        self
    }

    /// Reads time from `clock` (simulated time in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Engine {
        self.clock = clock;
        self
    }

    /// Holds leases as `config` says.
    pub fn with_drive_config(mut self, config: DriveConfig) -> Engine {
        self.drive = config;
        self
    }

    /// Stops drives at the next safe point once `interrupt` is triggered.
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Engine {
        self.interrupt = Some(interrupt);
        self
    }

    /// The journal this engine writes.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// How this engine holds leases.
    pub fn drive_config(&self) -> &DriveConfig {
        &self.drive
    }

    /// Now, on this engine's clock (ms since the epoch).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The redactor of a run: the engine's secrets plus those of the run's agent (its spec is
    /// read again, without starting anything). An edge that echoes what a person typed about a
    /// run (a note, who decided, an error naming edited arguments) cleans it with this.
    pub async fn run_redactor(&self, run_id: &str) -> Result<Redactor, Error> {
        Ok(self.human_redactor(&self.load(run_id).await?))
    }

    /// The redactor for what humans type into a run: the engine's, plus the secrets of the
    /// run's agent (its spec is read again, without starting anything).
    pub(crate) fn human_redactor(&self, state: &RunState) -> Redactor {
        let spec = std::fs::read_to_string(self.paths.locate(&state.spec_path))
            .ok()
            .and_then(|text| chassis_core::spec::AgentSpec::parse(&text).ok());
        match spec.and_then(|spec| Redactor::for_spec(&spec).ok()) {
            Some(agent) => self.redactor.merged(&agent),
            None => (*self.redactor).clone(),
        }
    }

    /// Creates a run without driving it (a worker will): returns its id at once.
    pub async fn submit(&self, agent: &Agent, input: &str) -> Result<String, Error> {
        Ok(self
            .submit_with(agent, input, StartOptions::default())
            .await?
            .run_id)
    }

    /// Creates a run without driving it; with an idempotency key already used, returns the run
    /// that key started.
    pub async fn submit_with(
        &self,
        agent: &Agent,
        input: &str,
        options: StartOptions,
    ) -> Result<Submitted, Error> {
        match self.create(agent, input, options, None).await {
            Ok((run_id, _, _)) => Ok(Submitted {
                run_id,
                existing: false,
            }),
            Err(Error::Store(chassis_store::Error::KeyUsed { run_id, .. })) => Ok(Submitted {
                run_id,
                existing: true,
            }),
            Err(e) => Err(e),
        }
    }

    /// Starts a new run of `agent` on `input` and drives it until it stops.
    pub async fn start(&self, agent: &Agent, input: &str) -> Result<RunOutcome, Error> {
        self.start_with(agent, input, StartOptions::default()).await
    }

    /// Like [`Engine::start`], with labels journaled on the run (e.g. the eval suite).
    pub async fn start_tagged(
        &self,
        agent: &Agent,
        input: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<RunOutcome, Error> {
        let options = StartOptions {
            tags,
            ..StartOptions::default()
        };
        self.start_with(agent, input, options).await
    }

    /// Starts a run and drives it. With an idempotency key that started a run before, that run
    /// is resumed instead (or its outcome reported, if it has ended).
    pub async fn start_with(
        &self,
        agent: &Agent,
        input: &str,
        options: StartOptions,
    ) -> Result<RunOutcome, Error> {
        let driver = Driver {
            owner: self.drive.owner.clone(),
            ttl: self.drive.lease_ttl,
        };
        match self.create(agent, input, options, Some(&driver)).await {
            Ok((run_id, state, Some(lease))) => {
                self.drive_then_release(agent, &run_id, state, lease, false)
                    .await
            }
            Ok((run_id, _, None)) => Err(Error::Store(chassis_store::Error::LeaseLost { run_id })),
            Err(Error::Store(chassis_store::Error::KeyUsed { run_id, .. })) => {
                tracing::info!(run_id = %run_id, "idempotency key seen before: continuing its run");
                // Boxed, like the load: this rare path would otherwise size every run's future
                // (a run in flight holds its future's largest state whichever it is in).
                let state = Box::pin(self.load(&run_id)).await?;
                if state.status().is_terminal() {
                    return Ok(RunOutcome::of(&run_id, &state));
                }
                Box::pin(self.resume_with(agent, &run_id, state)).await
            }
            Err(e) => Err(e),
        }
    }

    /// Keeps `agent`'s version definition in the store (once per version and engine), so every
    /// run of it continues under it, whatever its files say later.
    pub async fn pin(&self, agent: &Agent) -> Result<(), Error> {
        let seen = self
            .pinned
            .lock()
            .is_ok_and(|pinned| pinned.contains(&agent.version));
        if seen {
            return Ok(());
        }
        let mut sources = agent.sources().clone();
        sources.spec_path = self.paths.journaled(&sources.spec_path);
        let definition = serde_json::to_string(&sources)
            .map_err(|e| Error::Store(chassis_store::Error::Encode(e.to_string())))?;
        self.journal
            .put_version(&agent.version, &agent.spec.name, &definition)
            .await?;
        if let Ok(mut pinned) = self.pinned.lock() {
            pinned.insert(agent.version.clone());
        }
        Ok(())
    }

    /// Lends this engine an agent already loaded (a server's), so the runs of its version
    /// share it instead of loading another.
    pub async fn adopt(&self, agent: Arc<Agent>) {
        self.agents
            .lock()
            .await
            .insert(agent.version.clone(), agent);
    }

    /// Where a run's notifications go: its version's `[alerts]`, from an agent this engine
    /// has loaded, else the version kept in the store (only its spec is read: nothing
    /// starts), else the spec file it started from. With none of them readable, nothing is
    /// sent (and that is logged).
    pub(crate) async fn alerts_for(&self, state: &RunState) -> chassis_core::spec::AlertsSpec {
        if let Some(agent) = self.agents.lock().await.get(&state.version) {
            return agent.spec.alerts.clone();
        }
        let kept = match state.version.is_empty() {
            true => None,
            false => self
                .journal
                .get_version(&state.version)
                .await
                .ok()
                .flatten(),
        };
        let spec = match kept {
            Some(definition) => serde_json::from_str::<crate::agent::Sources>(&definition)
                .ok()
                .map(|sources| sources.spec),
            None => std::fs::read_to_string(self.paths.locate(&state.spec_path)).ok(),
        };
        match spec.map(|text| chassis_core::spec::AgentSpec::parse(&text)) {
            Some(Ok(spec)) => spec.alerts,
            _ => {
                tracing::warn!(agent = %state.agent, version = %state.version, "cannot read the run's agent spec: its notifications are not sent");
                chassis_core::spec::AlertsSpec::default()
            }
        }
    }

    /// The agent a run continues under: its own version, as kept when the version first ran
    /// (shared by every run of the version this engine drives), or, for runs journaled before
    /// versions were kept, the spec file the run started from. Refused when that is another
    /// version.
    pub async fn agent_for(&self, state: &RunState) -> Result<Arc<Agent>, Error> {
        let mut agents = self.agents.lock().await;
        if let Some(agent) = agents.get(&state.version) {
            return Ok(Arc::clone(agent));
        }
        let kept = if state.version.is_empty() {
            None
        } else {
            self.journal.get_version(&state.version).await?
        };
        let agent = match kept {
            Some(definition) => {
                let mut sources: crate::agent::Sources = serde_json::from_str(&definition)
                    .map_err(|e| {
                        Error::Refused(format!(
                            "agent version {} is kept in an unreadable form: {e}",
                            state.version
                        ))
                    })?;
                sources.spec_path = self.paths.locate(&sources.spec_path.to_string_lossy());
                // Boxed: loading (MCP servers, schemas) is a large future.
                Box::pin(Agent::from_sources(sources)).await?
            }
            None => Box::pin(Agent::load(&self.paths.locate(&state.spec_path))).await?,
        };
        if !state.version.is_empty() && !agent.accepts_version(&state.version) {
            return Err(Error::VersionChanged {
                run_id: String::new(),
                started: state.version.clone(),
                current: agent.version.clone(),
                spec_path: state.spec_path.clone(),
            });
        }
        let agent = Arc::new(agent);
        if !state.version.is_empty() {
            agents.insert(state.version.clone(), Arc::clone(&agent));
        }
        Ok(agent)
    }

    async fn create(
        &self,
        agent: &Agent,
        input: &str,
        options: StartOptions,
        driver: Option<&Driver>,
    ) -> Result<(String, Box<RunState>, Option<Lease>), Error> {
        let system = agent.render_system_with(input, &options.vars)?;
        self.pin(agent).await?;
        let run_id = new_run_id();
        let started = Event::RunStarted(Box::new(chassis_core::RunStart {
            agent: agent.spec.name.clone(),
            spec_path: self.paths.journaled(&agent.spec_path).display().to_string(),
            input: input.to_string(),
            system,
            model: agent.spec.model.to_string(),
            fallbacks: agent.spec.fallbacks.iter().map(|m| m.to_string()).collect(),
            tools: agent.tool_defs.clone(),
            limits: agent.spec.limits.clone(),
            max_tokens: agent.spec.max_tokens,
            prices: agent.prices.clone(),
            at_ms: self.now_ms(),
            max_repairs: agent.spec.max_repairs,
            park_retry_ms: agent.spec.park_retry_ms,
            forked_from: None,
            context: agent.spec.context_policy(),
            version: agent.version.clone(),
            version_label: agent.spec.version.clone(),
            approvals: agent.spec.approvals.clone(),
            tags: options.tags,
        }));
        let started = self
            .redactor
            .merged(&agent.redactor())
            .redact_event(started);
        // Boxed: the state travels through every future that drives the run, and a box is
        // one pointer in each of them rather than a copy of the whole state.
        let mut state = Box::<RunState>::default();
        apply(&run_id, &mut state, &started)?;
        let Created { lease, .. } = self
            .journal
            .create(
                &NewRun {
                    run_id: run_id.clone(),
                    agent: agent.spec.name.clone(),
                    idempotency_key: options.idempotency_key,
                },
                std::slice::from_ref(&started),
                state.wake(),
                driver,
            )
            .await?;
        self.notify(&run_id, &state, &started);
        self.durable(&run_id, state.seq());
        tracing::info!(run_id = %run_id, agent = %agent.spec.name, version = %agent.version, "run started");
        Ok((run_id, state, lease))
    }

    /// Loads a run: its latest state snapshot plus the events after it (or the whole journal
    /// folded, when it has no usable snapshot), so loading costs the same whatever the run's
    /// length.
    pub async fn load(&self, run_id: &str) -> Result<RunState, Error> {
        crate::snapshot::load(self.journal.as_ref(), run_id).await
    }

    /// Continues a run from its last journaled event, reloading its agent from the spec file
    /// it was started with. Refused with the store's `Held` error while another process drives
    /// it.
    pub async fn resume(&self, run_id: &str) -> Result<RunOutcome, Error> {
        let state = self.load(run_id).await?;
        if state.status().is_terminal() {
            return Ok(RunOutcome::of(run_id, &state));
        }
        let lease = self.claim_run(run_id).await?;
        let agent = match self.agent_for(&state).await {
            Ok(agent) => agent,
            Err(e) => {
                self.give_back(&lease).await;
                return Err(with_run(e, run_id));
            }
        };
        self.resume_leased(&agent, run_id, lease).await
    }

    /// Continues a run with an already loaded agent (one loaded with Rust tools, say), under
    /// its lease like every drive.
    pub async fn resume_with(
        &self,
        agent: &Agent,
        run_id: &str,
        state: RunState,
    ) -> Result<RunOutcome, Error> {
        if state.status().is_terminal() {
            return Ok(RunOutcome::of(run_id, &state));
        }
        let lease = self.claim_run(run_id).await?;
        self.resume_leased(agent, run_id, lease).await
    }

    /// Takes the run's lease for this engine; a lease held by a `chassis` process of this
    /// host that no longer exists (killed, crashed) is taken over at once rather than waited
    /// out.
    pub(crate) async fn claim_run(&self, run_id: &str) -> Result<Lease, Error> {
        let (owner, ttl) = (&self.drive.owner, self.drive.lease_ttl);
        match self.journal.claim_run(run_id, owner, ttl).await {
            Err(chassis_store::Error::Held { owner: holder, .. }) if holder_is_gone(&holder) => {
                tracing::info!(run_id, holder = %holder, "the run's driver is gone from this host; taking its lease over");
                Ok(self.journal.take_over(run_id, &holder, owner, ttl).await?)
            }
            claimed => Ok(claimed?),
        }
    }

    /// Drives a run whose lease is held, from the journal as it is now.
    async fn resume_leased(
        &self,
        agent: &Agent,
        run_id: &str,
        lease: Lease,
    ) -> Result<RunOutcome, Error> {
        // Read again under the lease: whatever was written before it was taken is in, the end
        // of the run included (another driver may have finished it after the caller's read).
        let state = match self.load(run_id).await {
            Ok(state) if state.status().is_terminal() => {
                self.release(&lease, &state).await;
                return Ok(RunOutcome::of(run_id, &state));
            }
            Ok(state) => Box::new(state),
            Err(e) => {
                self.give_back(&lease).await;
                return Err(e);
            }
        };
        self.drive_then_release(agent, run_id, state, lease, true)
            .await
    }

    /// Drives a run a worker claimed. Every append is fenced by `lease`, so a worker that lost
    /// its lease can no longer write. The lease is released when the drive ends normally; on an
    /// error it is left to the worker (which holds the run back for a while).
    pub async fn drive_claimed(&self, lease: &Lease) -> Result<RunOutcome, Error> {
        let state = self.load(&lease.run_id).await?;
        if state.status().is_terminal() {
            self.release(lease, &state).await;
            return Ok(RunOutcome::of(&lease.run_id, &state));
        }
        let agent = self
            .agent_for(&state)
            .await
            .map_err(|e| with_run(e, &lease.run_id))?;
        self.drive_leased(&agent, &lease.run_id, Box::new(state), lease.clone(), true)
            .await
    }

    /// Raises limits of a run that has not ended (a human decision, journaled with who raised
    /// them, which wakes the run), then continues it here.
    pub async fn raise_and_resume(
        &self,
        run_id: &str,
        raises: &[(LimitName, f64)],
        by: &str,
    ) -> Result<RunOutcome, Error> {
        self.raise_limits(run_id, raises, by).await?;
        self.resume(run_id).await
    }

    /// Drives under `lease`; on an error the lease is given back with the run's wake time as
    /// it was (another driver, or a worker, may try again).
    async fn drive_then_release(
        &self,
        agent: &Agent,
        run_id: &str,
        state: Box<RunState>,
        lease: Lease,
        resuming: bool,
    ) -> Result<RunOutcome, Error> {
        let outcome = self
            .drive_leased(agent, run_id, state, lease.clone(), resuming)
            .await;
        if let Err(e) = &outcome
            && !matches!(e, Error::Store(chassis_store::Error::LeaseLost { .. }))
        {
            self.give_back(&lease).await;
        }
        outcome
    }

    /// Releases a lease after a failed drive, leaving the run's wake time as the journal's last
    /// write set it.
    async fn give_back(&self, lease: &Lease) {
        if let Err(e) = self.journal.release(lease, u64::MAX, Wake::Never).await {
            tracing::warn!(run_id = %lease.run_id, error = %e, "cannot release the lease; it will expire");
        }
    }

    async fn release(&self, lease: &Lease, state: &RunState) {
        if let Err(e) = self.journal.release(lease, state.seq(), state.wake()).await {
            tracing::warn!(run_id = %lease.run_id, error = %e, "cannot release the lease; it will expire");
        }
    }

    /// Drives the run while renewing its lease; releases it with the fold's wake time when the
    /// drive stops normally.
    async fn drive_leased(
        &self,
        agent: &Agent,
        run_id: &str,
        state: Box<RunState>,
        lease: Lease,
        resuming: bool,
    ) -> Result<RunOutcome, Error> {
        // Every log line while the run is driven carries its id, agent and step.
        let span = tracing::info_span!(
            "run",
            run_id,
            agent = %state.agent,
            step = tracing::field::Empty
        );
        let mut run = Step::new(self, agent, run_id, state, lease.clone());
        let outcome = {
            let drive = tracing::Instrument::instrument(run.drive(resuming), span);
            tokio::select! {
                outcome = drive => outcome,
                () = keep_renewed(self.journal.as_ref(), &self.drive, &lease) => {
                    Err(Error::Store(chassis_store::Error::LeaseLost { run_id: run_id.to_string() }))
                }
            }
        };
        if outcome.is_ok() {
            self.release(&lease, &run.state).await;
        }
        for observer in &self.observers {
            observer.on_released(run_id);
        }
        outcome
    }

    fn notify(&self, run_id: &str, state: &RunState, event: &Event) {
        for observer in &self.observers {
            observer.on_event(run_id, state, event);
        }
    }

    /// The delta sink of one model call, redacted by `redactor`: the observers that want
    /// deltas, or none.
    fn deltas(&self, run_id: &str, step: u32, redactor: &Redactor) -> Option<Arc<ObserverDeltas>> {
        let observers: Vec<Arc<dyn Observer>> = self
            .observers
            .iter()
            .filter(|o| o.wants_deltas())
            .cloned()
            .collect();
        if observers.is_empty() {
            return None;
        }
        Some(Arc::new(ObserverDeltas {
            observers,
            run_id: run_id.to_string(),
            step,
            redactor: redactor.clone(),
            streams: std::sync::Mutex::default(),
        }))
    }

    fn durable(&self, run_id: &str, seq: u64) {
        for observer in &self.observers {
            observer.on_durable(run_id, seq);
        }
    }
}

/// Names the run in a version error raised before the run was known.
fn with_run(error: Error, run: &str) -> Error {
    match error {
        Error::VersionChanged {
            started,
            current,
            spec_path,
            ..
        } => Error::VersionChanged {
            run_id: run.to_string(),
            started,
            current,
            spec_path,
        },
        other => other,
    }
}

/// Renews `lease` every `renew_every`; returns only once it is lost.
pub(crate) async fn keep_renewed(journal: &dyn Journal, config: &DriveConfig, lease: &Lease) {
    loop {
        tokio::time::sleep(config.renew_every).await;
        match journal.renew(lease, config.lease_ttl).await {
            Ok(_) => {}
            Err(chassis_store::Error::LeaseLost { .. }) => return,
            // The lease may still hold; if it expires meanwhile, the next renewal (or the
            // next append) finds out.
            Err(e) => {
                tracing::warn!(run_id = %lease.run_id, error = %e, "cannot renew the lease; retrying")
            }
        }
    }
}

/// Backoff before retrying a tool: the tools' retry policy (200 ms doubling, at most 5 s,
/// full jitter).
fn tool_backoff(attempt: u32) -> Duration {
    chassis_providers::RetryPolicy::TOOLS.backoff(attempt, chassis_providers::jitter())
}

/// The journal's record of something a resilience layer did during step `step`.
fn call_event(step: u32, event: CallEvent) -> Event {
    match event {
        CallEvent::AttemptFailed {
            model,
            attempt,
            error,
            delay,
        } => Event::ModelAttemptFailed {
            step,
            model,
            attempt,
            error,
            delay_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        },
        CallEvent::BreakerOpen { model } => Event::ModelCircuitOpen { step, model },
        CallEvent::Fallback { from, to, reason } => Event::ModelFallback {
            step,
            from,
            to,
            reason,
        },
    }
}

/// What `decide` needs from outside: the clock, and an upper bound on the next context, never
/// below what the provider's own count of the last call implies.
fn inputs(state: &RunState, now_ms: u64) -> Inputs {
    let context = tokens::context(state);
    Inputs {
        now_ms,
        next_input_tokens: tokens::upper_bound(state, &context.messages)
            .max(floor(state, &context)),
    }
}

/// The provider's floor, for a context that is the whole conversation (a shortened one need
/// not repeat the last call's).
fn floor(state: &RunState, context: &chassis_core::context::Context<'_>) -> u64 {
    if context.trimmed {
        0
    } else {
        tokens::provider_floor(state)
    }
}

/// Decides with the cheap token bound; when that bound is what trips a token or cost limit,
/// counts again with the model's real tokenizer (where chassis has one) before concluding.
fn decide_now(state: &RunState, now_ms: u64) -> Decision {
    let mut inputs = inputs(state, now_ms);
    let decision = decide(state, &inputs);
    if let Decision::Limit(hit) = &decision
        && matches!(
            hit.limit,
            LimitName::MaxInputTokens | LimitName::MaxTotalTokens | LimitName::MaxCostUsd
        )
    {
        let model = state
            .models
            .get(state.chain_offset)
            .map_or("", String::as_str);
        let context = tokens::context(state);
        if let Some(precise) = tokens::precise(state, &context.messages, model) {
            // The tokenizer's count may be lower than the bytes, never than the provider's.
            inputs.next_input_tokens = precise
                .min(inputs.next_input_tokens)
                .max(floor(state, &context));
            return decide(state, &inputs);
        }
    }
    decision
}

/// The limit a summarization request would cross with the call it is for, by the cheap bound;
/// when that bound is what trips it, counted again with the model's tokenizer where chassis
/// has one (as [`decide_now`] does for a call).
fn summary_limit(state: &RunState, request: &[chassis_core::Message]) -> Option<LimitHit> {
    let max_output = crate::compact::max_tokens(state);
    let bound = tokens::request_bound(request);
    let hit = chassis_core::decide::summary_limit(state, bound, max_output)?;
    let model = state
        .models
        .get(state.chain_offset)
        .map_or("", String::as_str);
    match tokens::precise_request(request, model) {
        Some(precise) if precise < bound => {
            chassis_core::decide::summary_limit(state, precise, max_output)
        }
        _ => Some(hit),
    }
}

/// How a limit reads in a run's failure or pause reason.
fn describe_limit(hit: &LimitHit) -> String {
    let show = |x: f64| match hit.limit {
        LimitName::MaxCostUsd => format!("${x:.4}"),
        LimitName::MaxWallTime | LimitName::MaxPark => format!("{:.1}s", x / 1000.0),
        _ => format!("{x}"),
    };
    format!(
        "limit {} reached: used {}, the next call could bring it to {}, the limit is {}",
        hit.limit,
        show(hit.used),
        show(hit.projected),
        show(hit.value)
    )
}

fn apply(run_id: &str, state: &mut RunState, event: &Event) -> Result<(), Error> {
    state.apply(event).map_err(|source| Error::Replay {
        run_id: run_id.to_string(),
        source,
    })
}

/// How a tool call ended.
enum Called {
    Done(Result<String, chassis_tools::ToolError>),
    /// A person interrupted the drive and the call did not finish within the grace.
    Interrupted(String),
}

/// One run being driven: its state, the events not yet flushed and the alerts they raise.
struct Step<'e> {
    engine: &'e Engine,
    agent: &'e Agent,
    run_id: &'e str,
    state: Box<RunState>,
    unflushed: Vec<Event>,
    alerts: Vec<(&'static str, serde_json::Value)>,
    lease: Lease,
    redactor: Redactor,
    /// The step whose summarization failed: its call goes out truncated instead.
    summary_failed: Option<u32>,
    /// The event after which the run's state was last snapshot (or loaded).
    snapshot_at: u64,
}

impl<'e> Step<'e> {
    fn new(
        engine: &'e Engine,
        agent: &'e Agent,
        run_id: &'e str,
        state: Box<RunState>,
        lease: Lease,
    ) -> Step<'e> {
        let every = engine.drive.snapshot_every.max(1);
        let snapshot_at = state.seq() / every * every;
        Step {
            engine,
            agent,
            run_id,
            state,
            unflushed: Vec::new(),
            alerts: Vec::new(),
            lease,
            redactor: engine.redactor.merged(&agent.redactor()),
            summary_failed: None,
            snapshot_at,
        }
    }

    fn now_ms(&self) -> u64 {
        self.engine.now_ms()
    }

    fn interrupted(&self) -> Option<String> {
        self.engine.interrupt.as_ref().and_then(Interrupt::reason)
    }

    async fn drive(&mut self, resuming: bool) -> Result<RunOutcome, Error> {
        let run_id = self.run_id;
        let agent = self.agent;
        if resuming {
            if !self.state.version.is_empty() && !agent.accepts_version(&self.state.version) {
                return Err(Error::VersionChanged {
                    run_id: run_id.to_string(),
                    started: self.state.version.clone(),
                    current: agent.version.clone(),
                    spec_path: self.state.spec_path.clone(),
                });
            }
            let resumed = Event::RunResumed {
                at_ms: self.now_ms(),
            };
            if matches!(self.state.status(), RunStatus::Waiting | RunStatus::Paused) {
                // Resuming changes nothing while the reason to wait for a human still holds.
                let mut probe = self.state.clone();
                apply(run_id, &mut probe, &resumed)?;
                if matches!(
                    decide(&probe, &inputs(&probe, self.now_ms())),
                    Decision::AwaitHuman { .. }
                ) {
                    return Ok(RunOutcome::of(run_id, &self.state));
                }
            }
            self.record(resumed)?;
            self.flush().await?;
            tracing::info!(run_id, seq = self.state.seq(), "run resumed");
        }
        loop {
            if let Some(why) = self.interrupted() {
                return Box::pin(self.stop_interrupted(&why)).await;
            }
            match decide_now(&self.state, self.now_ms()) {
                Decision::CallModel => {
                    if self.summary_failed != Some(self.state.steps())
                        && let Some(range) = crate::compact::due(&self.state)
                    {
                        let request = crate::compact::request(&self.state, range.clone());
                        if let Some(hit) = summary_limit(&self.state, &request) {
                            self.limit_reached(hit)?;
                            continue;
                        }
                        // Decide again: the summary changes the context, and its cost counts.
                        Box::pin(self.compact(agent, range, request)).await?;
                        continue;
                    }
                    if self.call_model_overlapping_flush(agent).await? {
                        let why = self.interrupted().unwrap_or_default();
                        return Box::pin(self.stop_interrupted(&why)).await;
                    }
                }
                Decision::CallTool(action) => {
                    // Boxed: a run waiting on its model holds only the model call's state.
                    if let Some(why) = Box::pin(self.call_tool(agent, action)).await? {
                        return Box::pin(self.stop_interrupted(&why)).await;
                    }
                }
                Decision::OutcomeUnknown(action) => {
                    tracing::warn!(run_id, call_id = %action.call_id, tool = %action.name, "interrupted call's outcome is unknown; not repeating it");
                    self.record(action.outcome_unknown())?;
                }
                Decision::AwaitHuman { reason } => {
                    self.alert("waiting_for_human", serde_json::json!({ "reason": reason }));
                    let at_ms = self.now_ms();
                    self.record(Event::RunWaiting { reason, at_ms })?
                }
                Decision::Pause { reason } => {
                    tracing::warn!(run_id, %reason, "run parked; it is retried by itself (or `chassis resume` continues it)");
                    let at_ms = self.now_ms();
                    self.record(Event::RunPaused { reason, at_ms })?
                }
                Decision::Limit(hit) => self.limit_reached(hit)?,
                Decision::RequestApproval(action) => self.request_approval(action)?,
                Decision::Deny(action) => {
                    tracing::info!(run_id, call_id = %action.call_id, tool = %action.name, "call denied by the approval policy");
                    let error = format!(
                        "the approval policy of this agent denies `{}`; do not call it again",
                        action.name
                    );
                    self.record(action.refused(error))?
                }
                Decision::ApprovalTimedOut(action, on_timeout) => {
                    let now = self.now_ms();
                    for event in crate::approvals::timeout_events(
                        &self.state,
                        &action.call_id,
                        on_timeout,
                        now,
                    ) {
                        if let Event::ApprovalEscalated { .. } = &event {
                            self.alert(
                                "approval_escalated",
                                serde_json::json!({ "call_id": action.call_id, "tool": action.name }),
                            );
                        }
                        self.record(event)?;
                    }
                }
                Decision::SwitchModel { index, reason } => {
                    let model = self.state.models.get(index).cloned().unwrap_or_default();
                    tracing::warn!(run_id, %model, %reason, "switching model for the rest of the run");
                    self.record(Event::ModelSwitched {
                        index,
                        model,
                        reason,
                    })?
                }
                Decision::Cancel { by, reason } => {
                    tracing::info!(run_id, %by, %reason, "run cancelled");
                    let at_ms = self.now_ms();
                    self.record(Event::RunCancelled { by, reason, at_ms })?
                }
                Decision::Finish { output } => self.record(Event::RunCompleted { output })?,
                Decision::Fail { error } => self.record(Event::RunFailed { error })?,
                Decision::Idle => {
                    self.flush().await?;
                    let outcome = RunOutcome::of(run_id, &self.state);
                    tracing::info!(run_id, status = %outcome.status, steps = self.state.steps(), "run stopped");
                    return Ok(outcome);
                }
            }
        }
    }

    /// Stops at a safe point because a person asked: the run waits if a human must settle
    /// something anyway, else it pauses until someone resumes it; then it is flushed.
    async fn stop_interrupted(&mut self, why: &str) -> Result<RunOutcome, Error> {
        let at_ms = self.now_ms();
        if self.state.status() == RunStatus::Running {
            match decide_now(&self.state, at_ms) {
                Decision::AwaitHuman { reason } => {
                    self.record(Event::RunWaiting { reason, at_ms })?
                }
                Decision::Finish { output } => self.record(Event::RunCompleted { output })?,
                _ => self.record(Event::RunPaused {
                    reason: format!(
                        "interrupted ({why}); continue with `chassis resume {}`",
                        self.run_id
                    ),
                    at_ms,
                })?,
            }
        }
        self.flush().await?;
        tracing::info!(run_id = self.run_id, status = %self.state.status(), why, "drive interrupted");
        let mut outcome = RunOutcome::of(self.run_id, &self.state);
        outcome.interrupted = true;
        Ok(outcome)
    }

    fn record(&mut self, event: Event) -> Result<(), Error> {
        let event = self.redactor.redact_event(event);
        apply(self.run_id, &mut self.state, &event)?;
        self.engine.notify(self.run_id, &self.state, &event);
        self.unflushed.push(event);
        Ok(())
    }

    /// The webhook notifications `events`, to be appended after event `expected`, raise: written
    /// in the same transaction as they are. Their events are redacted already; the bodies are
    /// redacted again, since a webhook is an exit.
    fn notifications(&self, expected: u64, events: &[Event]) -> Vec<chassis_store::Notification> {
        let mut notes = crate::outbox::notifications(
            &self.agent.spec.alerts,
            &crate::outbox::About {
                run_id: self.run_id,
                agent: &self.state.agent,
                version: &self.state.version,
                at_ms: self.now_ms(),
            },
            expected + 1,
            events,
        );
        for note in &mut notes {
            if let Ok(mut body) = serde_json::from_str::<serde_json::Value>(&note.body) {
                self.redactor.redact_json(&mut body);
                note.body = body.to_string();
            }
        }
        notes
    }

    /// Queues an alert's log line; it is written once the events that raised it are durable.
    /// Its details come from the run's redacted state, and are redacted again here.
    fn alert(&mut self, kind: &'static str, mut details: serde_json::Value) {
        self.redactor.redact_json(&mut details);
        self.alerts.push((kind, details));
    }

    /// Events up to `seq` became durable: observers hear of it, and the alerts they raised go
    /// out.
    fn durable(&mut self, seq: u64) {
        self.engine.durable(self.run_id, seq);
        for (kind, details) in self.alerts.drain(..) {
            self.agent
                .alerts
                .emit(kind, self.run_id, &self.state.agent, details);
        }
    }

    /// The state encoded with its seq, when a snapshot is due (`snapshot_every` events since
    /// the last); taken only where the state is what the journal holds (or will
    /// once the pending append succeeds).
    fn snapshot_due(&self) -> Option<(u64, String)> {
        let seq = self.state.seq();
        if seq < self.snapshot_at + self.engine.drive.snapshot_every.max(1) {
            return None;
        }
        crate::snapshot::encode(&self.state).map(|text| (seq, text))
    }

    /// Keeps a snapshot; a failure only costs the next load a longer fold.
    async fn put_snapshot(&mut self, (seq, text): (u64, String)) {
        match self
            .engine
            .journal
            .put_snapshot(self.run_id, seq, &text)
            .await
        {
            Ok(()) => self.snapshot_at = seq,
            Err(e) => {
                tracing::warn!(run_id = self.run_id, seq, error = %e, "could not keep a state snapshot");
            }
        }
    }

    /// Appends what is unflushed under the lease. If the journal moved, only a human's decision
    /// can have moved it (nobody else holds the lease): it is taken in, and the append retried.
    async fn flush(&mut self) -> Result<(), Error> {
        for _ in 0..8 {
            if self.unflushed.is_empty() {
                return Ok(());
            }
            let expected = self.state.seq() - self.unflushed.len() as u64;
            let notes = self.notifications(expected, &self.unflushed);
            match self
                .engine
                .journal
                .append_with(
                    &self.lease,
                    expected,
                    &self.unflushed,
                    self.state.wake(),
                    &notes,
                )
                .await
            {
                Ok(seq) => {
                    self.unflushed.clear();
                    self.durable(seq);
                    if let Some(encoded) = self.snapshot_due() {
                        self.put_snapshot(encoded).await;
                    }
                    if !notes.is_empty() {
                        self.engine.queued_notifications();
                    }
                    return Ok(());
                }
                // Boxed, as every rare path of a step: a future is as large as its largest state,
                // and every run waiting on its model would pay for this one.
                Err(chassis_store::Error::SequenceConflict { .. }) => {
                    Box::pin(self.rebase(expected)).await?
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Refused(format!(
            "run {}: the journal kept moving under its driver; giving the run back",
            self.run_id
        )))
    }

    /// Takes in what humans journaled after `expected` (only decisions can be there), then
    /// replays the unflushed events on top.
    async fn rebase(&mut self, expected: u64) -> Result<(), Error> {
        let newer = self
            .engine
            .journal
            .load_after(self.run_id, expected)
            .await?;
        if let Some(other) = newer.iter().find(|r| !r.event.is_human_decision()) {
            return Err(Error::Refused(format!(
                "run {}: event {} ({}) was journaled by another driver; giving the run back",
                self.run_id,
                other.seq,
                other.event.kind()
            )));
        }
        let mut state = Box::new(self.engine.load(self.run_id).await?);
        for event in &self.unflushed {
            apply(self.run_id, &mut state, event)?;
        }
        tracing::info!(
            run_id = self.run_id,
            decisions = newer.len(),
            "took in a human's decision journaled while the run was driven"
        );
        self.state = state;
        Ok(())
    }

    /// Makes the previous step durable while the model thinks: a model call is safe to repeat,
    /// and nothing acts on its answer before both are done. Returns true when a person
    /// interrupted the call.
    async fn call_model_overlapping_flush(&mut self, agent: &Agent) -> Result<bool, Error> {
        // The state now is what the journal holds once the pending events are appended.
        let snapshot = self.snapshot_due();
        let pending = std::mem::take(&mut self.unflushed);
        let expected = self.state.seq() - pending.len() as u64;
        let wake = self.state.wake();
        let journal = Arc::clone(&self.engine.journal);
        let lease = self.lease.clone();
        let notes = self.notifications(expected, &pending);
        let engine = self.engine;
        let append = async move {
            let result = if pending.is_empty() {
                Ok(0)
            } else {
                journal
                    .append_with(&lease, expected, &pending, wake, &notes)
                    .await
            };
            if result.is_ok() && !notes.is_empty() {
                engine.queued_notifications();
            }
            // The join below keeps this output until the model answers, which may be minutes:
            // the events are kept only when they must be appended again.
            let appended_any = !pending.is_empty();
            let kept = match &result {
                Err(chassis_store::Error::SequenceConflict { .. }) => Some(pending),
                _ => None,
            };
            (result, appended_any, kept)
        };
        let interrupt = self.engine.interrupt.clone();
        let call = async {
            match interrupt {
                // An interrupted call is dropped: it is repeated when the run resumes.
                Some(interrupt) => tokio::select! {
                    result = self.call_model(agent) => result.map(|()| false),
                    _ = interrupt.triggered() => Ok(true),
                },
                None => self.call_model(agent).await.map(|()| false),
            }
        };
        let ((appended, appended_any, kept), called) = tokio::join!(append, call);
        match appended {
            // What the model call recorded meanwhile stays unflushed.
            Ok(seq) if appended_any => {
                self.durable(seq);
                if let Some(encoded) = snapshot {
                    self.put_snapshot(encoded).await;
                }
            }
            Ok(_) => {}
            Err(chassis_store::Error::SequenceConflict { .. }) => {
                let mut unflushed = kept.unwrap_or_default();
                unflushed.append(&mut self.unflushed);
                self.unflushed = unflushed;
                Box::pin(self.rebase(expected)).await?;
            }
            Err(e) => return Err(e.into()),
        }
        let interrupted = called?;
        Ok(interrupted)
    }

    fn limit_reached(&mut self, hit: LimitHit) -> Result<(), Error> {
        let reason = describe_limit(&hit);
        self.alert(
            "limit_reached",
            serde_json::json!({
                "limit": hit.limit,
                "value": hit.value,
                "used": hit.used,
                "projected": hit.projected,
                "action": hit.action.as_str(),
            }),
        );
        let action = hit.action;
        self.record(Event::LimitReached {
            limit: hit.limit,
            value: hit.value,
            used: hit.used,
            projected: hit.projected,
            action,
        })?;
        let at_ms = self.now_ms();
        match action {
            LimitAction::Fail => self.record(Event::RunFailed { error: reason }),
            LimitAction::Pause => self.record(Event::RunPaused {
                reason: format!(
                    "{reason}; continue with `chassis resume {} --raise {}=VALUE`",
                    self.run_id, hit.limit
                ),
                at_ms,
            }),
            LimitAction::Escalate => self.record(Event::RunWaiting {
                reason: format!("limit request: {reason}; a human must raise it or reject the run"),
                at_ms,
            }),
        }
    }

    fn request_approval(&mut self, action: ToolAction) -> Result<(), Error> {
        let event = crate::approvals::request_event(&self.state, &action, self.now_ms());
        self.alert(
            "approval_requested",
            serde_json::json!({ "call_id": action.call_id, "tool": action.name, "arguments": action.arguments }),
        );
        self.record(event)
    }

    /// Summarizes the messages in `range` with the run's model chain and journals the summary
    /// (`context_compacted`), durable before the context uses it, so a resumed run reads it
    /// and never makes it again. A failed summarization leaves this step's call to truncation.
    async fn compact(
        &mut self,
        agent: &Agent,
        range: std::ops::Range<usize>,
        messages: Vec<chassis_core::Message>,
    ) -> Result<(), Error> {
        let step = self.state.steps();
        let (Some(from_seq), Some(to_seq)) = (
            self.state.message_seq(range.start),
            self.state.message_seq(range.end - 1),
        ) else {
            self.summary_failed = Some(step);
            return Ok(());
        };
        let request = ChatRequest {
            model: agent.spec.model.model.as_str().into(),
            messages: messages.into(),
            tools: Vec::new().into(),
            max_tokens: Some(crate::compact::max_tokens(&self.state)),
            temperature: agent.spec.temperature,
            report: Reporter::default(),
            deltas: chassis_providers::Deltas::default(),
        };
        let result = agent
            .models
            .complete_from(self.state.chain_offset, &request)
            .await;
        let response = match result {
            Ok(response)
                if response
                    .message
                    .content
                    .as_deref()
                    .is_some_and(|s| !s.trim().is_empty()) =>
            {
                response
            }
            Ok(_) => {
                tracing::warn!(
                    run_id = self.run_id,
                    step,
                    "the summarization answered no text; truncating this step's context instead"
                );
                self.summary_failed = Some(step);
                return Ok(());
            }
            Err(error) => {
                let shown = self.redactor.redact(&error.to_string());
                tracing::warn!(run_id = self.run_id, step, error = %shown, "summarization failed; truncating this step's context instead");
                self.summary_failed = Some(step);
                return Ok(());
            }
        };
        let usage = response.usage;
        let cost_usd = self.state.prices.get(&response.served_by).map(|p| {
            p.cost(
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.output_tokens,
            )
        });
        tracing::info!(
            run_id = self.run_id,
            step,
            from_seq,
            to_seq,
            "context compacted"
        );
        self.record(Event::ContextCompacted {
            from_seq,
            to_seq,
            summary: response.message.content.unwrap_or_default(),
            model: response.served_by,
            usage,
            cost_usd,
        })?;
        self.flush().await
    }

    async fn call_model(&mut self, agent: &Agent) -> Result<(), Error> {
        let step = self.state.steps() + 1;
        tracing::Span::current().record("step", step);
        let offset = self.state.chain_offset;
        let model = self
            .state
            .models
            .get(offset)
            .cloned()
            .unwrap_or_else(|| self.state.model.clone());
        self.record(Event::ModelRequested {
            step,
            model: model.clone(),
            messages: self.state.messages().len(),
        })?;
        let context = tokens::context(&self.state);
        if context.trimmed {
            tracing::debug!(
                run_id = self.run_id,
                step,
                sent = context.messages.len(),
                conversation = self.state.messages().len(),
                "context shortened to fit the model's window"
            );
        }
        let sink = self.engine.deltas(self.run_id, step, &self.redactor);
        let request = ChatRequest {
            model: agent.spec.model.model.as_str().into(),
            messages: context.messages.as_ref().into(),
            tools: self.state.tools.as_ref().into(),
            max_tokens: Some(self.state.max_tokens),
            temperature: agent.spec.temperature,
            report: Reporter::default(),
            deltas: sink
                .clone()
                .map_or_else(chassis_providers::Deltas::default, |sink| {
                    chassis_providers::Deltas::new(sink)
                }),
        };
        let began = Instant::now();
        let result = agent.models.complete_from(offset, &request).await;
        if let (Some(sink), Ok(_)) = (&sink, &result) {
            sink.finish();
        }
        let latency_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        for event in request.report.drain() {
            self.record(call_event(step, event))?;
        }
        match result {
            Ok(mut response) => {
                tracing::debug!(run_id = self.run_id, step, latency_ms, served_by = %response.served_by, "model answered");
                // Arguments past their bound go at once, not after being journaled and folded;
                // their refusals are journaled with the reply.
                let run_id = self.run_id;
                let refusals: Vec<Event> = agent
                    .toolbox
                    .leave_out_oversized(&mut response.message)
                    .into_iter()
                    .map(|(index, refusal)| {
                        let call_id = chassis_core::state::call_id(step, index);
                        let name = response.message.tool_calls[index].name.clone();
                        tracing::info!(run_id, %call_id, tool = %name, %refusal, "tool call refused");
                        Event::ToolRefused {
                            call_id,
                            name,
                            error: refusal.to_string(),
                        }
                    })
                    .collect();
                let usage = response.usage;
                let cost_usd = self.state.prices.get(&response.served_by).map(|p| {
                    p.cost(
                        usage.input_tokens,
                        usage.cached_input_tokens,
                        usage.output_tokens,
                    )
                });
                self.record(Event::ModelResponded {
                    step,
                    cost_usd,
                    model: response.served_by,
                    message: response.message,
                    usage: response.usage,
                    finish_reason: response.finish_reason,
                    latency_ms,
                })?;
                for refusal in refusals {
                    self.record(refusal)?;
                }
                Ok(())
            }
            Err(error) => {
                let shown = self.redactor.redact(&error.to_string());
                tracing::warn!(run_id = self.run_id, step, error = %shown, "model call failed");
                self.record(Event::ModelFailed {
                    step,
                    model,
                    unavailable: error.is_unavailable(),
                    error: error.to_string(),
                })
            }
        }
    }

    /// Where call `call_id` reports its progress: the observers, redacted (a third-party
    /// server's message may quote anything), or nowhere when nobody observes.
    fn progress_sink(&self, call_id: &str) -> chassis_tools::ProgressSink {
        if self.engine.observers.is_empty() {
            return chassis_tools::ProgressSink::default();
        }
        let observers = self.engine.observers.clone();
        let redactor = self.redactor.clone();
        let (run_id, call_id) = (self.run_id.to_string(), call_id.to_string());
        chassis_tools::ProgressSink::new(move |mut progress| {
            progress.message = progress.message.map(|m| redactor.redact(&m));
            for observer in &observers {
                observer.on_tool_progress(&run_id, &call_id, &progress);
            }
        })
    }

    /// Executes one tool call as `action` says. Returns why, when a person interrupted it.
    async fn call_tool(
        &mut self,
        agent: &Agent,
        action: ToolAction,
    ) -> Result<Option<String>, Error> {
        let (args, tool) = match agent.toolbox.prepare(&action.name, &action.arguments) {
            Ok(prepared) => prepared,
            Err(refusal) => {
                let shown = self.redactor.redact(&refusal.to_string());
                tracing::info!(run_id = self.run_id, call_id = %action.call_id, tool = %action.name, refusal = %shown, "tool call refused");
                self.record(action.refused(refusal.to_string()))?;
                return Ok(None);
            }
        };
        self.record(action.started(self.run_id, args.clone()))?;
        let flush_first =
            action.flush_first() || tool.def().risk != chassis_core::RiskClass::ReadOnly;
        if flush_first {
            // An effect that is not safe to repeat waits until its intent is durable.
            self.flush().await?;
        }
        let context = CallContext {
            run_id: self.run_id.to_string(),
            call_id: action.call_id.clone(),
            idempotency_key: action.idempotency_key(self.run_id),
            began: tokio::time::Instant::now(),
            progress: self.progress_sink(&action.call_id),
        };
        let began = Instant::now();
        let mut attempt = 1;
        let called = loop {
            let called = self.execute(tool.as_ref(), args.clone(), &context).await;
            match called {
                // An answer of the tool's own, or a call out of time, would only be repeated.
                Called::Done(Err(error)) if attempt < action.attempts && error.may_retry() => {
                    let delay = tool_backoff(attempt);
                    let shown = self.redactor.redact(error.message());
                    tracing::info!(run_id = self.run_id, call_id = %action.call_id, tool = %action.name, attempt, error = %shown, "retrying tool");
                    self.record(action.attempt_failed(
                        attempt,
                        error.message(),
                        u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    ))?;
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                called => break called,
            }
        };
        let latency_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        let interrupted = match called {
            Called::Done(Ok(output)) => {
                self.record(action.finished(true, output, latency_ms))?;
                None
            }
            Called::Done(Err(error)) if error.is_indeterminate() => {
                let shown = self.redactor.redact(error.message());
                tracing::warn!(run_id = self.run_id, call_id = %action.call_id, tool = %action.name, error = %shown, "tool call cut off; it may have acted");
                self.record(action.cut_off(error.message(), latency_ms))?;
                None
            }
            Called::Done(Err(error)) => {
                self.record(action.finished(false, error.message(), latency_ms))?;
                None
            }
            Called::Interrupted(why) => {
                self.record(action.cut_off(
                    format!("interrupted ({why}) before it finished"),
                    latency_ms,
                ))?;
                Some(why)
            }
        };
        tracing::debug!(run_id = self.run_id, call_id = %action.call_id, tool = %action.name, latency_ms, "tool finished");
        if flush_first {
            // The world changed: its record must not wait for the next step.
            self.flush().await?;
        }
        Ok(interrupted)
    }

    /// One attempt of a tool call, under the engine's deadline; when a person interrupts, the
    /// call gets a short grace to finish.
    async fn execute(
        &self,
        tool: &dyn chassis_tools::Tool,
        args: serde_json::Value,
        context: &CallContext,
    ) -> Called {
        let config = &self.engine.drive;
        let deadline = config.tool_deadline;
        let call = async {
            match tokio::time::timeout(deadline, tool.call(args, context)).await {
                Ok(result) => result,
                Err(_) => Err(chassis_tools::ToolError::indeterminate(format!(
                    "`{}` did not answer within the engine's deadline of {}s",
                    tool.def().name,
                    deadline.as_secs()
                ))),
            }
        };
        tokio::pin!(call);
        let Some(interrupt) = self.engine.interrupt.clone() else {
            return Called::Done(call.await);
        };
        tokio::select! {
            result = &mut call => Called::Done(result),
            why = interrupt.triggered() => {
                match tokio::time::timeout(config.tool_grace, &mut call).await {
                    Ok(result) => Called::Done(result),
                    Err(_) => Called::Interrupted(why),
                }
            }
        }
    }
}
