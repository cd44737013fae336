//! A run's state: nothing but the fold of its journal.

use serde::{Deserialize, Serialize};

use std::collections::{BTreeMap, BTreeSet};

use crate::event::Event;
use crate::limits::{LimitName, Limits, Price};
use crate::message::{AssistantMessage, Message, ToolCall, Usage};
use crate::tool::{RiskClass, ToolDef};

/// How the model is told a call of its was refused before running (so it can repair it).
/// The mock model recognizes it: keep them in step.
pub const REFUSED_PREFIX: &str = "error: call refused, not executed: ";

/// How the model is told a human rejected its call.
pub const REJECTED_PREFIX: &str = "error: not executed: ";

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
            Event::RunStarted(_) | Event::RunResumed { .. } => Some(RunStatus::Running),
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

/// Where a call stands with its approval.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Approval {
    /// None asked for (yet).
    #[default]
    None,
    /// Waiting for a human.
    Pending {
        /// When it times out.
        expires_at_ms: Option<u64>,
        /// Whether it timed out and was escalated.
        escalated: bool,
    },
    /// Approved, with edited arguments if the human changed them.
    Approved {
        /// The arguments to run with instead of the model's.
        args: Option<serde_json::Value>,
    },
    /// Rejected; the model was told why.
    Rejected,
}

