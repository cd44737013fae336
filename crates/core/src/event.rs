//! The journal's event type: everything that happens to a run, in order.
//!
//! Events are serialized into every journal; changing a variant is a migration.
//! They hold deltas only (one reply, one result), never the whole history, so journal bytes
//! per step stay flat as a run grows.

use serde::{Deserialize, Serialize};

use crate::message::{AssistantMessage, Usage};
use crate::tool::{RiskClass, ToolDef};

/// One journaled fact about a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The run was created; carries everything needed to rebuild its first context.
    RunStarted {
        /// Agent name from the spec.
        agent: String,
        /// Absolute path of the spec file, used to reload tools and provider on resume.
        spec_path: String,
        /// The run's input (the first user message).
        input: String,
        /// The rendered system prompt.
        system: String,
        /// `provider:model` used for model calls.
        model: String,
        /// Tools offered to the model.
        tools: Vec<ToolDef>,
        /// The most model calls the run may make.
        max_steps: u32,
    },
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
    },
    /// A model call failed.
    ModelFailed {
        /// Step number.
        step: u32,
        /// `provider:model` called.
        model: String,
        /// What went wrong.
        error: String,
    },
    /// A tool call was refused before execution (unknown tool, unparsable or invalid
    /// arguments); the error goes back to the model.
    ToolRefused {
        /// The call refused.
        call_id: String,
        /// Tool name as the model gave it.
        name: String,
        /// What was wrong, phrased for the model.
        error: String,
    },
    /// A tool call is about to be executed: the intent, journaled before acting.
    ToolStarted {
        /// The call.
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
    /// A call that was started but never finished (the process died) and must not be
    /// repeated: a human has to say what happened.
    ToolOutcomeUnknown {
        /// The call.
        call_id: String,
        /// Tool name.
        name: String,
    },
    /// The run stopped to wait for a human.
    RunWaiting {
        /// Why.
        reason: String,
    },
    /// The run was picked up again after a stop or a crash.
    RunResumed {},
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
}

impl Event {
    /// The `kind` tag as stored in the journal.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run_started",
            Event::ModelRequested { .. } => "model_requested",
            Event::ModelResponded { .. } => "model_responded",
            Event::ModelFailed { .. } => "model_failed",
            Event::ToolRefused { .. } => "tool_refused",
            Event::ToolStarted { .. } => "tool_started",
            Event::ToolFinished { .. } => "tool_finished",
            Event::ToolOutcomeUnknown { .. } => "tool_outcome_unknown",
            Event::RunWaiting { .. } => "run_waiting",
            Event::RunResumed {} => "run_resumed",
            Event::RunCompleted { .. } => "run_completed",
            Event::RunFailed { .. } => "run_failed",
        }
    }
}
