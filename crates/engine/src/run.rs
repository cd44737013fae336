//! Driving a run: decide, act, journal, repeat.
//!
//! Events are applied to the in-memory state as they happen and flushed to the journal in one
//! append per step. Work that is safe to repeat (a model call, a read-only tool) may run before
//! the events that led to it are durable: after a crash it is simply done again. Anything else
//! (a reversible or irreversible tool call) runs only once its intent is durable, and the final
//! answer is reported only once it is journaled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chassis_core::decide::LimitHit;
use chassis_core::{
    Decision, Event, Inputs, LimitAction, LimitName, RiskClass, RunState, RunStatus, decide,
};
use chassis_providers::{CallEvent, ChatRequest, Reporter};
use chassis_store::{Journal, Lease, NewRun};
use chassis_tools::CallContext;

use crate::{Agent, Error, Redactor, new_run_id, now_ms, tokens};

/// Sees every event as it is recorded (progress output, traces, metrics).
pub trait Observer: Send + Sync {
    /// Called once per event, after it is applied to `state` (so `state` includes it) and
    /// before it is flushed; `event` is already redacted.
    fn on_event(&self, run_id: &str, state: &RunState, event: &Event);
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
    /// Why it failed or waits.
    pub reason: Option<String>,
}

impl RunOutcome {
    fn of(run_id: &str, state: &RunState) -> RunOutcome {
        let reason = match state.status {
            RunStatus::Failed => state.error.clone(),
            RunStatus::Waiting | RunStatus::Paused => state.waiting_reason.clone(),
            _ => None,
        };
        RunOutcome {
            run_id: run_id.to_string(),
            status: state.status,
            output: state.output.clone(),
            reason,
        }
    }
}

/// Runs agents against a journal.
pub struct Engine {
    journal: Arc<dyn Journal>,
    observers: Vec<Arc<dyn Observer>>,
    redactor: Arc<Redactor>,
}

