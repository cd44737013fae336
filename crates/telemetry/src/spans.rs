//! Journal events → OpenTelemetry spans, following the GenAI semantic conventions.
//!
//! ```text
//! invoke_agent {agent}            run_started … the stop (waiting, paused, completed, failed)
//! ├─ chat {model}                 model_requested → model_responded | model_failed
//! ├─ execute_tool {tool}          tool_started → tool_finished
//! └─ invoke_agent {agent}         a resume: run_resumed … the next stop
//! ```
//! Retries, fallbacks, refusals, limits, waits and approvals are span events named
//! `chassis.{kind}`. Times come from the observer's clock as the events happen. Ids come from
//! the run id ([`crate::ids`]), so a resumed run, in whatever process, continues the same
//! trace: its segment is a child of the first one. Message content (prompts, replies, tool
//! arguments and results) is recorded only when capture is enabled; it is already redacted.
//!
//! A span goes out only once the event that ended it is durable ([`Observer::on_durable`]):
//! a driver that dies or loses its lease before its flush announces nothing the journal does
//! not have. When the process lets go of a run ([`Observer::on_released`]) or the run stops
//! here, what is kept for it is dropped, so a long-lived worker holds only the runs it drives.

use std::collections::HashMap;
use std::sync::Mutex;

use chassis_core::{Event, Message, Observer, RunState, ToolProgress};
use serde_json::{Value, json};

use crate::ids::{span_id, trace_id};
use crate::proto::{KeyValue, Span, SpanEvent, SpanKind, Status, StatusCode};

/// Version of the semantic conventions the spans follow.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";

/// W3C trace flags: sampled.
const SAMPLED: u32 = 1;

/// Event fields that carry message content: recorded only when capture is enabled.
const CONTENT_FIELDS: [&str; 7] = [
    "content", "output", "input", "system", "args", "context", "message",
];

/// Where finished spans go.
pub type Sink = Box<dyn Fn(Span) + Send + Sync>;

/// A clock in nanoseconds since the Unix epoch.
pub type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

/// Turns the events of every run it observes into spans.
pub struct Tracer {
    capture_content: bool,
    sink: Sink,
    clock: Clock,
    runs: Mutex<HashMap<String, RunSpans>>,
}

/// The open spans of one run, and the finished ones waiting for their events to be durable.
struct RunSpans {
    trace_id: [u8; 16],
    root: [u8; 8],
    status: &'static str,
    segment: Option<Span>,
    /// The seq of the event that opened the segment.
    segment_seq: u64,
    chat: Option<Span>,
    /// The seq of the event that opened the chat span.
    chat_seq: u64,
    /// Open tool spans: call id, the seq of the event that opened it, the span.
    tools: Vec<(String, u64, Span)>,
    /// The last seq known to be durable.
    durable: u64,
    /// Finished spans, each with the seq of the event that ended it, until that is durable.
    ready: Vec<(u64, Span)>,
    /// The run stopped here (waits, parked or ended): once that is durable, nothing is left.
    stopped: bool,
}

impl RunSpans {
    fn new(run_id: &str) -> RunSpans {
        RunSpans {
            trace_id: trace_id(run_id),
            root: span_id(run_id, 1),
            status: "running",
            segment: None,
            segment_seq: 0,
            chat: None,
            chat_seq: 0,
            tools: Vec::new(),
            durable: 0,
            ready: Vec::new(),
            stopped: false,
        }
    }

    fn is_idle(&self) -> bool {
        self.segment.is_none() && self.chat.is_none() && self.tools.is_empty()
    }
}

