//! A run as a tree of timed nodes, rebuilt from its journal alone (for `chassis trace`).
//!
//! Journal records are stamped when they are flushed (once per step), not when they happened,
//! so times are rebuilt from what the events carry: the start and every wait and resume have
//! a wall-clock time; model and tool calls have a latency. A cursor walks the journal adding
//! each latency, which places every call within a few milliseconds of when it ran.

use chassis_core::{Event, RunState, RunStatus};
use chassis_store::Record;
use serde::Serialize;
use serde_json::{Map, Value};

/// What a node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// The run started.
    Started,
    /// The run was resumed.
    Resumed,
    /// A step: one model call (its children: retries, fallbacks, tool calls).
    Step,
    /// A tool call.
    Tool,
    /// A failed attempt that was retried, a fallback, a skipped model.
    Retry,
    /// The run stopped to wait for a human, or parked itself.
    Wait,
    /// Anything else worth a line: refusals, limits, approvals, model switches.
    Note,
    /// The run completed or failed.
    End,
}

/// One line of the tree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Journal position of the event that opened it.
    pub seq: u64,
    /// Event kind of that event.
    pub event: &'static str,
    /// Start, ms after the run started.
    pub start_ms: u64,
    /// How long it took, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Whether it went well, when that applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// A short human title.
    pub title: String,
    /// Facts: tokens, cost, model, error, reason….
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub attrs: Map<String, Value>,
    /// Nested nodes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

/// A run, summarized and laid out in time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timeline {
    /// The run.
    pub run_id: String,
    /// Its OpenTelemetry trace id (hex).
    pub trace_id: String,
    /// Agent name.
    pub agent: String,
    /// Agent version fingerprint.
    pub version: String,
    /// `provider:model` of the primary.
    pub model: String,
    /// Where the run stands.
    pub status: RunStatus,
    /// Start, ms since the epoch.
    pub started_at_ms: u64,
    /// From the start to the last thing known, in ms.
    pub duration_ms: u64,
    /// Of which the run was waiting for a human or parked.
    pub waiting_ms: u64,
    /// Model calls answered.
    pub steps: u32,
    /// Tool calls executed.
    pub tool_calls: u32,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Dollars spent on calls of known price.
    pub cost_usd: f64,
    /// Calls of unknown price (the cost is a lower bound when any).
    pub unpriced_calls: u32,
    /// Why it failed or waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The nodes, in order.
    pub nodes: Vec<Node>,
}

/// Lays out a run's journal; `None` when the journal does not fold (it is shown raw instead).
pub fn build(run_id: &str, records: &[Record]) -> Option<Timeline> {
    let state = RunState::fold(records.iter().map(|r| &r.event)).ok()?;
    let mut builder = Builder {
        start: state.started_at_ms,
        cursor: state.started_at_ms,
        nodes: Vec::new(),
        step: None,
        wait: None,
        waiting_ms: 0,
    };
    for record in records {
        builder.add(record);
    }
    let end = builder.cursor.max(builder.start);
    let reason = match state.status() {
        RunStatus::Failed => state.error.clone(),
        RunStatus::Waiting | RunStatus::Paused => state.waiting_reason.clone(),
        _ => None,
    };
    Some(Timeline {
        run_id: run_id.to_string(),
        trace_id: crate::ids::hex(&crate::ids::trace_id(run_id)),
        agent: state.agent.clone(),
        version: state.version.clone(),
        model: state.model.clone(),
        status: state.status(),
        started_at_ms: state.started_at_ms,
        duration_ms: end - builder.start,
        waiting_ms: builder.waiting_ms,
        steps: state.steps(),
        tool_calls: state.tool_calls(),
        input_tokens: state.usage().input_tokens,
        output_tokens: state.usage().output_tokens,
        cost_usd: state.cost_usd(),
        unpriced_calls: state.unpriced_calls,
        reason,
        nodes: builder.nodes,
    })
}

struct Builder {
    start: u64,
    cursor: u64,
    nodes: Vec<Node>,
    /// Index in `nodes` of the current step.
    step: Option<usize>,
    /// Index in `nodes` of the wait not yet followed by a resume.
    wait: Option<usize>,
    waiting_ms: u64,
}

