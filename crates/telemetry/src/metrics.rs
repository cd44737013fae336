//! Journal events → Prometheus metrics, and the `/metrics` endpoint.
//!
//! Counters and histograms count what this process saw happen (runs it drove, calls it made).
//! Gauges of where runs stand (`chassis_runs`, `chassis_approvals_pending`) are read from the
//! journal at scrape time, so they are right however many processes share it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chassis_core::Observer;
use chassis_core::{Event, RunState, RunStatus};
use chassis_store::{Journal, ListFilter};

use crate::registry::{Kind, LATENCY_BUCKETS, Labels, Registry};

/// Most runs per status read for the scrape-time gauges.
const GAUGE_RUN_LIMIT: usize = 10_000;

/// Most waiting runs whose journals are read to count pending approvals.
const APPROVAL_SCAN_LIMIT: usize = 1_000;

const FAMILIES: &[(&str, &str, Kind)] = &[
    (
        "chassis_runs_started_total",
        "Runs started, by agent and version.",
        Kind::Counter,
    ),
    (
        "chassis_runs_resumed_total",
        "Runs resumed, by agent and version.",
        Kind::Counter,
    ),
    (
        "chassis_runs_completed_total",
        "Runs completed, by agent and version.",
        Kind::Counter,
    ),
    (
        "chassis_runs_failed_total",
        "Runs failed, by agent and version.",
        Kind::Counter,
    ),
    (
        "chassis_runs_cancelled_total",
        "Runs cancelled, by agent and version.",
        Kind::Counter,
    ),
    (
        "chassis_runs_waiting_total",
        "Times a run stopped to wait for a human, by agent and version.",
        Kind::Counter,
    ),
    (
        "chassis_runs_paused_total",
        "Times a run parked itself (a limit or an outage), by agent and version.",
        Kind::Counter,
    ),
    (
        "chassis_runs_active",
        "Runs this process is driving now, by agent and version.",
        Kind::Gauge,
    ),
    (
        "chassis_runs",
        "Runs in the journal that have not ended, by agent and status (read at scrape).",
        Kind::Gauge,
    ),
    (
        "chassis_model_calls_total",
        "Model calls, by agent, model and outcome (ok, error, unavailable).",
        Kind::Counter,
    ),
    (
        "chassis_model_tokens_total",
        "Tokens, by agent, model and type (input, output, cached_input).",
        Kind::Counter,
    ),
    (
        "chassis_model_cost_usd_total",
        "Dollars spent on model calls of known price, by agent and model.",
        Kind::Counter,
    ),
    (
        "chassis_model_retries_total",
        "Failed model attempts that were retried, by agent and model.",
        Kind::Counter,
    ),
    (
        "chassis_model_fallbacks_total",
        "Moves to the next model of the chain within a step.",
        Kind::Counter,
    ),
    (
        "chassis_model_switches_total",
        "Runs that gave up on a model for good (repeated invalid output).",
        Kind::Counter,
    ),
    (
        "chassis_breaker_open_total",
        "Model calls skipped because the model's circuit breaker was open.",
        Kind::Counter,
    ),
    (
        "chassis_breaker_state",
        "Circuit breaker as last seen by a run: 1 open, 0 closed.",
        Kind::Gauge,
    ),
    (
        "chassis_tool_calls_total",
        "Tool calls, by agent, tool and outcome (ok, error, refused, unknown).",
        Kind::Counter,
    ),
    (
        "chassis_tool_retries_total",
        "Failed tool attempts that were retried, by agent and tool.",
        Kind::Counter,
    ),
    (
        "chassis_limits_reached_total",
        "Limits reached, by agent, limit and action.",
        Kind::Counter,
    ),
    (
        "chassis_approvals_requested_total",
        "Tool calls that waited for a human's approval, by agent.",
        Kind::Counter,
    ),
    (
        "chassis_approvals_pending",
        "Approvals waiting for a decision, by agent (read at scrape).",
        Kind::Gauge,
    ),
    (
        "chassis_step_duration_seconds",
        "Duration of a step: one model call and its tool calls.",
        Kind::Histogram(LATENCY_BUCKETS),
    ),
    (
        "chassis_model_call_duration_seconds",
        "Duration of a model call, retries and fallbacks included.",
        Kind::Histogram(LATENCY_BUCKETS),
    ),
    (
        "chassis_tool_call_duration_seconds",
        "Duration of a tool call, retries included.",
        Kind::Histogram(LATENCY_BUCKETS),
    ),
];