impl Tracer {
    /// A tracer sending each finished span to `sink`.
    pub fn new(capture_content: bool, sink: impl Fn(Span) + Send + Sync + 'static) -> Tracer {
        Tracer {
            capture_content,
            sink: Box::new(sink),
            clock: Box::new(now_nanos),
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// The same tracer reading time from `clock` (nanoseconds since the epoch).
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Tracer {
        self.clock = Box::new(clock);
        self
    }

    /// Ends every span still open, marked `chassis.interrupted` (the process is stopping
    /// while a run it drove has not stopped, e.g. after `submit` or an error).
    pub fn end_all(&self) {
        let runs: Vec<RunSpans> = match self.runs.lock() {
            Ok(mut runs) => runs.drain().map(|(_, run)| run).collect(),
            Err(_) => return,
        };
        for run in runs {
            self.let_go(run);
        }
    }

    /// How many runs the tracer keeps anything for (open spans, or spans waiting for their
    /// events to be durable).
    pub fn runs_held(&self) -> usize {
        self.runs.lock().map_or(0, |runs| runs.len())
    }

    /// Ends what is still open of a run the process lets go of: spans opened by durable events
    /// end as interrupted and go out; what came of events never journaled is dropped.
    fn let_go(&self, mut run: RunSpans) {
        let now = (self.clock)();
        self.close_segment(&mut run, now, None, None);
        self.send_durable(&mut run);
    }

    /// Sends the finished spans whose ending events are durable.
    fn send_durable(&self, run: &mut RunSpans) {
        let durable = run.durable;
        let (out, kept): (Vec<_>, Vec<_>) =
            run.ready.drain(..).partition(|(seq, _)| *seq <= durable);
        run.ready = kept;
        for (_, span) in out {
            (self.sink)(span);
        }
    }

    fn open(&self, run: &RunSpans, name: String, kind: SpanKind, id: [u8; 8], now: u64) -> Span {
        Span {
            trace_id: run.trace_id.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: run
                .segment
                .as_ref()
                .map(|s| s.span_id.clone())
                .unwrap_or_default(),
            flags: SAMPLED,
            name,
            kind: kind as i32,
            start_time_unix_nano: now,
            ..Span::default()
        }
    }

    /// Ends `span`; it goes out once the event with seq `at` is durable.
    fn end(&self, run: &mut RunSpans, mut span: Span, now: u64, status: Option<Status>, at: u64) {
        span.end_time_unix_nano = now.max(span.start_time_unix_nano);
        span.status = status;
        run.ready.push((at, span));
    }

    /// Opens a segment: the run's root span, or a resume's child of it.
    fn open_segment(&self, run: &mut RunSpans, run_id: &str, state: &RunState, now: u64) {
        self.close_segment(run, now, None, Some(state.seq()));
        let resumed = state.seq() > 1;
        let id = span_id(run_id, state.seq());
        let mut span = self.open(
            run,
            format!("invoke_agent {}", state.agent),
            SpanKind::Internal,
            id,
            now,
        );
        if resumed {
            span.parent_span_id = run.root.to_vec();
        }
        let (provider, model) = split_model(&state.model);
        span.attributes = vec![
            KeyValue::str("gen_ai.operation.name", "invoke_agent"),
            KeyValue::str("gen_ai.agent.name", &state.agent),
            KeyValue::str("gen_ai.conversation.id", run_id),
            KeyValue::str("gen_ai.provider.name", provider),
            KeyValue::str("gen_ai.request.model", model),
            KeyValue::int("gen_ai.request.max_tokens", i64::from(state.max_tokens)),
            KeyValue::str("chassis.run.id", run_id),
            KeyValue::str("chassis.agent.version", &state.version),
            KeyValue::bool("chassis.run.resumed", resumed),
        ];
        if let Some(label) = &state.version_label {
            span.attributes
                .push(KeyValue::str("gen_ai.agent.version", label));
        }
        if self.capture_content && !resumed {
            span.attributes.push(KeyValue::str(
                "gen_ai.input.messages",
                json!([text_message("user", &state.input)]).to_string(),
            ));
        }
        run.segment = Some(span);
        run.segment_seq = state.seq();
        run.stopped = false;
    }

    /// Ends the open segment (and anything still open inside it). `state` is the run as it
    /// stopped; without it the segment was cut short. `at` is the seq of the event that ends
    /// the spans; without it (the process lets go of the run) each goes out only if the event
    /// that opened it is durable.
    fn close_segment(
        &self,
        run: &mut RunSpans,
        now: u64,
        state: Option<&RunState>,
        at: Option<u64>,
    ) {
        let early = state.is_none();
        let interrupted = Status {
            code: StatusCode::Error as i32,
            message: "interrupted before it finished".into(),
        };
        // A span cut short by the process letting go is kept only if it began durably.
        let durable = run.durable;
        let ending = |opened: u64| at.unwrap_or(if opened <= durable { opened } else { u64::MAX });
        if let Some(mut chat) = run.chat.take() {
            chat.attributes
                .push(KeyValue::str("error.type", "interrupted"));
            let at = ending(run.chat_seq);
            self.end(run, chat, now, Some(interrupted.clone()), at);
        }
        for (_, opened, mut tool) in std::mem::take(&mut run.tools) {
            tool.attributes
                .push(KeyValue::str("error.type", "interrupted"));
            let at = ending(opened);
            self.end(run, tool, now, Some(interrupted.clone()), at);
        }
        let Some(mut segment) = run.segment.take() else {
            return;
        };
        let segment_at = ending(run.segment_seq);
        let mut status = None;
        if let Some(state) = state {
            run.status = state.status().as_str();
            segment.attributes.extend([
                KeyValue::int(
                    "gen_ai.usage.input_tokens",
                    saturating_i64(state.usage().input_tokens),
                ),
                KeyValue::int(
                    "gen_ai.usage.output_tokens",
                    saturating_i64(state.usage().output_tokens),
                ),
                KeyValue::double("chassis.run.cost_usd", state.cost_usd()),
                KeyValue::int("chassis.run.steps", i64::from(state.steps())),
            ]);
            if let Some(error) = state
                .error
                .as_ref()
                .filter(|_| state.status().is_terminal())
            {
                segment
                    .attributes
                    .push(KeyValue::str("error.type", "run_failed"));
                status = Some(Status {
                    code: StatusCode::Error as i32,
                    message: error.clone(),
                });
            }
            if let (true, Some(output)) = (self.capture_content, &state.output) {
                segment.attributes.push(KeyValue::str(
                    "gen_ai.output.messages",
                    json!([text_message("assistant", output)]).to_string(),
                ));
            }
        }
        segment
            .attributes
            .push(KeyValue::str("chassis.run.status", run.status));
        if early {
            segment
                .attributes
                .push(KeyValue::bool("chassis.interrupted", true));
        }
        self.end(run, segment, now, status, segment_at);
    }

    fn handle(&self, run_id: &str, state: &RunState, event: &Event) {
        let now = (self.clock)();
        let Ok(mut runs) = self.runs.lock() else {
            return;
        };
        let run = runs
            .entry(run_id.to_string())
            .or_insert_with(|| RunSpans::new(run_id));
        let seq = state.seq();
        let at = At {
            run_id,
            state,
            now,
            seq,
        };
        run.status = state.status().as_str();
        if matches!(event, Event::RunStarted(_) | Event::RunResumed { .. }) || run.segment.is_none()
        {
            // An observer attached mid-run (or a resume) opens a segment at the first event.
            self.open_segment(run, run_id, state, now);
            if matches!(event, Event::RunStarted(_) | Event::RunResumed { .. }) {
                return;
            }
        }
        match event {
            Event::ModelRequested { step, model, .. } => self.chat_requested(run, &at, step, model),
            Event::ModelResponded {
                model,
                message,
                usage,
                finish_reason,
                cost_usd,
                ..
            } => self.chat_answered(run, &at, model, message, usage, finish_reason, cost_usd),
            Event::ModelFailed {
                error, unavailable, ..
            } => self.chat_failed(run, &at, error, unavailable),
            Event::ToolStarted {
                call_id,
                name,
                args,
                risk,
                ..
            } => self.tool_started(run, &at, call_id, name, args, risk),
            Event::ToolFinished {
                call_id,
                ok,
                content,
                ..
            } => self.tool_finished(run, &at, call_id, ok, content),
            // Stops whose reason is worth an event on the segment they end.
            Event::RunWaiting { .. } | Event::RunPaused { .. } | Event::RunCancelled { .. } => {
                self.annotate(run, None, event, now);
                self.close_segment(run, now, Some(state), Some(seq));
                run.stopped = true;
            }
            Event::RunCompleted { .. } | Event::RunFailed { .. } => {
                self.close_segment(run, now, Some(state), Some(seq));
                run.stopped = true;
            }
            Event::ModelAttemptFailed { .. }
            | Event::ModelCircuitOpen { .. }
            | Event::ModelFallback { .. } => self.annotate(run, Some(Target::Chat), event, now),
            Event::ToolAttemptFailed { call_id, .. } => {
                self.annotate(run, Some(Target::Tool(call_id)), event, now)
            }
            // Opened the segment above.
            Event::RunStarted(_) | Event::RunResumed { .. } => {}
            // Span events on the segment.
            Event::ModelSwitched { .. }
            | Event::ContextCompacted { .. }
            | Event::ToolRefused { .. }
            | Event::ToolOutcomeUnknown { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalDecided { .. }
            | Event::ApprovalEscalated { .. }
            | Event::OutcomeResolved { .. }
            | Event::LimitReached { .. }
            | Event::LimitRaised { .. }
            | Event::LimitRejected { .. }
            | Event::CancelRequested { .. }
            | Event::ResumeRequested { .. }
            | Event::UserMessage { .. } => self.annotate(run, None, event, now),
        }
    }

    /// A model call begins: a `chat` span (ending one a crash left open).
    fn chat_requested(&self, run: &mut RunSpans, at: &At<'_>, step: &u32, model: &str) {
        let At {
            run_id,
            state,
            now,
            seq,
            ..
        } = *at;
        if let Some(chat) = run.chat.take() {
            self.end(run, chat, now, None, seq);
        }
        let (provider, name) = split_model(model);
        let mut span = self.open(
            run,
            format!("chat {name}"),
            SpanKind::Client,
            span_id(run_id, state.seq()),
            now,
        );
        span.attributes = vec![
            KeyValue::str("gen_ai.operation.name", "chat"),
            KeyValue::str("gen_ai.provider.name", provider),
            KeyValue::str("gen_ai.request.model", name),
            KeyValue::int("gen_ai.request.max_tokens", i64::from(state.max_tokens)),
            KeyValue::str("gen_ai.conversation.id", run_id),
            KeyValue::int("chassis.step", i64::from(*step)),
        ];
        if self.capture_content {
            span.attributes.push(KeyValue::str(
                "gen_ai.input.messages",
                input_messages(state.messages()).to_string(),
            ));
        }
        run.chat = Some(span);
        run.chat_seq = seq;
    }

    /// A model call answered: its `chat` span ends with the reply's model, usage and cost.
    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of `model_responded`, as the event carries them"
    )]
    fn chat_answered(
        &self,
        run: &mut RunSpans,
        at: &At<'_>,
        model: &str,
        message: &chassis_core::AssistantMessage,
        usage: &chassis_core::Usage,
        finish_reason: &Option<String>,
        cost_usd: &Option<f64>,
    ) {
        let At { now, seq, .. } = *at;
        let Some(mut span) = run.chat.take() else {
            return;
        };
        let (provider, name) = split_model(model);
        let finish = finish_reason.clone().unwrap_or_else(|| {
            if message.tool_calls.is_empty() {
                "stop".into()
            } else {
                "tool_calls".into()
            }
        });
        set(&mut span, KeyValue::str("gen_ai.provider.name", provider));
        span.attributes.extend([
            KeyValue::str("gen_ai.response.model", name),
            KeyValue::strs("gen_ai.response.finish_reasons", [finish.clone()]),
            KeyValue::int(
                "gen_ai.usage.input_tokens",
                saturating_i64(usage.input_tokens),
            ),
            KeyValue::int(
                "gen_ai.usage.output_tokens",
                saturating_i64(usage.output_tokens),
            ),
        ]);
        if usage.cached_input_tokens > 0 {
            span.attributes.push(KeyValue::int(
                "gen_ai.usage.cache_read.input_tokens",
                saturating_i64(usage.cached_input_tokens),
            ));
        }
        if let Some(cost) = cost_usd {
            span.attributes
                .push(KeyValue::double("chassis.cost_usd", *cost));
        }
        if self.capture_content {
            let mut out = assistant_message(message);
            out["finish_reason"] = finish.into();
            span.attributes.push(KeyValue::str(
                "gen_ai.output.messages",
                json!([out]).to_string(),
            ));
        }
        self.end(run, span, now, None, seq);
    }

    /// A model call failed after every attempt and fallback: its `chat` span ends in error.
    fn chat_failed(&self, run: &mut RunSpans, at: &At<'_>, error: &str, unavailable: &bool) {
        let At { now, seq, .. } = *at;
        let Some(mut span) = run.chat.take() else {
            return;
        };
        let kind = if *unavailable {
            "unavailable"
        } else {
            "model_error"
        };
        span.attributes.push(KeyValue::str("error.type", kind));
        let status = Status {
            code: StatusCode::Error as i32,
            message: error.to_string(),
        };
        self.end(run, span, now, Some(status), seq);
    }

    /// A tool call's intent: an `execute_tool` span.
    fn tool_started(
        &self,
        run: &mut RunSpans,
        at: &At<'_>,
        call_id: &String,
        name: &str,
        args: &Value,
        risk: &chassis_core::RiskClass,
    ) {
        let At {
            run_id,
            state,
            now,
            seq,
            ..
        } = *at;
        let mut span = self.open(
            run,
            format!("execute_tool {name}"),
            SpanKind::Internal,
            span_id(run_id, state.seq()),
            now,
        );
        span.attributes = vec![
            KeyValue::str("gen_ai.operation.name", "execute_tool"),
            KeyValue::str("gen_ai.tool.name", name),
            // The provider's id for the call; the journal's is `chassis.call.id`.
            KeyValue::str(
                "gen_ai.tool.call.id",
                state
                    .call(call_id)
                    .map_or(call_id.as_str(), |c| c.call.id.as_str()),
            ),
            KeyValue::str("chassis.call.id", call_id),
            KeyValue::str("gen_ai.tool.type", "function"),
            KeyValue::str("chassis.tool.risk", risk.to_string()),
            KeyValue::int("chassis.step", i64::from(state.steps())),
        ];
        if let Some(def) = state.tool(name) {
            span.attributes
                .push(KeyValue::str("gen_ai.tool.description", &def.description));
        }
        if self.capture_content {
            span.attributes.push(KeyValue::str(
                "gen_ai.tool.call.arguments",
                args.to_string(),
            ));
        }
        run.tools.retain(|(id, _, _)| id != call_id);
        run.tools.push((call_id.clone(), seq, span));
    }

    /// A tool call's result: its `execute_tool` span ends, in error if the tool failed.
    fn tool_finished(
        &self,
        run: &mut RunSpans,
        at: &At<'_>,
        call_id: &str,
        ok: &bool,
        content: &String,
    ) {
        let At { now, seq, .. } = *at;
        let Some(index) = run.tools.iter().position(|(id, _, _)| id == call_id) else {
            return;
        };
        let (_, _, mut span) = run.tools.remove(index);
        if self.capture_content {
            span.attributes
                .push(KeyValue::str("gen_ai.tool.call.result", content));
        }
        let status = (!ok).then(|| {
            span.attributes
                .push(KeyValue::str("error.type", "tool_error"));
            Status {
                code: StatusCode::Error as i32,
                message: if self.capture_content {
                    content.clone()
                } else {
                    "the tool failed".into()
                },
            }
        });
        self.end(run, span, now, status, seq);
    }

    /// Adds `event` as a span event on its target span (or on the segment).
    fn annotate(&self, run: &mut RunSpans, target: Option<Target<'_>>, event: &Event, now: u64) {
        let span = match target {
            Some(Target::Chat) => run.chat.as_mut(),
            Some(Target::Tool(call_id)) => run
                .tools
                .iter_mut()
                .find(|(id, _, _)| id == call_id)
                .map(|(_, _, span)| span),
            None => None,
        };
        let Some(span) = span.or(run.segment.as_mut()) else {
            return;
        };
        span.events.push(SpanEvent {
            time_unix_nano: now,
            name: format!("chassis.{}", event.kind()),
            attributes: event_attributes(event, self.capture_content),
            dropped_attributes_count: 0,
        });
    }
}

/// Where an event is handled: its run, the state it leads to, the observer's clock, its seq.
#[derive(Clone, Copy)]
struct At<'a> {
    run_id: &'a str,
    state: &'a RunState,
    now: u64,
    seq: u64,
}