impl Builder {
    fn node(&self, kind: NodeKind, record: &Record, at: u64, title: String) -> Node {
        Node {
            kind,
            seq: record.seq,
            event: record.event.kind(),
            start_ms: at.saturating_sub(self.start),
            duration_ms: None,
            ok: None,
            title,
            attrs: Map::new(),
            children: Vec::new(),
        }
    }

    fn current_step(&mut self) -> Option<&mut Node> {
        self.step.and_then(|i| self.nodes.get_mut(i))
    }

    /// Adds a child to the current step, or a top-level node outside any step.
    fn push_in_step(&mut self, node: Node) {
        match self.current_step() {
            Some(step) => step.children.push(node),
            None => self.nodes.push(node),
        }
    }

    /// The call's node: in the current step, else the latest anywhere (a call finished after a
    /// wait or a crash, by another process, belongs to the step that asked for it).
    fn tool_mut(&mut self, call_id: &str) -> Option<&mut Node> {
        let id = Value::from(call_id);
        let is_call = |n: &Node| n.kind == NodeKind::Tool && n.attrs.get("call_id") == Some(&id);
        let here = self
            .current_step()
            .is_some_and(|step| step.children.iter().any(is_call));
        if here {
            return self
                .current_step()?
                .children
                .iter_mut()
                .rev()
                .find(|n| is_call(n));
        }
        self.nodes.iter_mut().rev().find_map(|node| {
            if is_call(node) {
                return Some(node);
            }
            node.children.iter_mut().rev().find(|n| is_call(n))
        })
    }

