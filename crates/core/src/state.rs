//! A run's state: nothing but the fold of its journal.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::message::{AssistantMessage, Message, ToolCall, Usage};
use crate::tool::{RiskClass, ToolDef};

/// How the model is told a call of its was refused before running (so it can repair it).
/// The mock model recognizes it: keep them in step.
pub const REFUSED_PREFIX: &str = "error: call refused, not executed: ";

/// How the model is told a tool ran and failed.
pub const FAILED_PREFIX: &str = "error: ";

/// Where a run is in its life.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created or executing (or interrupted while executing).
    #[default]
    Running,
    /// Stopped until a human acts.
    Waiting,
    /// Stopped until someone resumes it (a limit or an outage); later issues use it.
    Paused,
    /// Finished with an answer.
    Completed,
    /// Ended without an answer.
    Failed,
}

impl RunStatus {
    /// The spelling used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Paused => "paused",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }

    /// Parses [`RunStatus::as_str`] output.
    pub fn parse(text: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Waiting,
            RunStatus::Paused,
            RunStatus::Completed,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// True once the run can never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed)
    }

    /// The status an event moves a run to, if it changes it.
    pub fn after(event: &Event) -> Option<RunStatus> {
        match event {
            Event::RunStarted { .. } | Event::RunResumed {} => Some(RunStatus::Running),
            Event::RunWaiting { .. } => Some(RunStatus::Waiting),
            Event::RunPaused { .. } => Some(RunStatus::Paused),
            Event::RunCompleted { .. } => Some(RunStatus::Completed),
            Event::RunFailed { .. } => Some(RunStatus::Failed),
            _ => None,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A journal that cannot be folded: replay disagrees with what was recorded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FoldError {
    /// The first event was not `run_started`, or a second one appeared.
    #[error("event {seq} ({kind}): the journal must open with exactly one run_started")]
    BadStart {
        /// Position in the journal, from 1.
        seq: u64,
        /// The offending event's kind.
        kind: &'static str,
    },
    /// A tool event names a call the model never made.
    #[error("event {seq} ({kind}): call `{call_id}` was never requested by the model")]
    UnknownCall {
        /// Position in the journal, from 1.
        seq: u64,
        /// The offending event's kind.
        kind: &'static str,
        /// The call id.
        call_id: String,
    },
    /// An event arrived after the run had ended.
    #[error("event {seq} ({kind}): the run had already ended")]
    AfterEnd {
        /// Position in the journal, from 1.
        seq: u64,
        /// The offending event's kind.
        kind: &'static str,
    },
}

/// What the runtime knows of one tool call the model made.
#[derive(Clone, Debug, PartialEq)]
pub struct CallState {
    /// The call as the model made it.
    pub call: ToolCall,
    /// Set once the intent was journaled (`tool_started`).
    pub started: Option<RiskClass>,
    /// Set once the call has a result for the model.
    pub resolved: bool,
    /// Set when the process died mid-call and a human must settle it.
    pub outcome_unknown: bool,
}

/// Everything known about a run, rebuilt by folding its journal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunState {
    /// Number of events folded; the expected sequence for the next append.
    pub seq: u64,
    /// Lifecycle status.
    pub status: RunStatus,
    /// Agent name.
    pub agent: String,
    /// Spec file the run was started from.
    pub spec_path: String,
    /// The run's input.
    pub input: String,
    /// `provider:model` of the primary.
    pub model: String,
    /// The chain: primary first, then each fallback.
    pub models: Vec<String>,
    /// Index in `models` the run starts each model call at (it moves on after repeated
    /// invalid output).
    pub chain_offset: usize,
    /// Invalid tool calls sent back before the model is given up on.
    pub max_repairs: u32,
    /// Consecutive completed steps whose reply held a refused call.
    pub invalid_streak: u32,
    /// Whether the current step's reply held a refused call.
    pub step_refused: bool,
    /// The last model failure not yet followed by a reply: message, and whether the models
    /// were only unavailable.
    pub model_failure: Option<(String, bool)>,
    /// Tools offered to the model.
    pub tools: Vec<ToolDef>,
    /// Most model calls allowed.
    pub max_steps: u32,
    /// The context the next model call will see.
    pub messages: Vec<Message>,
    /// Model calls answered so far.
    pub steps: u32,
    /// Calls of the latest model reply, in order.
    pub calls: Vec<CallState>,
    /// Tokens used so far.
    pub usage: Usage,
    /// The final answer, once completed.
    pub output: Option<String>,
    /// The failure, once failed; or the last model error.
    pub error: Option<String>,
    /// Why the run waits, while waiting.
    pub waiting_reason: Option<String>,
}

impl RunState {
    /// Folds a whole journal.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<RunState, FoldError> {
        let mut state = RunState::default();
        for event in events {
            state.apply(event)?;
        }
        Ok(state)
    }

    /// Applies one event; never panics, refuses what cannot follow the state so far.
    pub fn apply(&mut self, event: &Event) -> Result<(), FoldError> {
        let seq = self.seq + 1;
        let kind = event.kind();
        match (self.seq, event) {
            (0, Event::RunStarted { .. }) => {}
            (0, _) | (_, Event::RunStarted { .. }) => {
                return Err(FoldError::BadStart { seq, kind });
            }
            _ if self.status.is_terminal() => return Err(FoldError::AfterEnd { seq, kind }),
            _ => {}
        }
        match event {
            Event::RunStarted {
                agent,
                spec_path,
                input,
                system,
                model,
                fallbacks,
                tools,
                max_steps,
                max_repairs,
            } => {
                self.agent = agent.clone();
                self.spec_path = spec_path.clone();
                self.input = input.clone();
                self.model = model.clone();
                self.models = std::iter::once(model.clone())
                    .chain(fallbacks.iter().cloned())
                    .collect();
                self.max_repairs = *max_repairs;
                self.tools = tools.clone();
                self.max_steps = *max_steps;
                self.messages = vec![
                    Message::System {
                        content: system.clone(),
                    },
                    Message::User {
                        content: input.clone(),
                    },
                ];
            }
            Event::ModelRequested { .. } => {}
            Event::ModelResponded { message, usage, .. } => {
                self.steps += 1;
                self.invalid_streak = if self.step_refused {
                    self.invalid_streak + 1
                } else {
                    0
                };
                self.step_refused = false;
                self.model_failure = None;
                self.usage.input_tokens += usage.input_tokens;
                self.usage.output_tokens += usage.output_tokens;
                self.error = None;
                self.calls = message
                    .tool_calls
                    .iter()
                    .map(|call| CallState {
                        call: call.clone(),
                        started: None,
                        resolved: false,
                        outcome_unknown: false,
                    })
                    .collect();
                self.messages.push(Message::Assistant(message.clone()));
            }
            Event::ModelAttemptFailed { .. }
            | Event::ModelCircuitOpen { .. }
            | Event::ModelFallback { .. }
            | Event::ToolAttemptFailed { .. } => {}
            Event::ModelFailed {
                error, unavailable, ..
            } => self.model_failure = Some((error.clone(), *unavailable)),
            Event::ModelSwitched { index, .. } => {
                self.chain_offset = *index;
                self.invalid_streak = 0;
                self.step_refused = false;
            }
            Event::ToolRefused { call_id, error, .. } => {
                self.call_mut(call_id, seq, kind)?.resolved = true;
                self.step_refused = true;
                self.push_tool_result(call_id, format!("{REFUSED_PREFIX}{error}"));
            }
            Event::ToolStarted { call_id, risk, .. } => {
                self.call_mut(call_id, seq, kind)?.started = Some(*risk);
            }
            Event::ToolFinished {
                call_id,
                ok,
                content,
                ..
            } => {
                let call = self.call_mut(call_id, seq, kind)?;
                call.resolved = true;
                call.outcome_unknown = false;
                let content = if *ok {
                    content.clone()
                } else {
                    format!("{FAILED_PREFIX}{content}")
                };
                self.push_tool_result(call_id, content);
            }
            Event::ToolOutcomeUnknown { call_id, .. } => {
                self.call_mut(call_id, seq, kind)?.outcome_unknown = true;
            }
            Event::RunWaiting { reason } | Event::RunPaused { reason } => {
                self.waiting_reason = Some(reason.clone())
            }
            Event::RunResumed {} => {
                self.waiting_reason = None;
                self.model_failure = None;
            }
            Event::RunCompleted { output } => self.output = Some(output.clone()),
            Event::RunFailed { error } => self.error = Some(error.clone()),
        }
        if let Some(status) = RunStatus::after(event) {
            self.status = status;
        }
        self.seq = seq;
        Ok(())
    }

    /// The latest model reply, if the run has one.
    pub fn last_reply(&self) -> Option<&AssistantMessage> {
        self.messages.iter().rev().find_map(|m| match m {
            Message::Assistant(reply) => Some(reply),
            _ => None,
        })
    }

    /// The tool definition by name.
    pub fn tool(&self, name: &str) -> Option<&ToolDef> {
        self.tools.iter().find(|t| t.name == name)
    }

    fn call_mut(
        &mut self,
        call_id: &str,
        seq: u64,
        kind: &'static str,
    ) -> Result<&mut CallState, FoldError> {
        self.calls
            .iter_mut()
            .find(|c| c.call.id == call_id)
            .ok_or_else(|| FoldError::UnknownCall {
                seq,
                kind,
                call_id: call_id.to_string(),
            })
    }

    fn push_tool_result(&mut self, call_id: &str, content: String) {
        self.messages.push(Message::Tool {
            call_id: call_id.to_string(),
            content,
        });
    }
}
