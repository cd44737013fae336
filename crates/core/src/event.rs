//! The journal's event type: everything that happens to a run, in order.
//!
//! Events are serialized into every journal; changing a variant is a migration.
//! They hold deltas only (one reply, one result), never the whole history, so journal bytes
//! per step stay flat as a run grows.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::approvals::ApprovalPolicy;
use crate::context::ContextPolicy;
use crate::limits::{LimitAction, LimitName, Limits, Price};
use crate::message::{AssistantMessage, Usage};
use crate::tool::{RiskClass, ToolDef};

/// One journaled fact about a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The run was created; carries everything needed to rebuild its first context.
    /// Boxed: it is several times the size of any other event, which would all be as large.
    RunStarted(Box<RunStart>),
    /// A model call is about to be made (its context is the fold so far).
    ModelRequested {
        /// Step number, counting from 1.
        step: u32,
        /// `provider:model` called.
        model: String,
        /// How many messages the context held.
        messages: usize,
    },
    /// A model answered.
    ModelResponded {
        /// Step number this answers.
        step: u32,
        /// The model that served the step, as the provider named it.
        model: String,
        /// The reply.
        message: AssistantMessage,
        /// Tokens consumed.
        usage: Usage,
        /// Why the model stopped, as reported.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        finish_reason: Option<String>,
        /// Wall time of the call in milliseconds.
        latency_ms: u64,
        /// Cost of the call in US dollars; absent when the model has no known price.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// One attempt of a model call failed; `delay_ms` is the wait before the next, if any.
    ModelAttemptFailed {
        /// Step number.
        step: u32,
        /// `provider:model` attempted.
        model: String,
        /// Attempt number for this model, from 1.
        attempt: u32,
        /// What went wrong.
        error: String,
        /// Backoff before the next attempt; absent when this model was given up on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay_ms: Option<u64>,
    },
    /// A model was skipped because its circuit breaker is open.
    ModelCircuitOpen {
        /// Step number.
        step: u32,
        /// `provider:model` skipped.
        model: String,
    },
    /// Within one step, the call moved on to the next model of the chain.
    ModelFallback {
        /// Step number.
        step: u32,
        /// `provider:model` given up on.
        from: String,
        /// `provider:model` tried next.
        to: String,
        /// Why.
        reason: String,
    },
    /// A model call failed after every retry and fallback.
    ModelFailed {
        /// Step number.
        step: u32,
        /// `provider:model` called first.
        model: String,
        /// What went wrong.
        error: String,
        /// True when the models were only unavailable: the run parks instead of failing.
        #[serde(default)]
        unavailable: bool,
    },
    /// The run gives up on its current model for good (it kept producing invalid tool calls)
    /// and uses the next one of the chain from now on.
    ModelSwitched {
        /// Index in the chain (0 = primary).
        index: usize,
        /// `provider:model` used from now on.
        model: String,
        /// Why.
        reason: String,
    },
    /// Earlier steps were summarized by a model call (`[context] strategy = "summarize"`): from
    /// now on the summary stands for the messages events `from_seq..=to_seq` added, in every
    /// context the run builds. Replayed from the journal on resume, never made again.
    ContextCompacted {
        /// The first event the summary stands for.
        from_seq: u64,
        /// The last event the summary stands for.
        to_seq: u64,
        /// The summary.
        summary: String,
        /// The model that made it, as the provider named it.
        #[serde(default)]
        model: String,
        /// Tokens the summarization consumed (counted against the run's limits).
        #[serde(default)]
        usage: Usage,
        /// Its cost in US dollars; absent when the model has no known price.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// A tool call was refused before execution (unknown tool, unparsable or invalid
    /// arguments); the error goes back to the model.
    ToolRefused {
        /// The call refused: its [`call_id`](crate::state::call_id), `STEP.INDEX`.
        call_id: String,
        /// Tool name as the model gave it.
        name: String,
        /// What was wrong, phrased for the model.
        error: String,
    },
    /// A tool call is about to be executed: the intent, journaled before acting.
    ToolStarted {
        /// The call: `STEP.INDEX`, its place in the model's reply (journals written before
        /// call identity have the provider's id here; the fold still finds those).
        call_id: String,
        /// Tool name.
        name: String,
        /// Validated arguments.
        args: serde_json::Value,
        /// Risk class at the time of the call.
        risk: RiskClass,
        /// Key handed to the tool so a repeated delivery can be recognized.
        idempotency_key: String,
    },
    /// A tool call ended, successfully or with a tool error.
    ToolFinished {
        /// The call.
        call_id: String,
        /// True when the tool succeeded.
        ok: bool,
        /// Output, or the error the model should see.
        content: String,
        /// Wall time of the call in milliseconds.
        latency_ms: u64,
    },
    /// One attempt of a retryable tool call failed and will be tried again after `delay_ms`.
    ToolAttemptFailed {
        /// The call.
        call_id: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// The tool's error.
        error: String,
        /// Backoff before the next attempt.
        delay_ms: u64,
    },
    /// A call waits for a human's approval; the run stops as waiting.
    ApprovalRequested {
        /// The call.
        call_id: String,
        /// Tool name.
        tool: String,
        /// Arguments as the model gave them (validated).
        args: serde_json::Value,
        /// Risk class of the tool.
        risk: RiskClass,
        /// What the model said alongside the call, its stated reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The last messages of the conversation, for the human.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        context: Vec<String>,
        /// When it was requested (ms since the epoch).
        at_ms: u64,
        /// When it times out, if the policy sets a timeout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at_ms: Option<u64>,
    },
    /// A human (or the timeout) decided an approval: the audit trail.
    ApprovalDecided {
        /// The call.
        call_id: String,
        /// Approved or rejected.
        approved: bool,
        /// Edited arguments the call runs with instead of the model's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        args: Option<serde_json::Value>,
        /// Who decided.
        by: String,
        /// Their note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// Why it was rejected: given to the model as the tool's result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// Nobody decided an approval in time; it is flagged for someone else.
    ApprovalEscalated {
        /// The call.
        call_id: String,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// A human settled a call whose outcome was unknown.
    OutcomeResolved {
        /// The call.
        call_id: String,
        /// `succeeded`, `failed` or `retry` (run it again with the same idempotency key).
        resolution: String,
        /// Who settled it.
        by: String,
        /// Their note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// When (ms since the epoch).
        at_ms: u64,
        /// For `succeeded` and `failed`: what the model sees as the call's result. (Journals
        /// written before this field follow the resolution with a `tool_finished`.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
    },
    /// A call that was started but never finished (the process died) and must not be
    /// repeated: a human has to say what happened.
    ToolOutcomeUnknown {
        /// The call.
        call_id: String,
        /// Tool name.
        name: String,
    },
    /// The next call would cross a limit, so it was not made.
    LimitReached {
        /// The limit.
        limit: LimitName,
        /// Its value at that moment.
        value: f64,
        /// What the run had used.
        used: f64,
        /// What the run would have used after the call, at the call's worst case.
        projected: f64,
        /// What happens now.
        action: LimitAction,
    },
    /// A human raised a limit (`chassis resume --raise`, or an escalation approved).
    LimitRaised {
        /// The limit.
        limit: LimitName,
        /// Its new value.
        value: f64,
        /// Who raised it.
        by: String,
    },
    /// A human refused to raise an escalated limit: the run fails when it is next driven.
    LimitRejected {
        /// The limit.
        limit: LimitName,
        /// Who refused.
        by: String,
        /// Why.
        reason: String,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// A human asked the run to stop; its driver ends it at the next safe point (never inside
    /// a tool call that may not be repeated) with `run_cancelled`.
    CancelRequested {
        /// Who asked.
        by: String,
        /// Why.
        reason: String,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// A human asked for a run stopped by a person, or parked, to be driven again (by whoever
    /// claims it: a worker, or `chassis resume`).
    ResumeRequested {
        /// Who asked.
        by: String,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// The run stopped to wait for a human.
    RunWaiting {
        /// Why.
        reason: String,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// The run parked itself (every model unavailable): nothing lost, `resume` continues it.
    RunPaused {
        /// Why.
        reason: String,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// A person continued the conversation: a new user turn after the run's answer (or while
    /// it waits with nothing in flight). The run runs again, and its next model call sees the
    /// whole conversation with this message last.
    UserMessage {
        /// What they said.
        text: String,
        /// Who said it.
        by: String,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// The run was picked up again after a stop or a crash.
    RunResumed {
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// The run finished with an answer.
    RunCompleted {
        /// The final answer.
        output: String,
    },
    /// The run ended without an answer.
    RunFailed {
        /// Why.
        error: String,
    },
    /// The run ended because a human cancelled it.
    RunCancelled {
        /// Who cancelled it.
        by: String,
        /// Why.
        reason: String,
        /// When (ms since the epoch).
        at_ms: u64,
    },
}

/// What `run_started` records: everything needed to rebuild a run's first context, and the
/// policy it runs under. Serialized flat, beside the event's `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStart {
    /// Agent name from the spec.
    pub agent: String,
    /// Absolute path of the spec file, used to reload tools and provider on resume.
    pub spec_path: String,
    /// The run's input (the first user message).
    pub input: String,
    /// The rendered system prompt.
    pub system: String,
    /// `provider:model` used for model calls.
    pub model: String,
    /// `provider:model` of each fallback, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// Tools offered to the model; shared, not copied, by every run of an agent and its
    /// folded state.
    pub tools: std::sync::Arc<[ToolDef]>,
    /// The run's hard limits and the action at each.
    pub limits: Limits,
    /// `max_tokens` sent with every model call: the worst-case output of one call.
    pub max_tokens: u32,
    /// Prices of the chain's models (`provider:model` → price); a model absent here has
    /// no known price.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, Price>,
    /// When the run started (ms since the epoch), for wall-time limits.
    pub at_ms: u64,
    /// Fingerprint of the agent version (spec, prompt, tools, models): a short hash.
    #[serde(default)]
    pub version: String,
    /// The spec's human label for the version, `[agent] version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    /// Which calls wait for a human.
    #[serde(default)]
    pub approvals: ApprovalPolicy,
    /// Labels the starter attached (e.g. `eval.suite`), for grouping and filtering.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// How many times invalid tool calls go back to the model before it is given up on.
    #[serde(default = "default_max_repairs")]
    pub max_repairs: u32,
    /// When every model is unavailable, how long the run stays parked before its first retry
    /// (in ms); each further retry waits twice as long, up to [`PARK_RETRY_CEILING_MS`].
    #[serde(default = "default_park_retry_ms")]
    pub park_retry_ms: u64,
    /// The run this one was forked from, and how many of its events were copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkedFrom>,
    /// How every call's context is kept inside the model's window (`[context]`); unbounded
    /// in runs journaled before context management.
    #[serde(default, skip_serializing_if = "ContextPolicy::is_unbounded")]
    pub context: ContextPolicy,
}

/// Where a forked run's history came from: the first `seq` events of `run`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkedFrom {
    /// The original run.
    pub run: String,
    /// How many of its events the fork starts with.
    pub seq: u64,
}

/// A parked run's first retry, unless the spec says (`[model] park_retry`).
pub const DEFAULT_PARK_RETRY_MS: u64 = 30_000;

/// The longest wait between two retries of a parked run (unless the first is longer).
pub const PARK_RETRY_CEILING_MS: u64 = 10 * 60 * 1000;

fn default_park_retry_ms() -> u64 {
    DEFAULT_PARK_RETRY_MS
}

/// Invalid tool calls sent back to the model before it is given up on, unless the spec says.
pub const DEFAULT_MAX_REPAIRS: u32 = 2;

fn default_max_repairs() -> u32 {
    DEFAULT_MAX_REPAIRS
}

impl Event {
    /// The `kind` tag as stored in the journal.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunStarted(_) => "run_started",
            Event::ModelRequested { .. } => "model_requested",
            Event::ModelResponded { .. } => "model_responded",
            Event::ModelAttemptFailed { .. } => "model_attempt_failed",
            Event::ModelCircuitOpen { .. } => "model_circuit_open",
            Event::ModelFallback { .. } => "model_fallback",
            Event::ModelFailed { .. } => "model_failed",
            Event::ModelSwitched { .. } => "model_switched",
            Event::ContextCompacted { .. } => "context_compacted",
            Event::ToolAttemptFailed { .. } => "tool_attempt_failed",
            Event::RunPaused { .. } => "run_paused",
            Event::LimitReached { .. } => "limit_reached",
            Event::ApprovalRequested { .. } => "approval_requested",
            Event::ApprovalDecided { .. } => "approval_decided",
            Event::ApprovalEscalated { .. } => "approval_escalated",
            Event::OutcomeResolved { .. } => "outcome_resolved",
            Event::LimitRaised { .. } => "limit_raised",
            Event::ToolRefused { .. } => "tool_refused",
            Event::ToolStarted { .. } => "tool_started",
            Event::ToolFinished { .. } => "tool_finished",
            Event::ToolOutcomeUnknown { .. } => "tool_outcome_unknown",
            Event::RunWaiting { .. } => "run_waiting",
            Event::RunResumed { .. } => "run_resumed",
            Event::RunCompleted { .. } => "run_completed",
            Event::RunFailed { .. } => "run_failed",
            Event::LimitRejected { .. } => "limit_rejected",
            Event::CancelRequested { .. } => "cancel_requested",
            Event::ResumeRequested { .. } => "resume_requested",
            Event::UserMessage { .. } => "user_message",
            Event::RunCancelled { .. } => "run_cancelled",
        }
    }

    /// Whether this is one of the decisions a human may journal without holding the run's
    /// lease (the store refuses every other event from anyone but the run's driver): an
    /// approval decided, an unknown outcome settled, a limit raised or refused, a cancel, a
    /// resume, a new user message.
    pub fn is_human_decision(&self) -> bool {
        match self {
            Event::ApprovalDecided { .. }
            | Event::OutcomeResolved { .. }
            | Event::LimitRaised { .. }
            | Event::LimitRejected { .. }
            | Event::CancelRequested { .. }
            | Event::ResumeRequested { .. }
            | Event::UserMessage { .. } => true,
            Event::RunStarted(_)
            | Event::ModelRequested { .. }
            | Event::ModelResponded { .. }
            | Event::ModelAttemptFailed { .. }
            | Event::ModelCircuitOpen { .. }
            | Event::ModelFallback { .. }
            | Event::ModelFailed { .. }
            | Event::ModelSwitched { .. }
            | Event::ContextCompacted { .. }
            | Event::ToolRefused { .. }
            | Event::ToolStarted { .. }
            | Event::ToolFinished { .. }
            | Event::ToolAttemptFailed { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalEscalated { .. }
            | Event::ToolOutcomeUnknown { .. }
            | Event::LimitReached { .. }
            | Event::RunWaiting { .. }
            | Event::RunPaused { .. }
            | Event::RunResumed { .. }
            | Event::RunCompleted { .. }
            | Event::RunFailed { .. }
            | Event::RunCancelled { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Boxing the payload must not change the journal: `run_started` stays one flat object
    /// with its `kind`, as journals written before the box hold it.
    #[test]
    fn run_started_is_journaled_flat_beside_its_kind() {
        let written = json!({
            "kind": "run_started",
            "agent": "desk",
            "spec_path": "/srv/desk/agent.toml",
            "input": "hi",
            "system": "Be brief.",
            "model": "openai:gpt-4o-mini",
            "tools": [],
            "limits": serde_json::to_value(Limits::default()).unwrap(),
            "max_tokens": 512,
            "at_ms": 1_700_000_000_000u64,
            "version": "0123456789ab",
            "approvals": serde_json::to_value(ApprovalPolicy::default()).unwrap(),
            "max_repairs": 2,
            "park_retry_ms": 30_000,
        });
        let event: Event = serde_json::from_value(written.clone()).unwrap();
        let Event::RunStarted(start) = &event else {
            panic!("not run_started: {event:?}");
        };
        assert_eq!(start.agent, "desk");
        assert_eq!(start.max_tokens, 512);
        assert_eq!(serde_json::to_value(&event).unwrap(), written);
        assert!(
            std::mem::size_of::<Event>() < 200,
            "{}",
            std::mem::size_of::<Event>()
        );
    }
}