/// What the runtime knows of one tool call the model made.
#[derive(Clone, Debug, PartialEq)]
pub struct CallState {
    /// Its approval.
    pub approval: Approval,
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
    /// Tools offered to the model (shared with the `run_started` event it came from).
    pub tools: std::sync::Arc<[ToolDef]>,
    /// Fingerprint of the agent version the run started with.
    pub version: String,
    /// The spec's label for that version.
    pub version_label: Option<String>,
    /// Which calls wait for a human.
    pub approvals: crate::approvals::ApprovalPolicy,
    /// Labels the starter attached.
    pub tags: BTreeMap<String, String>,
    /// A limit escalated to a human and not yet raised.
    pub limit_request: Option<LimitName>,
    /// The run's limits, as raised so far.
    pub limits: Limits,
    /// `max_tokens` of every model call.
    pub max_tokens: u32,
    /// Prices of the chain's models.
    pub prices: BTreeMap<String, Price>,
    /// Model calls made (requested), answered or not.
    pub model_calls: u32,
    /// Tool calls executed (started).
    pub tool_calls: u32,
    /// Dollars spent on answered calls of known price.
    pub cost_usd: f64,
    /// Calls answered by a model without a known price: the cost is a lower bound.
    pub unpriced_calls: u32,
    /// When the run started, ms since the epoch.
    pub started_at_ms: u64,
    /// Active time accumulated before `active_since`, in ms.
    pub active_ms: u64,
    /// Start of the current active stretch, while running.
    pub active_since: Option<u64>,
    /// Executions per tool call (name and canonical arguments).
    pub call_counts: BTreeMap<String, u32>,
    /// Fingerprints of every (call, result) seen, to spot steps that bring nothing new.
    pub seen_results: BTreeSet<u64>,
    /// Whether the current step brought a result not seen before.
    pub step_new: bool,
    /// Whether the current step finished any tool call.
    pub step_had_results: bool,
    /// Consecutive completed steps whose tool results were all seen before.
    pub stale_streak: u32,
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
            (0, Event::RunStarted(_)) => {}
            (0, _) | (_, Event::RunStarted(_)) => {
                return Err(FoldError::BadStart { seq, kind });
            }
            _ if self.status.is_terminal() => return Err(FoldError::AfterEnd { seq, kind }),
            _ => {}
        }
        match event {
            Event::RunStarted(start) => {
                let crate::event::RunStart {
                    agent,
                    spec_path,
                    input,
                    system,
                    model,
                    fallbacks,
                    tools,
                    limits,
                    max_tokens,
                    prices,
                    at_ms,
                    max_repairs,
                    version,
                    version_label,
                    approvals,
                    tags,
                } = &**start;
                self.tags = tags.clone();
                self.approvals = approvals.clone();
                self.version = version.clone();
                self.version_label = version_label.clone();
                self.limits = limits.clone();
                self.max_tokens = *max_tokens;
                self.prices = prices.clone();
                self.started_at_ms = *at_ms;
                self.active_since = Some(*at_ms);
                self.agent = agent.clone();
                self.spec_path = spec_path.clone();
                self.input = input.clone();
                self.model = model.clone();
                self.models = std::iter::once(model.clone())
                    .chain(fallbacks.iter().cloned())
                    .collect();
                self.max_repairs = *max_repairs;
                self.tools = tools.clone();
                self.messages = vec![
                    Message::System {
                        content: system.clone(),
                    },
                    Message::User {
                        content: input.clone(),
                    },
                ];
            }
            Event::ModelRequested { .. } => self.model_calls += 1,
            Event::ModelResponded {
                message,
                usage,
                cost_usd,
                ..
            } => {
                self.steps += 1;
                match cost_usd {
                    Some(cost) => self.cost_usd += cost,
                    None => self.unpriced_calls += 1,
                }
                self.stale_streak = if self.step_had_results && !self.step_new {
                    self.stale_streak + 1
                } else {
                    0
                };
                self.step_had_results = false;
                self.step_new = false;
                self.invalid_streak = if self.step_refused {
                    self.invalid_streak + 1
                } else {
                    0
                };
                self.step_refused = false;
                self.model_failure = None;
                self.usage.input_tokens += usage.input_tokens;
                self.usage.output_tokens += usage.output_tokens;
                self.usage.cached_input_tokens += usage.cached_input_tokens;
                self.error = None;
                self.calls = message
                    .tool_calls
                    .iter()
                    .map(|call| CallState {
                        approval: Approval::None,
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
            Event::ToolStarted {
                call_id,
                name,
                args,
                risk,
                ..
            } => {
                let call = self.call_mut(call_id, seq, kind)?;
                let first_start = call.started.is_none();
                call.started = Some(*risk);
                if first_start {
                    self.tool_calls += 1;
                    *self.call_counts.entry(call_key(name, args)).or_default() += 1;
                }
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
                let fingerprint = fnv1a(&[
                    call.call.name.as_bytes(),
                    call.call.arguments.as_bytes(),
                    content.as_bytes(),
                ]);
                self.step_had_results = true;
                if self.seen_results.insert(fingerprint) {
                    self.step_new = true;
                }
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
            Event::LimitReached { limit, action, .. } => {
                if *action == crate::limits::LimitAction::Escalate {
                    self.limit_request = Some(*limit);
                }
            }
            Event::ApprovalRequested {
                call_id,
                expires_at_ms,
                ..
            } => {
                self.call_mut(call_id, seq, kind)?.approval = Approval::Pending {
                    expires_at_ms: *expires_at_ms,
                    escalated: false,
                };
            }
            Event::ApprovalDecided {
                call_id,
                approved,
                args,
                by,
                reason,
                ..
            } => {
                let call = self.call_mut(call_id, seq, kind)?;
                if *approved {
                    call.approval = Approval::Approved { args: args.clone() };
                } else {
                    call.approval = Approval::Rejected;
                    call.resolved = true;
                    let why = reason.as_deref().unwrap_or("no reason given");
                    self.push_tool_result(
                        call_id,
                        format!("{REJECTED_PREFIX}{by} rejected this call: {why}"),
                    );
                }
            }
            Event::ApprovalEscalated { call_id, .. } => {
                if let Approval::Pending { escalated, .. } =
                    &mut self.call_mut(call_id, seq, kind)?.approval
                {
                    *escalated = true;
                }
            }
            Event::OutcomeResolved {
                call_id,
                resolution,
                ..
            } => {
                let call = self.call_mut(call_id, seq, kind)?;
                if resolution == "retry" {
                    // Run it again, with the same idempotency key; it was approved already.
                    call.outcome_unknown = false;
                    call.started = None;
                }
            }
            Event::LimitRaised { limit, value, .. } => {
                self.limit_request = None;
                self.limits.values.insert(*limit, *value);
                if *limit == LimitName::MaxRepeats {
                    // A human looked at the loop and let it go on: count afresh.
                    self.call_counts.clear();
                    self.stale_streak = 0;
                }
            }
            Event::RunWaiting { reason, at_ms } | Event::RunPaused { reason, at_ms } => {
                self.waiting_reason = Some(reason.clone());
                if !self.limits.count_waiting {
                    self.stop_clock(*at_ms);
                }
            }
            Event::RunResumed { at_ms } => {
                self.waiting_reason = None;
                self.model_failure = None;
                // A resume after a crash (still "active") counts the gap: conservative.
                self.stop_clock(*at_ms);
                self.active_since = Some(*at_ms);
            }
            Event::RunCompleted { output } => {
                self.output = Some(output.clone());
                self.limit_request = None;
            }
            Event::RunFailed { error } => {
                self.error = Some(error.clone());
                self.limit_request = None;
            }
        }
        if let Some(status) = RunStatus::after(event) {
            self.status = status;
        }
        self.seq = seq;
        Ok(())
    }

    /// Active time in ms at `now_ms` (all time since the start when waiting counts).
    pub fn wall_ms(&self, now_ms: u64) -> u64 {
        if self.limits.count_waiting {
            return now_ms.saturating_sub(self.started_at_ms);
        }
        self.active_ms
            + self
                .active_since
                .map_or(0, |since| now_ms.saturating_sub(since))
    }

    /// How many times this exact call (name and canonical arguments) has run.
    pub fn executions_of(&self, name: &str, args: &serde_json::Value) -> u32 {
        self.call_counts
            .get(&call_key(name, args))
            .copied()
            .unwrap_or(0)
    }

    fn stop_clock(&mut self, at_ms: u64) {
        if let Some(since) = self.active_since.take() {
            self.active_ms += at_ms.saturating_sub(since);
        }
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

/// A tool call's identity for loop detection: its name and canonical (key-sorted) arguments.
pub fn call_key(name: &str, args: &serde_json::Value) -> String {
    let mut out = String::with_capacity(name.len() + 32);
    out.push_str(name);
    out.push(' ');
    canonical(args, &mut out);
    out
}

fn canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// FNV-1a over byte strings: stable across builds, unlike `std`'s hasher, so a replay after an
/// upgrade decides as the original run did.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