/// What the metrics observer remembers of a run between events.
#[derive(Default)]
struct RunClock {
    active: bool,
    step_started: Option<Instant>,
    call_started: Option<Instant>,
}

/// The process's metrics: an observer of every run, rendered for Prometheus.
pub struct Metrics {
    registry: Registry,
    runs: Mutex<HashMap<String, RunClock>>,
    journal: Mutex<Option<Arc<dyn Journal>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family declared, nothing counted yet.
    pub fn new() -> Metrics {
        let registry = Registry::default();
        for (name, help, kind) in FAMILIES {
            registry.describe(name, help, *kind);
        }
        Metrics {
            registry,
            runs: Mutex::new(HashMap::new()),
            journal: Mutex::new(None),
        }
    }

    /// Reads the run and approval gauges from `journal` at every scrape.
    pub fn watch_journal(&self, journal: Arc<dyn Journal>) {
        if let Ok(mut slot) = self.journal.lock() {
            *slot = Some(journal);
        }
    }

    /// The registry (for tests and for reading single values).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything, in the Prometheus text format, with the journal gauges fresh.
    pub async fn render(&self) -> String {
        let journal = self.journal.lock().ok().and_then(|j| j.clone());
        if let Some(journal) = journal
            && let Err(error) = self.read_journal(journal.as_ref()).await
        {
            tracing::warn!(%error, "metrics: cannot read run gauges from the journal");
        }
        self.registry.render()
    }

    async fn read_journal(&self, journal: &dyn Journal) -> Result<(), chassis_store::Error> {
        let mut runs: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
        let mut pending: BTreeMap<String, u64> = BTreeMap::new();
        for status in [RunStatus::Running, RunStatus::Waiting, RunStatus::Paused] {
            let listed = journal
                .list(&ListFilter {
                    status: Some(status),
                    agent: None,
                    limit: Some(GAUGE_RUN_LIMIT),
                    ..ListFilter::default()
                })
                .await?;
            for run in &listed {
                *runs
                    .entry((run.agent.clone(), status.as_str()))
                    .or_default() += 1;
            }
            if status == RunStatus::Waiting {
                for run in listed.iter().take(APPROVAL_SCAN_LIMIT) {
                    let records = journal.load(&run.run_id).await?;
                    let open = pending_approvals(records.iter().map(|r| &r.event));
                    if open > 0 {
                        *pending.entry(run.agent.clone()).or_default() += open;
                    }
                }
            }
        }
        self.registry.clear("chassis_runs");
        for ((agent, status), n) in runs {
            self.registry.set(
                "chassis_runs",
                vec![("agent", agent), ("status", status.to_string())],
                n as f64,
            );
        }
        self.registry.clear("chassis_approvals_pending");
        for (agent, n) in pending {
            self.registry.set(
                "chassis_approvals_pending",
                vec![("agent", agent)],
                n as f64,
            );
        }
        Ok(())
    }