enum Target<'a> {
    Chat,
    Tool(&'a str),
}

impl Observer for Tracer {
    fn on_event(&self, run_id: &str, state: &RunState, event: &Event) {
        self.handle(run_id, state, event);
    }

    fn on_durable(&self, run_id: &str, seq: u64) {
        let Ok(mut runs) = self.runs.lock() else {
            return;
        };
        let Some(run) = runs.get_mut(run_id) else {
            return;
        };
        run.durable = run.durable.max(seq);
        self.send_durable(run);
        if run.stopped && run.is_idle() && run.ready.is_empty() {
            runs.remove(run_id);
        }
    }

    /// A tool's progress becomes an event of its open `execute_tool` span: `progress`,
    /// `total`, and the tool's message only with content capture (it may quote anything).
    fn on_tool_progress(&self, run_id: &str, call_id: &str, progress: &ToolProgress) {
        let now = (self.clock)();
        let Ok(mut runs) = self.runs.lock() else {
            return;
        };
        let Some(span) = runs.get_mut(run_id).and_then(|run| {
            run.tools
                .iter_mut()
                .find(|(id, _, _)| id == call_id)
                .map(|(_, _, span)| span)
        }) else {
            return;
        };
        let mut attributes = vec![
            KeyValue::str("gen_ai.tool.name", &progress.tool),
            KeyValue::double("progress", progress.progress),
        ];
        if let Some(total) = progress.total {
            attributes.push(KeyValue::double("total", total));
        }
        if let (true, Some(message)) = (self.capture_content, &progress.message) {
            attributes.push(KeyValue::str("message", message));
        }
        span.events.push(SpanEvent {
            time_unix_nano: now,
            name: "chassis.tool_progress".into(),
            attributes,
            dropped_attributes_count: 0,
        });
    }