impl Engine {
    /// An engine writing to `journal`.
    pub fn new(journal: Arc<dyn Journal>) -> Engine {
        Engine {
            journal,
            observers: Vec::new(),
            redactor: Arc::new(Redactor::default()),
        }
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

    /// Creates a run without driving it (a worker will): returns its id at once.
    pub async fn submit(&self, agent: &Agent, input: &str) -> Result<String, Error> {
        let (run_id, _state) = self.create(agent, input, BTreeMap::new()).await?;
        Ok(run_id)
    }

    /// Drives a run a worker claimed: every append is fenced by `lease`, so a worker that
    /// lost its lease can no longer write.
    pub async fn resume_leased(&self, lease: &Lease) -> Result<RunOutcome, Error> {
        let state = self.load(&lease.run_id).await?;
        if state.status.is_terminal() {
            return Ok(RunOutcome::of(&lease.run_id, &state));
        }
        // Boxed: loading (MCP servers, schemas) is a large future that would otherwise stay
        // part of this one for as long as the run is driven.
        let agent = Box::pin(Agent::load(std::path::Path::new(&state.spec_path))).await?;
        let outcome = self
            .resume_inner(&agent, &lease.run_id, Box::new(state), Some(lease))
            .await;
        agent.alerts.drain(std::time::Duration::from_secs(5)).await;
        outcome
    }

    /// The journal this engine writes.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Starts a new run of `agent` on `input` and drives it until it stops.
    pub async fn start(&self, agent: &Agent, input: &str) -> Result<RunOutcome, Error> {
        self.start_tagged(agent, input, BTreeMap::new()).await
    }

    /// Like [`Engine::start`], with labels journaled on the run (e.g. the eval suite).
    pub async fn start_tagged(
        &self,
        agent: &Agent,
        input: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<RunOutcome, Error> {
        let (run_id, state) = self.create(agent, input, tags).await?;
        self.drive(agent, &run_id, state, None).await
    }

    async fn create(
        &self,
        agent: &Agent,
        input: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<(String, Box<RunState>), Error> {
        let system = agent.render_system(input)?;
        let run_id = new_run_id();
        let started = Event::RunStarted(Box::new(chassis_core::RunStart {
            agent: agent.spec.name.clone(),
            spec_path: agent.spec_path.display().to_string(),
            input: input.to_string(),
            system,
            model: agent.spec.model.to_string(),
            fallbacks: agent.spec.fallbacks.iter().map(|m| m.to_string()).collect(),
            tools: agent.tool_defs.clone(),
            limits: agent.spec.limits.clone(),
            max_tokens: agent.spec.max_tokens,
            prices: agent.prices.clone(),
            at_ms: now_ms(),
            max_repairs: agent.spec.max_repairs,
            version: agent.version.clone(),
            version_label: agent.spec.version.clone(),
            approvals: agent.spec.approvals.clone(),
            tags,
        }));
        let started = self
            .redactor
            .merged(&agent.redactor())
            .redact_event(started);
        // Boxed: the state travels through every future that drives the run, and a box is
        // one pointer in each of them rather than a copy of the whole state.
        let mut state = Box::<RunState>::default();
        apply(&run_id, &mut state, &started)?;
        self.journal
            .create(
                &NewRun {
                    run_id: run_id.clone(),
                    agent: agent.spec.name.clone(),
                },
                std::slice::from_ref(&started),
            )
            .await?;
        self.notify(&run_id, &state, &started);
        tracing::info!(run_id = %run_id, agent = %agent.spec.name, version = %agent.version, "run started");
        Ok((run_id, state))
    }

    /// Loads a run's journal and folds it.
    pub async fn load(&self, run_id: &str) -> Result<RunState, Error> {
        let records = self.journal.load(run_id).await?;
        RunState::fold(records.iter().map(|r| &r.event)).map_err(|source| Error::Replay {
            run_id: run_id.to_string(),
            source,
        })
    }

    /// Continues a run from its last journaled event, reloading its agent from the spec file
    /// it was started with.
    pub async fn resume(&self, run_id: &str) -> Result<RunOutcome, Error> {
        let state = self.load(run_id).await?;
        if state.status.is_terminal() {
            return Ok(RunOutcome::of(run_id, &state));
        }
        // Boxed: loading (MCP servers, schemas) is a large future that would otherwise stay
        // part of this one for as long as the run is driven.
        let agent = Box::pin(Agent::load(std::path::Path::new(&state.spec_path))).await?;
        let outcome = self.resume_with(&agent, run_id, state).await;
        // Alerts of this run are delivered (bounded) before the agent they belong to goes.
        agent.alerts.drain(std::time::Duration::from_secs(5)).await;
        outcome
    }

    /// Raises limits of a run that has not ended (journaled with who raised them), then
    /// continues it.
    pub async fn raise_and_resume(
        &self,
        run_id: &str,
        raises: &[(LimitName, f64)],
        by: &str,
    ) -> Result<RunOutcome, Error> {
        let state = self.load(run_id).await?;
        if state.status.is_terminal() || raises.is_empty() {
            return self.resume(run_id).await;
        }
        let events: Vec<Event> = raises
            .iter()
            .map(|&(limit, value)| Event::LimitRaised {
                limit,
                value,
                by: by.to_string(),
            })
            .collect();
        self.journal.append(run_id, state.seq, &events).await?;
        self.resume(run_id).await
    }

    /// Continues a run with an already loaded agent.
    pub async fn resume_with(
        &self,
        agent: &Agent,
        run_id: &str,
        state: RunState,
    ) -> Result<RunOutcome, Error> {
        self.resume_inner(agent, run_id, Box::new(state), None)
            .await
    }

    async fn resume_inner(
        &self,
        agent: &Agent,
        run_id: &str,
        state: Box<RunState>,
        lease: Option<&Lease>,
    ) -> Result<RunOutcome, Error> {
        if state.status.is_terminal() {
            return Ok(RunOutcome::of(run_id, &state));
        }
        if !state.version.is_empty() && state.version != agent.version {
            return Err(Error::VersionChanged {
                run_id: run_id.to_string(),
                started: state.version.clone(),
                current: agent.version.clone(),
                spec_path: state.spec_path.clone(),
            });
        }
        let resumed = Event::RunResumed { at_ms: now_ms() };
        if matches!(state.status, RunStatus::Waiting | RunStatus::Paused) {
            // Resuming changes nothing while the reason to wait for a human still holds.
            let mut probe = state.clone();
            apply(run_id, &mut probe, &resumed)?;
            if matches!(decide(&probe, &inputs(&probe)), Decision::AwaitHuman { .. }) {
                return Ok(RunOutcome::of(run_id, &state));
            }
        }
        let mut run = Step::new(self, agent, run_id, state, lease);
        run.record(resumed)?;
        run.flush().await?;
        tracing::info!(run_id = %run_id, seq = run.state.seq, "run resumed");
        let state = run.state;
        self.drive(agent, run_id, state, lease).await
    }

    async fn drive(
        &self,
        agent: &Agent,
        run_id: &str,
        state: Box<RunState>,
        lease: Option<&Lease>,
    ) -> Result<RunOutcome, Error> {
        // Every log line while the run is driven carries its id, agent and step.
        let span = tracing::info_span!(
            "run",
            run_id,
            agent = %state.agent,
            step = tracing::field::Empty
        );
        tracing::Instrument::instrument(self.drive_in_span(agent, run_id, state, lease), span).await
    }

    async fn drive_in_span(
        &self,
        agent: &Agent,
        run_id: &str,
        state: Box<RunState>,
        lease: Option<&Lease>,
    ) -> Result<RunOutcome, Error> {
        let mut run = Step::new(self, agent, run_id, state, lease);
        loop {
            match decide_now(&run.state) {
                Decision::CallModel => {
                    // The previous step becomes durable while the model thinks: a model call
                    // is safe to repeat, and nothing acts on its answer before both are done.
                    let pending = std::mem::take(&mut run.unflushed);
                    let expected = run.state.seq - pending.len() as u64;
                    let (journal, lease) = (Arc::clone(&self.journal), run.lease);
                    let append = async move {
                        match (pending.is_empty(), lease) {
                            (true, _) => Ok(0),
                            (false, Some(lease)) => {
                                journal.append_leased(lease, expected, &pending).await
                            }
                            (false, None) => journal.append(run_id, expected, &pending).await,
                        }
                    };
                    let (appended, called) = tokio::join!(append, run.call_model(agent));
                    appended?;
                    called?;
                }
                Decision::CallTool(call) => run.call_tool(agent, call).await?,
                Decision::OutcomeUnknown(call) => {
                    run.record(Event::ToolOutcomeUnknown {
                        call_id: call.id.clone(),
                        name: call.name.clone(),
                    })?;
                    tracing::warn!(run_id, call_id = %call.id, tool = %call.name, "interrupted call's outcome is unknown; not repeating it");
                }
                Decision::AwaitHuman { reason } => {
                    agent.alerts.emit(
                        "waiting_for_human",
                        run_id,
                        &run.state.agent,
                        serde_json::json!({ "reason": reason }),
                    );
                    run.record(Event::RunWaiting {
                        reason,
                        at_ms: now_ms(),
                    })?
                }
                Decision::Pause { reason } => {
                    tracing::warn!(run_id, %reason, "run parked; `chassis resume` continues it");
                    run.record(Event::RunPaused {
                        reason,
                        at_ms: now_ms(),
                    })?
                }
                Decision::Limit(hit) => run.limit_reached(agent, hit)?,
                Decision::RequestApproval(call) => run.request_approval(agent, call)?,
                Decision::Deny(call) => {
                    tracing::info!(run_id, call_id = %call.id, tool = %call.name, "call denied by the approval policy");
                    run.record(Event::ToolRefused {
                        error: format!(
                            "the approval policy of this agent denies `{}`; do not call it again",
                            call.name
                        ),
                        call_id: call.id,
                        name: call.name,
                    })?
                }
                Decision::ApprovalTimedOut(call, on_timeout) => {
                    for event in
                        crate::approvals::timeout_events(&run.state, &call.id, on_timeout, now_ms())
                    {
                        if let Event::ApprovalEscalated { .. } = &event {
                            agent.alerts.emit(
                                "approval_escalated",
                                run_id,
                                &run.state.agent,
                                serde_json::json!({ "call_id": call.id, "tool": call.name }),
                            );
                        }
                        run.record(event)?;
                    }
                }
                Decision::SwitchModel { index, reason } => {
                    let model = run.state.models.get(index).cloned().unwrap_or_default();
                    tracing::warn!(run_id, %model, %reason, "switching model for the rest of the run");
                    run.record(Event::ModelSwitched {
                        index,
                        model,
                        reason,
                    })?
                }
                Decision::Finish { output } => run.record(Event::RunCompleted { output })?,
                Decision::Fail { error } => run.record(Event::RunFailed { error })?,
                Decision::Idle => {
                    run.flush().await?;
                    let outcome = RunOutcome::of(run_id, &run.state);
                    tracing::info!(run_id, status = %outcome.status, steps = run.state.steps, "run stopped");
                    return Ok(outcome);
                }
            }
        }
    }

    fn notify(&self, run_id: &str, state: &RunState, event: &Event) {
        for observer in &self.observers {
            observer.on_event(run_id, state, event);
        }
    }
}

/// Backoff before retrying a tool: 200 ms doubling, at most 5 s, with full jitter.
fn tool_backoff(attempt: u32) -> std::time::Duration {
    let ceiling = std::time::Duration::from_millis(200)
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(std::time::Duration::from_secs(5));
    ceiling.mul_f64(chassis_providers::jitter())
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
            delay_ms: delay.map(|d| d.as_millis() as u64),
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

/// What `decide` needs from outside: the clock, and an upper bound on the next context.
fn inputs(state: &RunState) -> Inputs {
    Inputs {
        now_ms: now_ms(),
        next_input_tokens: tokens::upper_bound(state),
    }
}

/// Decides with the cheap token bound; when that bound is what trips a token or cost limit,
/// counts again with the model's real tokenizer (where chassis has one) before concluding.
fn decide_now(state: &RunState) -> Decision {
    let mut inputs = inputs(state);
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
        if let Some(precise) = tokens::precise(state, model) {
            inputs.next_input_tokens = precise.min(inputs.next_input_tokens);
            return decide(state, &inputs);
        }
    }
    decision
}

/// How a limit reads in a run's failure or pause reason.
fn describe_limit(hit: &LimitHit) -> String {
    let show = |x: f64| match hit.limit {
        LimitName::MaxCostUsd => format!("${x:.4}"),
        LimitName::MaxWallTime => format!("{:.1}s", x / 1000.0),
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

/// One run being driven: its state and the events not yet flushed.
struct Step<'e> {
    engine: &'e Engine,
    run_id: &'e str,
    state: Box<RunState>,
    unflushed: Vec<Event>,
    lease: Option<&'e Lease>,
    redactor: Redactor,
}

impl<'e> Step<'e> {
    fn new(
        engine: &'e Engine,
        agent: &Agent,
        run_id: &'e str,
        state: Box<RunState>,
        lease: Option<&'e Lease>,
    ) -> Step<'e> {
        Step {
            engine,
            run_id,
            state,
            unflushed: Vec::new(),
            lease,
            redactor: engine.redactor.merged(&agent.redactor()),
        }
    }

    fn record(&mut self, event: Event) -> Result<(), Error> {
        let event = self.redactor.redact_event(event);
        apply(self.run_id, &mut self.state, &event)?;
        self.engine.notify(self.run_id, &self.state, &event);
        self.unflushed.push(event);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if self.unflushed.is_empty() {
            return Ok(());
        }
        let expected = self.state.seq - self.unflushed.len() as u64;
        match self.lease {
            Some(lease) => {
                self.engine
                    .journal
                    .append_leased(lease, expected, &self.unflushed)
                    .await?
            }
            None => {
                self.engine
                    .journal
                    .append(self.run_id, expected, &self.unflushed)
                    .await?
            }
        };
        self.unflushed.clear();
        Ok(())
    }

    fn limit_reached(&mut self, agent: &Agent, hit: LimitHit) -> Result<(), Error> {
        let reason = describe_limit(&hit);
        agent.alerts.emit(
            "limit_reached",
            self.run_id,
            &self.state.agent,
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
        match action {
            LimitAction::Fail => self.record(Event::RunFailed { error: reason }),
            LimitAction::Pause => self.record(Event::RunPaused {
                reason: format!(
                    "{reason}; continue with `chassis resume {} --raise {}=VALUE`",
                    self.run_id, hit.limit
                ),
                at_ms: now_ms(),
            }),
            LimitAction::Escalate => self.record(Event::RunWaiting {
                reason: format!("limit request: {reason}; a human must raise it or reject the run"),
                at_ms: now_ms(),
            }),
        }
    }

    fn request_approval(
        &mut self,
        agent: &Agent,
        call: chassis_core::ToolCall,
    ) -> Result<(), Error> {
        let event = crate::approvals::request_event(&self.state, &call, now_ms());
        agent.alerts.emit(
            "approval_requested",
            self.run_id,
            &self.state.agent,
            serde_json::json!({ "call_id": call.id, "tool": call.name, "arguments": call.arguments }),
        );
        self.record(event)
    }

    async fn call_model(&mut self, agent: &Agent) -> Result<(), Error> {
        let step = self.state.steps + 1;
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
            messages: self.state.messages.len(),
        })?;
        let request = ChatRequest {
            model: agent.spec.model.model.as_str().into(),
            messages: self.state.messages.as_slice().into(),
            tools: self.state.tools.as_ref().into(),
            max_tokens: Some(self.state.max_tokens),
            temperature: agent.spec.temperature,
            report: Reporter::default(),
            deltas: Default::default(),
        };
        let began = Instant::now();
        let result = agent.models.complete_from(offset, &request).await;
        let latency_ms = began.elapsed().as_millis() as u64;
        for event in request.report.drain() {
            self.record(call_event(step, event))?;
        }
        match result {
            Ok(response) => {
                tracing::debug!(run_id = self.run_id, step, latency_ms, served_by = %response.served_by, "model answered");
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
                })
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

    async fn call_tool(
        &mut self,
        agent: &Agent,
        call: chassis_core::ToolCall,
    ) -> Result<(), Error> {
        // A human may have approved the call with edited arguments: those are what runs.
        let approved_args = self.state.calls.iter().find_map(|c| match &c.approval {
            chassis_core::state::Approval::Approved { args: Some(args) }
                if c.call.id == call.id =>
            {
                Some(args.to_string())
            }
            _ => None,
        });
        let raw = approved_args.as_deref().unwrap_or(&call.arguments);
        let (args, tool) = match agent.toolbox.prepare(&call.name, raw) {
            Ok(prepared) => prepared,
            Err(refusal) => {
                let shown = self.redactor.redact(&refusal.to_string());
                tracing::info!(run_id = self.run_id, call_id = %call.id, tool = %call.name, refusal = %shown, "tool call refused");
                return self.record(Event::ToolRefused {
                    call_id: call.id,
                    name: call.name,
                    error: refusal.to_string(),
                });
            }
        };
        let risk = tool.def().risk;
        let idempotency_key = format!("{}/{}", self.run_id, call.id);
        self.record(Event::ToolStarted {
            call_id: call.id.clone(),
            name: call.name.clone(),
            args: args.clone(),
            risk,
            idempotency_key: idempotency_key.clone(),
        })?;
        if risk != RiskClass::ReadOnly {
            // An effect that is not safe to repeat waits until its intent is durable.
            self.flush().await?;
        }
        let context = CallContext {
            run_id: self.run_id.to_string(),
            call_id: call.id.clone(),
            idempotency_key,
        };
        let began = Instant::now();
        let def = tool.def();
        let attempts = if def.retryable() {
            def.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        let result = loop {
            let result = tool.call(args.clone(), &context).await;
            match result {
                Err(error) if attempt < attempts => {
                    let delay = tool_backoff(attempt);
                    let shown = self.redactor.redact(&error.to_string());
                    tracing::info!(run_id = self.run_id, call_id = %call.id, tool = %call.name, attempt, error = %shown, "retrying tool");
                    self.record(Event::ToolAttemptFailed {
                        call_id: call.id.clone(),
                        attempt,
                        error: error.to_string(),
                        delay_ms: delay.as_millis() as u64,
                    })?;
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                result => break result,
            }
        };
        let latency_ms = began.elapsed().as_millis() as u64;
        let (ok, content) = match result {
            Ok(output) => (true, output),
            Err(error) => (false, error.to_string()),
        };
        tracing::debug!(run_id = self.run_id, call_id = %call.id, tool = %call.name, ok, latency_ms, "tool finished");
        self.record(Event::ToolFinished {
            call_id: call.id,
            ok,
            content,
            latency_ms,
        })?;
        if risk != RiskClass::ReadOnly {
            // The world changed: its record must not wait for the next step.
            self.flush().await?;
        }
        Ok(())
    }
}