    fn handle(&self, state: &RunState, event: &Event, clock: &mut RunClock) {
        let r = &self.registry;
        let agent = || ("agent", state.agent.clone());
        let run_labels = || vec![agent(), ("version", state.version.clone())];
        let now = Instant::now();
        let end_step = |clock: &mut RunClock| {
            if let Some(started) = clock.step_started.take() {
                r.observe(
                    "chassis_step_duration_seconds",
                    vec![agent()],
                    now.duration_since(started).as_secs_f64(),
                );
            }
        };
        let stop = |clock: &mut RunClock, counter: &'static str| {
            end_step(clock);
            r.inc(counter, run_labels());
            if std::mem::take(&mut clock.active) {
                r.add("chassis_runs_active", run_labels(), -1.0);
            }
        };
        match event {
            Event::RunStarted(_) | Event::RunResumed { .. } => {
                let counter = if matches!(event, Event::RunStarted(_)) {
                    "chassis_runs_started_total"
                } else {
                    "chassis_runs_resumed_total"
                };
                r.inc(counter, run_labels());
                if !std::mem::replace(&mut clock.active, true) {
                    r.add("chassis_runs_active", run_labels(), 1.0);
                }
            }
            Event::RunCompleted { .. } => stop(clock, "chassis_runs_completed_total"),
            Event::RunFailed { .. } => stop(clock, "chassis_runs_failed_total"),
            Event::RunCancelled { .. } => stop(clock, "chassis_runs_cancelled_total"),
            Event::RunWaiting { .. } => stop(clock, "chassis_runs_waiting_total"),
            Event::RunPaused { .. } => stop(clock, "chassis_runs_paused_total"),
            Event::ModelRequested { .. } => {
                end_step(clock);
                clock.step_started = Some(now);
                clock.call_started = Some(now);
            }
            Event::ModelResponded {
                model,
                usage,
                latency_ms,
                cost_usd,
                ..
            } => {
                let labels = || vec![agent(), ("model", model.clone())];
                clock.call_started = None;
                let mut outcome = labels();
                outcome.push(("outcome", "ok".into()));
                r.inc("chassis_model_calls_total", outcome);
                for (kind, n) in [
                    ("input", usage.input_tokens),
                    ("output", usage.output_tokens),
                    ("cached_input", usage.cached_input_tokens),
                ] {
                    let mut l = labels();
                    l.push(("type", kind.into()));
                    r.add("chassis_model_tokens_total", l, n as f64);
                }
                if let Some(cost) = cost_usd {
                    r.add("chassis_model_cost_usd_total", labels(), *cost);
                }
                r.observe(
                    "chassis_model_call_duration_seconds",
                    labels(),
                    *latency_ms as f64 / 1000.0,
                );
                r.set("chassis_breaker_state", vec![("model", model.clone())], 0.0);
            }
            // A summarization is a model call of its own: its tokens and cost count.
            Event::ContextCompacted {
                model,
                usage,
                cost_usd,
                ..
            } => {
                let labels = || vec![agent(), ("model", model.clone())];
                for (kind, n) in [
                    ("input", usage.input_tokens),
                    ("output", usage.output_tokens),
                    ("cached_input", usage.cached_input_tokens),
                ] {
                    let mut l = labels();
                    l.push(("type", kind.into()));
                    r.add("chassis_model_tokens_total", l, n as f64);
                }
                if let Some(cost) = cost_usd {
                    r.add("chassis_model_cost_usd_total", labels(), *cost);
                }
            }
            Event::ModelFailed {
                model, unavailable, ..
            } => {
                let outcome = if *unavailable { "unavailable" } else { "error" };
                let labels = || vec![agent(), ("model", model.clone())];
                let mut l = labels();
                l.push(("outcome", outcome.into()));
                r.inc("chassis_model_calls_total", l);
                if let Some(started) = clock.call_started.take() {
                    r.observe(
                        "chassis_model_call_duration_seconds",
                        labels(),
                        now.duration_since(started).as_secs_f64(),
                    );
                }
            }
            Event::ModelAttemptFailed {
                model,
                delay_ms: Some(_),
                ..
            } => r.inc(
                "chassis_model_retries_total",
                vec![agent(), ("model", model.clone())],
            ),
            Event::ModelCircuitOpen { model, .. } => {
                r.inc("chassis_breaker_open_total", vec![("model", model.clone())]);
                r.set("chassis_breaker_state", vec![("model", model.clone())], 1.0);
            }
            Event::ModelFallback { from, to, .. } => r.inc(
                "chassis_model_fallbacks_total",
                vec![agent(), ("from", from.clone()), ("to", to.clone())],
            ),
            Event::ModelSwitched { model, .. } => r.inc(
                "chassis_model_switches_total",
                vec![agent(), ("model", model.clone())],
            ),
            Event::ToolRefused { name, .. } => r.inc(
                "chassis_tool_calls_total",
                tool_labels(state, name, "refused"),
            ),
            Event::ToolOutcomeUnknown { name, .. } => r.inc(
                "chassis_tool_calls_total",
                tool_labels(state, name, "unknown"),
            ),
            Event::ToolFinished {
                call_id,
                ok,
                latency_ms,
                ..
            } => {
                let name = tool_name(state, call_id);
                let outcome = if *ok { "ok" } else { "error" };
                r.inc(
                    "chassis_tool_calls_total",
                    tool_labels(state, &name, outcome),
                );
                let mut labels = tool_labels(state, &name, "");
                labels.pop();
                r.observe(
                    "chassis_tool_call_duration_seconds",
                    labels,
                    *latency_ms as f64 / 1000.0,
                );
            }
            Event::ToolAttemptFailed { call_id, .. } => {
                let mut labels = tool_labels(state, &tool_name(state, call_id), "");
                labels.pop();
                r.inc("chassis_tool_retries_total", labels);
            }
            Event::LimitReached { limit, action, .. } => r.inc(
                "chassis_limits_reached_total",
                vec![
                    agent(),
                    ("limit", limit.to_string()),
                    ("action", action.as_str().to_string()),
                ],
            ),
            Event::ApprovalRequested { .. } => {
                r.inc("chassis_approvals_requested_total", vec![agent()])
            }
            // Counted elsewhere (`chassis_tool_calls_total` by outcome, the pending approvals
            // gauge from the journal) or not a figure anyone charts.
            Event::ModelAttemptFailed { delay_ms: None, .. }
            | Event::ToolStarted { .. }
            | Event::ApprovalDecided { .. }
            | Event::ApprovalEscalated { .. }
            | Event::OutcomeResolved { .. }
            | Event::LimitRaised { .. }
            | Event::LimitRejected { .. }
            | Event::CancelRequested { .. }
            | Event::ResumeRequested { .. }
            | Event::UserMessage { .. } => {}
        }
    }
}