    fn on_released(&self, run_id: &str) {
        let run = match self.runs.lock() {
            Ok(mut runs) => runs.remove(run_id),
            Err(_) => return,
        };
        if let Some(run) = run {
            self.let_go(run);
        }
    }
}

/// A count as an OTLP integer: the largest one past `i64::MAX`, never a wrapped negative.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Replaces attribute `kv.key` (or adds it).
fn set(span: &mut Span, kv: KeyValue) {
    span.attributes.retain(|a| a.key != kv.key);
    span.attributes.push(kv);
}

/// `provider:model` → (provider, model); a label without a provider is all model.
fn split_model(label: &str) -> (&str, &str) {
    label.split_once(':').unwrap_or(("", label))
}

/// The scalar fields of an event (content fields only when capture is on).
fn event_attributes(event: &Event, capture_content: bool) -> Vec<KeyValue> {
    let Ok(Value::Object(map)) = serde_json::to_value(event) else {
        return Vec::new();
    };
    let kind = event.kind();
    map.into_iter()
        .filter(|(key, _)| key != "kind")
        .filter(|(key, _)| {
            capture_content
                || !(CONTENT_FIELDS.contains(&key.as_str())
                    || (kind == "approval_requested" && key == "reason"))
        })
        .filter_map(|(key, value)| match value {
            Value::String(s) => Some(KeyValue::str(&key, s)),
            Value::Bool(b) => Some(KeyValue::bool(&key, b)),
            Value::Number(n) => Some(match n.as_i64() {
                Some(i) => KeyValue::int(&key, i),
                None => KeyValue::double(&key, n.as_f64().unwrap_or(0.0)),
            }),
            Value::Null => None,
            other if capture_content => Some(KeyValue::str(&key, other.to_string())),
            _ => None,
        })
        .collect()
}