    fn add(&mut self, record: &Record) {
        let at = self.cursor;
        match &record.event {
            Event::RunStarted(start) => self.started(record, at, start),
            Event::RunResumed { at_ms } => self.resumed(record, at_ms),
            Event::ModelRequested { step, model, .. } => self.step_started(record, at, step, model),
            Event::ModelResponded {
                model,
                message,
                usage,
                finish_reason,
                latency_ms,
                cost_usd,
                ..
            } => self.step_answered(model, message, usage, finish_reason, latency_ms, cost_usd),
            Event::ModelFailed { error, .. } => self.step_failed(record, error),
            Event::ModelAttemptFailed {
                model,
                attempt,
                error,
                delay_ms,
                ..
            } => self.attempt_failed(record, at, model, attempt, error, delay_ms),
            Event::ModelCircuitOpen { model, .. } => self.model_skipped(record, at, model),
            Event::ModelFallback {
                from, to, reason, ..
            } => self.fallback(record, at, from, to, reason),
            Event::ToolStarted {
                call_id,
                name,
                risk,
                ..
            } => self.tool_started(record, at, call_id, name, risk),
            Event::ToolAttemptFailed {
                call_id,
                attempt,
                error,
                delay_ms,
            } => self.tool_attempt_failed(record, at, call_id, attempt, error, delay_ms),
            Event::ToolFinished {
                call_id,
                ok,
                content,
                latency_ms,
            } => self.tool_finished(call_id, ok, content, latency_ms),
            Event::ToolRefused { name, error, .. } => self.tool_refused(record, at, name, error),
            Event::ToolOutcomeUnknown { call_id, name } => {
                self.outcome_unknown(record, at, call_id, name)
            }
            Event::RunWaiting { reason, at_ms } | Event::RunPaused { reason, at_ms } => {
                self.stopped(record, reason, at_ms)
            }
            Event::RunCompleted { .. } | Event::RunFailed { .. } => self.ended(record),
            // Limits and human decisions about the run stand at the top level.
            Event::LimitReached { .. }
            | Event::LimitRaised { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalDecided { .. }
            | Event::ApprovalEscalated { .. }
            | Event::UserMessage { .. } => {
                let node = self.note(record, at);
                self.nodes.push(node);
            }
            // The rest belong to the step they happened in.
            Event::ModelSwitched { .. }
            | Event::ContextCompacted { .. }
            | Event::OutcomeResolved { .. }
            | Event::LimitRejected { .. }
            | Event::CancelRequested { .. }
            | Event::ResumeRequested { .. }
            | Event::RunCancelled { .. } => {
                let node = self.note(record, at);
                self.push_in_step(node);
            }
        }
    }

    /// The run started.
    fn started(&mut self, record: &Record, at: u64, start: &chassis_core::RunStart) {
        let mut node = self.node(NodeKind::Started, record, at, "started".into());
        node.attrs
            .insert("agent".into(), start.agent.clone().into());
        node.attrs
            .insert("model".into(), start.model.to_string().into());
        self.nodes.push(node);
    }

    /// A resume: ends the wait it follows; what comes next finishes the last step.
    fn resumed(&mut self, record: &Record, at_ms: &u64) {
        self.cursor = self.cursor.max(*at_ms);
        if let Some(wait) = self.wait.take().and_then(|i| self.nodes.get_mut(i)) {
            let waited = at_ms.saturating_sub(self.start + wait.start_ms);
            wait.duration_ms = Some(waited);
            self.waiting_ms += waited;
        }
        // What follows a resume, until the next model call, finishes the last step
        // (its calls, run now, perhaps by another process).
        self.step = self.nodes.iter().rposition(|n| n.kind == NodeKind::Step);
        let node = self.node(NodeKind::Resumed, record, self.cursor, "resumed".into());
        self.nodes.push(node);
    }

    /// A model call opens a step.
    fn step_started(&mut self, record: &Record, at: u64, step: &u32, model: &str) {
        let mut node = self.node(NodeKind::Step, record, at, format!("step {step}"));
        node.attrs.insert("step".into(), (*step).into());
        node.attrs.insert("model".into(), model.to_string().into());
        self.nodes.push(node);
        self.step = Some(self.nodes.len() - 1);
    }

    /// The answer ends the step: its latency moves the cursor.
    fn step_answered(
        &mut self,
        model: &str,
        message: &chassis_core::AssistantMessage,
        usage: &chassis_core::Usage,
        finish_reason: &Option<String>,
        latency_ms: &u64,
        cost_usd: &Option<f64>,
    ) {
        let Some(step) = self.current_step() else {
            return;
        };
        let start = step.start_ms;
        step.duration_ms = Some(*latency_ms);
        step.ok = Some(true);
        step.attrs
            .insert("served_by".into(), model.to_string().into());
        step.attrs
            .insert("input_tokens".into(), usage.input_tokens.into());
        step.attrs
            .insert("output_tokens".into(), usage.output_tokens.into());
        if let Some(cost) = cost_usd {
            step.attrs.insert("cost_usd".into(), (*cost).into());
        }
        if let Some(reason) = finish_reason {
            step.attrs
                .insert("finish_reason".into(), reason.to_string().into());
        }
        let answer = if message.tool_calls.is_empty() {
            "answer".to_string()
        } else {
            let names: Vec<&str> = message.tool_calls.iter().map(|c| c.name.as_str()).collect();
            format!("calls {}", names.join(", "))
        };
        step.attrs.insert("reply".into(), answer.into());
        self.cursor = self.start + start + latency_ms;
    }

    /// A step whose every attempt failed; the record's time bounds it.
    fn step_failed(&mut self, record: &Record, error: &str) {
        let base = self.start;
        let Some(step) = self.current_step() else {
            return;
        };
        let start = step.start_ms;
        // No latency is journaled for a failed call; the record's time bounds it.
        let end = (record.at_ms.max(0) as u64).max(base + start);
        step.duration_ms = Some(end - base - start);
        step.ok = Some(false);
        step.attrs.insert("error".into(), error.to_string().into());
        self.cursor = end;
    }

    /// A failed attempt of the step's model call.
    fn attempt_failed(
        &mut self,
        record: &Record,
        at: u64,
        model: &str,
        attempt: &u32,
        error: &str,
        delay_ms: &Option<u64>,
    ) {
        let mut node = self.node(
            NodeKind::Retry,
            record,
            at,
            format!("{model} attempt {attempt} failed"),
        );
        node.ok = Some(false);
        node.attrs.insert("error".into(), error.to_string().into());
        if let Some(delay) = delay_ms {
            node.attrs.insert("retry_in_ms".into(), (*delay).into());
        }
        self.push_in_step(node);
    }

    /// A model skipped because its breaker is open.
    fn model_skipped(&mut self, record: &Record, at: u64, model: &str) {
        let node = self.node(
            NodeKind::Retry,
            record,
            at,
            format!("{model} skipped: circuit breaker open"),
        );
        self.push_in_step(node);
    }

    /// The step moves to the next model of the chain.
    fn fallback(&mut self, record: &Record, at: u64, from: &str, to: &str, reason: &str) {
        let mut node = self.node(
            NodeKind::Retry,
            record,
            at,
            format!("fallback {from} → {to}"),
        );
        node.attrs
            .insert("reason".into(), reason.to_string().into());
        self.push_in_step(node);
    }

    /// A tool call's node, in its step.
    fn tool_started(
        &mut self,
        record: &Record,
        at: u64,
        call_id: &str,
        name: &str,
        risk: &chassis_core::RiskClass,
    ) {
        let mut node = self.node(NodeKind::Tool, record, at, name.to_string());
        node.attrs
            .insert("call_id".into(), call_id.to_string().into());
        node.attrs.insert("risk".into(), risk.to_string().into());
        self.push_in_step(node);
    }

    /// A failed attempt of a tool call that will be retried, under the call.
    fn tool_attempt_failed(
        &mut self,
        record: &Record,
        at: u64,
        call_id: &str,
        attempt: &u32,
        error: &str,
        delay_ms: &u64,
    ) {
        let mut node = self.node(
            NodeKind::Retry,
            record,
            at,
            format!("attempt {attempt} failed"),
        );
        node.ok = Some(false);
        node.attrs.insert("error".into(), error.to_string().into());
        node.attrs.insert("retry_in_ms".into(), (*delay_ms).into());
        match self.tool_mut(call_id) {
            Some(tool) => tool.children.push(node),
            None => self.push_in_step(node),
        }
    }

    /// A tool call's result: its latency moves the cursor.
    fn tool_finished(&mut self, call_id: &str, ok: &bool, content: &str, latency_ms: &u64) {
        let start = self.start;
        let Some(tool) = self.tool_mut(call_id) else {
            return;
        };
        tool.duration_ms = Some(*latency_ms);
        tool.ok = Some(*ok);
        if !ok {
            tool.attrs
                .insert("error".into(), content.to_string().into());
        }
        self.cursor = start + tool.start_ms + latency_ms;
    }

    /// A call refused before it ran.
    fn tool_refused(&mut self, record: &Record, at: u64, name: &str, error: &str) {
        let mut node = self.node(NodeKind::Note, record, at, format!("{name} refused"));
        node.ok = Some(false);
        node.attrs.insert("error".into(), error.to_string().into());
        self.push_in_step(node);
    }

    /// A call cut off with its outcome unknown.
    fn outcome_unknown(&mut self, record: &Record, at: u64, call_id: &str, name: &str) {
        let mut node = self.node(
            NodeKind::Note,
            record,
            at,
            format!("{name} outcome unknown"),
        );
        node.ok = Some(false);
        node.attrs
            .insert("call_id".into(), call_id.to_string().into());
        self.push_in_step(node);
    }

    /// The run stops to wait for a human, or parks.
    fn stopped(&mut self, record: &Record, reason: &str, at_ms: &u64) {
        self.cursor = self.cursor.max(*at_ms);
        let title = if matches!(record.event, Event::RunWaiting { .. }) {
            "waiting for a human"
        } else {
            "paused"
        };
        let mut node = self.node(NodeKind::Wait, record, self.cursor, title.into());
        node.attrs
            .insert("reason".into(), reason.to_string().into());
        self.nodes.push(node);
        self.wait = Some(self.nodes.len() - 1);
        self.step = None;
    }

    /// The run's end.
    fn ended(&mut self, record: &Record) {
        // Final events are flushed at once: the record's time is when it happened.
        self.cursor = self.cursor.max(record.at_ms.max(0) as u64);
        let ok = matches!(record.event, Event::RunCompleted { .. });
        let title = if ok { "completed" } else { "failed" };
        let mut node = self.node(NodeKind::End, record, self.cursor, title.into());
        node.ok = Some(ok);
        if let Event::RunFailed { error } = &record.event {
            node.attrs.insert("error".into(), error.to_string().into());
        }
        self.nodes.push(node);
        self.step = None;
    }

    /// A note of an event: its kind as the title, its scalar fields as facts, placed at its
    /// own `at_ms` when it has one.
    fn note(&self, record: &Record, at: u64) -> Node {
        let event = &record.event;
        let fields = serde_json::to_value(event).unwrap_or(Value::Null);
        let at = fields
            .get("at_ms")
            .and_then(Value::as_u64)
            .map_or(at, |t| t.max(self.start));
        let mut node = self.node(NodeKind::Note, record, at, event.kind().replace('_', " "));
        if let Value::Object(map) = fields {
            for (key, value) in map {
                if key != "kind" && key != "at_ms" && !value.is_object() && !value.is_array() {
                    node.attrs.insert(key, value);
                }
            }
        }
        node
    }
}