impl Observer for Metrics {
    fn on_event(&self, run_id: &str, state: &RunState, event: &Event) {
        let Ok(mut runs) = self.runs.lock() else {
            return;
        };
        let clock = runs.entry(run_id.to_string()).or_default();
        self.handle(state, event, clock);
        if state.status().is_terminal() || (!clock.active && clock.step_started.is_none()) {
            runs.remove(run_id);
        }
    }
}

/// The name of the tool a call of the latest reply is for.
fn tool_name(state: &RunState, call_id: &str) -> String {
    state
        .call(call_id)
        .map(|c| c.call.name.clone())
        .unwrap_or_default()
}

/// `agent`, `tool`, `outcome`; a name the agent was not given (a model can invent any) is
/// counted as `(unknown)`, so label values stay few.
fn tool_labels(state: &RunState, name: &str, outcome: &str) -> Labels {
    let tool = if state.tool(name).is_some() {
        name.to_string()
    } else {
        "(unknown)".to_string()
    };
    vec![
        ("agent", state.agent.clone()),
        ("tool", tool),
        ("outcome", outcome.to_string()),
    ]
}

/// Approvals requested in a journal and not decided since.
fn pending_approvals<'a>(events: impl Iterator<Item = &'a Event>) -> u64 {
    let mut open: Vec<&str> = Vec::new();
    for event in events {
        match event {
            Event::ApprovalRequested { call_id, .. } => open.push(call_id),
            Event::ApprovalDecided { call_id, .. } => open.retain(|c| c != call_id),
            // An escalated approval still waits for its decision.
            Event::ApprovalEscalated { .. }
            | Event::ContextCompacted { .. }
            | Event::RunStarted(_)
            | Event::ModelRequested { .. }
            | Event::ModelResponded { .. }
            | Event::ModelAttemptFailed { .. }
            | Event::ModelCircuitOpen { .. }
            | Event::ModelFallback { .. }
            | Event::ModelFailed { .. }
            | Event::ModelSwitched { .. }
            | Event::ToolRefused { .. }
            | Event::ToolStarted { .. }
            | Event::ToolFinished { .. }
            | Event::ToolAttemptFailed { .. }
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
    open.len() as u64
}

/// The `/metrics` server.
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Serves `metrics` at `http://{addr}/metrics` (port 0 picks a free one).
    pub async fn start(metrics: Arc<Metrics>, addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = Arc::clone(&metrics);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render().await,
                    )
                }
            }),
        );
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "metrics server stopped");
            }
        });
        Ok(MetricsServer { addr, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.task.abort();
    }
}