/// A message of one text part, as the GenAI conventions write messages.
fn text_message(role: &str, text: &str) -> Value {
    json!({ "role": role, "parts": [{ "type": "text", "content": text }] })
}

/// An assistant reply as a GenAI message: text and tool-call parts.
fn assistant_message(message: &chassis_core::AssistantMessage) -> Value {
    let mut parts: Vec<Value> = Vec::new();
    if let Some(text) = message.content.as_deref().filter(|t| !t.is_empty()) {
        parts.push(json!({ "type": "text", "content": text }));
    }
    for call in &message.tool_calls {
        let arguments: Value = serde_json::from_str(&call.arguments)
            .unwrap_or_else(|_| Value::String(call.arguments.clone()));
        parts.push(json!({
            "type": "tool_call",
            "id": call.id,
            "name": call.name,
            "arguments": arguments,
        }));
    }
    json!({ "role": "assistant", "parts": parts })
}

/// The context of a model call as GenAI input messages.
fn input_messages(messages: &[Message]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| match m {
                Message::System { content } => text_message("system", content),
                Message::User { content } => text_message("user", content),
                Message::Assistant(reply) => assistant_message(reply),
                Message::Tool { call_id, content } => json!({
                    "role": "tool",
                    "parts": [{ "type": "tool_call_response", "id": call_id, "response": content }],
                }),
            })
            .collect(),
    )
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
