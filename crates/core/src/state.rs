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
    /// Ended because a human cancelled it.
    Cancelled,
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
            RunStatus::Cancelled => "cancelled",
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
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// True once the run can never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// The status an event moves a run to, if it changes it.
    pub fn after(event: &Event) -> Option<RunStatus> {
        match event {
            Event::RunStarted(_) | Event::RunResumed { .. } | Event::UserMessage { .. } => {
                Some(RunStatus::Running)
            }
            Event::RunWaiting { .. } => Some(RunStatus::Waiting),
            Event::RunPaused { .. } => Some(RunStatus::Paused),
            Event::RunCompleted { .. } => Some(RunStatus::Completed),
            Event::RunFailed { .. } => Some(RunStatus::Failed),
            Event::RunCancelled { .. } => Some(RunStatus::Cancelled),
            Event::ModelRequested { .. }
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
            | Event::ApprovalDecided { .. }
            | Event::ApprovalEscalated { .. }
            | Event::OutcomeResolved { .. }
            | Event::ToolOutcomeUnknown { .. }
            | Event::LimitReached { .. }
            | Event::LimitRaised { .. }
            | Event::LimitRejected { .. }
            | Event::CancelRequested { .. }
            | Event::ResumeRequested { .. } => None,
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
    /// A user message arrived while a call of the last reply still waited for its result
    /// (the conversation would hold a tool call without its result).
    #[error("event {seq} (user_message): call `{call_id}` has no result yet")]
    MessageMidCall {
        /// Position in the journal, from 1.
        seq: u64,
        /// The call without a result.
        call_id: String,
    },
}

/// Where a call stands with its approval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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

/// The journal's name for a call: its step and its place in that step's reply, `STEP.INDEX`.
///
/// Providers choose their own ids and may repeat them, leave them empty or leave them out;
/// chassis never identifies a call by those.
pub fn call_id(step: u32, index: usize) -> String {
    format!("{step}.{index}")
}

/// What the runtime knows of one tool call the model made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallState {
    /// The journal's name for the call, `STEP.INDEX` ([`call_id`]).
    pub id: String,
    /// Its approval.
    pub approval: Approval,
    /// The call as the model made it, its provider id made unique within the reply (the id
    /// echoed back to the provider with the result).
    pub call: ToolCall,
    /// Set once the intent was journaled (`tool_started`); cleared when a human asks for an
    /// unknown outcome to be retried.
    pub started: Option<RiskClass>,
    /// Set once the call counted toward `max_tool_calls` and loop detection: its first start.
    /// A repeat of the same call (after a crash, or a human's retry) does not count again.
    pub counted: bool,
    /// Set once the call has a result for the model.
    pub resolved: bool,
    /// Set when the call may have acted but its outcome is not journaled (a crash, a timeout,
    /// a killed process): a human must settle it.
    pub outcome_unknown: bool,
    /// When its approval was requested (ms since the epoch).
    pub requested_at_ms: Option<u64>,
}

/// Why a run that is not executing stopped, beyond what its calls say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Hold {
    /// Nothing beyond its calls: it waits for their decisions, or for nothing at all.
    #[default]
    None,
    /// Stopped at a limit (paused, or escalated to a human) until a human raises or refuses it.
    Limit(LimitName),
    /// Parked because every model was unavailable; retried by itself with backoff.
    Park {
        /// When it parked (ms since the epoch).
        at_ms: u64,
    },
    /// A person stopped it (Ctrl-C, SIGTERM); it continues only when someone resumes it.
    Interrupted,
}

/// When a run should next be driven, as the fold sees it: the store keeps this with the run
/// and hands the run to a driver at that time, so every timer fires without anybody watching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// It has something to do now.
    Now,
    /// Nothing until then (an approval's expiry, a parked run's retry).
    At(u64),
    /// Nothing until a human acts (or ever, once it has ended).
    Never,
}

/// A human's request to stop the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CancelRequest {
    /// Who asked.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// Everything known about a run, rebuilt by folding its journal.
///
/// The bookkeeping that only the fold keeps consistent (active time, loop and repair
/// counters, parking) is private to core: read it through [`RunState::wall_ms`],
/// [`RunState::executions_of`], [`RunState::park_delay_ms`] and [`decide`](crate::decide()).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunState {
    /// Number of events folded; the expected sequence for the next append.
    pub(crate) seq: u64,
    /// Lifecycle status.
    pub(crate) status: RunStatus,
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
    pub(crate) invalid_streak: u32,
    /// Whether the current step's reply held a refused call.
    pub(crate) step_refused: bool,
    /// The last model failure not yet followed by a reply: message, and whether the models
    /// were only unavailable.
    pub(crate) model_failure: Option<(String, bool)>,
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
    /// A human refused to raise an escalated limit: why (the run fails when next driven).
    pub limit_rejected: Option<String>,
    /// The run's limits, as raised so far.
    pub limits: Limits,
    /// `max_tokens` of every model call.
    pub max_tokens: u32,
    /// Prices of the chain's models.
    pub prices: BTreeMap<String, Price>,
    /// Model calls made (requested), answered or not; a call that found every model
    /// unavailable does not count (a parked run's retries must not use up the budget).
    pub(crate) model_calls: u32,
    /// Tool calls executed (started).
    pub(crate) tool_calls: u32,
    /// Dollars spent on answered calls of known price.
    pub(crate) cost_usd: f64,
    /// Calls answered by a model without a known price: the cost is a lower bound.
    pub unpriced_calls: u32,
    /// When the run started, ms since the epoch.
    pub started_at_ms: u64,
    /// Active time accumulated before `active_since`, in ms.
    pub(crate) active_ms: u64,
    /// Start of the current active stretch, while running.
    pub(crate) active_since: Option<u64>,
    /// Executions per tool call (name and canonical arguments).
    pub(crate) call_counts: BTreeMap<String, u32>,
    /// Fingerprints of every (call, result) seen, to spot steps that bring nothing new.
    pub(crate) seen_results: BTreeSet<u64>,
    /// Whether the current step brought a result not seen before.
    pub(crate) step_new: bool,
    /// Whether the current step finished any tool call.
    pub(crate) step_had_results: bool,
    /// Consecutive completed steps whose tool results were all seen before.
    pub(crate) stale_streak: u32,
    /// The conversation: every message of the run, but a summary in place of the steps a
    /// compaction stands for ([`context::build`](crate::context::build) picks what to send).
    pub(crate) messages: Vec<Message>,
    /// The event that added each message (a summary: the first event it stands for).
    pub(crate) message_seqs: Vec<u64>,
    /// Steps the current summary stands for.
    pub compacted_steps: u32,
    /// Steps the fold left out of `messages` for good under `truncate`: turns no context can
    /// hold any more ([`context::beyond_reach`](crate::context::beyond_reach)). Every context
    /// says they are missing.
    pub forgotten_steps: u32,
    /// Messages forgotten so.
    pub(crate) forgotten_messages: u64,
    /// The length of `messages` at which the fold next looks for turns to forget (a pass reads
    /// the reachable turns, so passes are spaced to cost O(1) per message).
    pub(crate) forget_at: usize,
    /// Model calls answered so far.
    pub(crate) steps: u32,
    /// User turns so far: the input, then each `user_message`.
    pub turns: u32,
    /// When the current turn began (ms since the epoch): the start, or the latest
    /// `user_message`. Wall time counts from here.
    pub turn_started_at_ms: u64,
    /// Calls of the latest model reply, in order.
    pub(crate) calls: Vec<CallState>,
    /// Tokens used so far.
    pub(crate) usage: Usage,
    /// What the provider reported as the input of the last answered call, and how many
    /// messages that call's context held: the next context holds those and more, so the
    /// provider's own count bounds the next call's input from below, whatever a local
    /// estimate says (images, system tokens of the provider's own, tool formatting).
    pub last_call_input: Option<(u64, usize)>,
    /// The final answer, once completed.
    pub output: Option<String>,
    /// The failure, once failed; or the last model error.
    pub error: Option<String>,
    /// Why the run waits, while waiting.
    pub waiting_reason: Option<String>,
    /// Why the run stopped, beyond its calls, while it is not executing.
    pub hold: Hold,
    /// A limit reached with the `pause` action, until the pause that follows it.
    pub(crate) limit_pausing: Option<LimitName>,
    /// When the current outage's first park happened (cleared by the next reply).
    pub(crate) parked_since_ms: Option<u64>,
    /// Parks in the current outage.
    pub(crate) parks: u32,
    /// A parked run's first retry, in ms (doubling after each further park).
    pub park_retry_ms: u64,
    /// How every call's context is kept inside the model's window.
    pub context: crate::context::ContextPolicy,
    /// A human asked the run to stop.
    pub cancel: Option<CancelRequest>,
    /// The run this one was forked from, and at which event.
    pub forked_from: Option<crate::event::ForkedFrom>,
}

/// What the fold alone keeps consistent with the journal, read-only outside core: the
/// sequence and the status follow from the events, the counters and the spend add up what
/// they recorded, and the messages and calls are the context and the reply they rebuilt.
/// Nothing but [`RunState::apply`] changes them.
impl RunState {
    /// Number of events folded; the expected sequence for the next append.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Lifecycle status.
    pub fn status(&self) -> RunStatus {
        self.status
    }

    /// Model calls answered so far.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Model calls made (requested), answered or not, but for calls that found every model
    /// unavailable.
    pub fn model_calls(&self) -> u32 {
        self.model_calls
    }

    /// Tool calls executed (started).
    pub fn tool_calls(&self) -> u32 {
        self.tool_calls
    }

    /// Dollars spent on answered calls of known price.
    pub fn cost_usd(&self) -> f64 {
        self.cost_usd
    }

    /// Tokens used so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The conversation the next model call is built from: every message but the turns
    /// forgotten as out of reach ([`RunState::forgotten_steps`]).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Messages in the whole conversation, those forgotten included.
    pub fn conversation_len(&self) -> u64 {
        self.forgotten_messages + self.messages.len() as u64
    }

    /// Calls of the latest model reply, in order.
    pub fn calls(&self) -> &[CallState] {
        &self.calls
    }
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
            // A completed run is a conversation a person may continue.
            (_, Event::UserMessage { .. }) if self.status == RunStatus::Completed => {}
            _ if self.status.is_terminal() => return Err(FoldError::AfterEnd { seq, kind }),
            _ => {}
        }
        let at = At { seq, kind };
        // Every event is named here, so a new one does not compile until the fold decides
        // what it means for the run; each arm hands its fields to one concern's method.
        match event {
            Event::RunStarted(start) => self.start(start),
            // Model calls and what the resilience layers did during them.
            Event::ModelRequested { .. } => self.model_requested(),
            Event::ModelResponded {
                step,
                message,
                usage,
                cost_usd,
                ..
            } => self.respond(*step, message, usage, *cost_usd),
            Event::ModelFailed {
                error, unavailable, ..
            } => self.model_failed(error, *unavailable),
            Event::ModelSwitched { index, .. } => self.model_switched(*index),
            Event::ContextCompacted {
                from_seq,
                to_seq,
                summary,
                usage,
                cost_usd,
                ..
            } => self.compacted(*from_seq, *to_seq, summary, usage, *cost_usd),
            // Retries, open breakers and fallbacks inside one call change nothing `decide`
            // reads: the call's answer or failure does.
            Event::ModelAttemptFailed { .. }
            | Event::ModelCircuitOpen { .. }
            | Event::ModelFallback { .. } => {}
            // A tool call's life: refused, started, retried, finished, or cut off.
            Event::ToolRefused { call_id, error, .. } => self.tool_refused(call_id, error, at)?,
            Event::ToolStarted {
                call_id,
                name,
                args,
                risk,
                ..
            } => self.tool_started(call_id, name, args, *risk, at)?,
            Event::ToolFinished {
                call_id,
                ok,
                content,
                ..
            } => self.finish_call(call_id, *ok, content, at)?,
            // A failed attempt that will be retried: the call is still in flight.
            Event::ToolAttemptFailed { .. } => {}
            Event::ToolOutcomeUnknown { call_id, .. } => self.outcome_unknown(call_id, at)?,
            // What humans (and the timers that stand in for them) decide.
            Event::ApprovalRequested {
                call_id,
                expires_at_ms,
                at_ms,
                ..
            } => self.approval_requested(call_id, *expires_at_ms, *at_ms, at)?,
            Event::ApprovalDecided {
                call_id,
                approved,
                args,
                by,
                reason,
                ..
            } => self.approval_decided(call_id, *approved, args, by, reason.as_deref(), at)?,
            Event::ApprovalEscalated { call_id, .. } => self.approval_escalated(call_id, at)?,
            Event::OutcomeResolved {
                call_id,
                resolution,
                content,
                ..
            } => self.outcome_resolved(call_id, resolution, content.as_deref(), at)?,
            Event::LimitRaised { limit, value, .. } => self.limit_raised(*limit, *value),
            Event::LimitRejected {
                limit, by, reason, ..
            } => self.limit_refused(*limit, by, reason),
            Event::CancelRequested { by, reason, .. } => self.cancel_requested(by, reason),
            Event::ResumeRequested { .. } => self.resume_requested(),
            Event::UserMessage { text, at_ms, .. } => self.user_message(text, *at_ms, seq)?,
            // Limits reached, stops and restarts, and the end.
            Event::LimitReached { limit, action, .. } => self.limit_reached(*limit, *action),
            Event::RunWaiting { reason, at_ms } => self.waiting(reason, *at_ms),
            Event::RunPaused { reason, at_ms } => self.paused(reason, *at_ms),
            Event::RunResumed { at_ms } => self.resumed(*at_ms, seq),
            Event::RunCompleted { output } => self.completed(output),
            Event::RunFailed { error } => self.failed(error.clone()),
            Event::RunCancelled { by, reason, .. } => {
                self.failed(format!("cancelled by {by}: {reason}"));
            }
        }
        if let Some(status) = RunStatus::after(event) {
            self.status = status;
        }
        // Every message remembers the event that added it, so a compaction can find the
        // messages its range stands for.
        self.message_seqs.resize(self.messages.len(), seq);
        self.forget_unreachable();
        self.seq = seq;
        Ok(())
    }

    /// Under `truncate` with a bounded window, drops the oldest turns no context can hold any
    /// more, so the state (and its snapshot, and a resume) stops growing with the run. Every
    /// context built from what is left equals the one built from the whole conversation
    /// ([`context::build`](crate::context::build) leaves those turns out first, and counts
    /// them in its note). The first message kept after the head is a reply, so the head stays
    /// what it was.
    fn forget_unreachable(&mut self) {
        use crate::context::{self, Shape, Strategy};
        if self.context.strategy != Strategy::Truncate
            || self.context.max_context_tokens == u64::MAX
            || self.messages.len() < self.forget_at
        {
            return;
        }
        let budget = context::budget(&self.context, &self.tools);
        let shape = Shape::of(&self.messages, self.context.keep_last_turns);
        let mut gone =
            context::beyond_reach(&self.messages, &shape, budget, &context::message_bound);
        while gone > 0
            && !matches!(
                self.messages[shape.turns[gone].start],
                Message::Assistant(_)
            )
        {
            gone -= 1;
        }
        if gone > 0 {
            let range = shape.head..shape.turns[gone].start;
            let steps = self.messages[range.clone()]
                .iter()
                .filter(|m| matches!(m, Message::Assistant(_)))
                .count() as u32;
            self.messages.drain(range.clone());
            self.message_seqs.drain(range.clone());
            self.forgotten_steps = self.forgotten_steps.saturating_add(steps);
            self.forgotten_messages = self.forgotten_messages.saturating_add(range.len() as u64);
            if let Some((_, sent)) = &mut self.last_call_input {
                *sent = sent.saturating_sub(range.len());
            }
        }
        self.forget_at = self.messages.len() + (self.messages.len() / 2).max(16);
    }

    fn start(&mut self, start: &crate::event::RunStart) {
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
            park_retry_ms,
            forked_from,
            context,
        } = start;
        self.forked_from = forked_from.clone();
        self.context = *context;
        self.tags = tags.clone();
        self.approvals = approvals.clone();
        self.version = version.clone();
        self.version_label = version_label.clone();
        self.limits = limits.clone();
        self.max_tokens = *max_tokens;
        self.prices = prices.clone();
        self.started_at_ms = *at_ms;
        self.turn_started_at_ms = *at_ms;
        self.turns = 1;
        self.active_since = Some(*at_ms);
        self.agent = agent.clone();
        self.spec_path = spec_path.clone();
        self.input = input.clone();
        self.model = model.clone();
        self.models = std::iter::once(model.clone())
            .chain(fallbacks.iter().cloned())
            .collect();
        self.max_repairs = *max_repairs;
        self.park_retry_ms = *park_retry_ms;
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

    // Model calls.

    fn model_requested(&mut self) {
        self.model_calls = self.model_calls.saturating_add(1);
    }

    fn model_failed(&mut self, error: &str, unavailable: bool) {
        if unavailable {
            // No model took the call: it does not use up the call budget, or a parked run's
            // retries would end it.
            self.model_calls = self.model_calls.saturating_sub(1);
        }
        self.model_failure = Some((error.to_string(), unavailable));
    }

    /// Puts the summary in place of the messages events `from_seq..=to_seq` added (after the
    /// system prompt and the input, an earlier summary included); its usage and cost count.
    fn compacted(
        &mut self,
        from_seq: u64,
        to_seq: u64,
        summary: &str,
        usage: &Usage,
        cost_usd: Option<f64>,
    ) {
        self.add_usage(usage, cost_usd);
        let prefix = self
            .messages
            .iter()
            .position(|m| matches!(m, Message::User { .. }))
            .map_or(self.messages.len(), |i| i + 1);
        let seqs = self.message_seqs.get(prefix..).unwrap_or_default();
        let start = prefix + seqs.iter().take_while(|&&s| s < from_seq).count();
        let end = prefix + seqs.iter().take_while(|&&s| s <= to_seq).count();
        if start >= end {
            return;
        }
        let steps = self.messages[start..end]
            .iter()
            .filter(|m| matches!(m, Message::Assistant(_)))
            .count() as u32;
        // An earlier summary in the range is summarized again: its steps carry over.
        let earlier = if start == prefix && self.compacted_steps > 0 {
            self.compacted_steps
        } else {
            0
        };
        self.compacted_steps = earlier.saturating_add(steps);
        let note = crate::context::summary_note(self.compacted_steps, summary);
        self.messages.splice(start..end, [note]);
        self.message_seqs.splice(start..end, [from_seq]);
        // The next context does not repeat the last call's: the provider's count no longer
        // bounds it from below.
        self.last_call_input = None;
    }

    /// Counts an answered call's tokens and cost.
    fn add_usage(&mut self, usage: &Usage, cost_usd: Option<f64>) {
        match cost_usd {
            Some(cost) if cost.is_finite() && cost >= 0.0 => self.cost_usd += cost,
            Some(_) => {}
            None => self.unpriced_calls = self.unpriced_calls.saturating_add(1),
        }
        self.usage.input_tokens = self.usage.input_tokens.saturating_add(usage.input_tokens);
        self.usage.output_tokens = self.usage.output_tokens.saturating_add(usage.output_tokens);
        self.usage.cached_input_tokens = self
            .usage
            .cached_input_tokens
            .saturating_add(usage.cached_input_tokens);
    }

    fn model_switched(&mut self, index: usize) {
        self.chain_offset = index;
        self.invalid_streak = 0;
        self.step_refused = false;
    }

    fn respond(
        &mut self,
        step: u32,
        message: &AssistantMessage,
        usage: &Usage,
        cost_usd: Option<f64>,
    ) {
        // A call's id is its reply's place in the run (whatever the event's own numbering
        // says) and its place in the reply, so ids are unique by construction.
        let _ = step;
        let step = self.steps.saturating_add(1);
        self.steps = self.steps.saturating_add(1);
        self.add_usage(usage, cost_usd);
        self.stale_streak = if self.step_had_results && !self.step_new {
            self.stale_streak.saturating_add(1)
        } else {
            0
        };
        self.step_had_results = false;
        self.step_new = false;
        self.invalid_streak = if self.step_refused {
            self.invalid_streak.saturating_add(1)
        } else {
            0
        };
        self.step_refused = false;
        self.model_failure = None;
        self.parked_since_ms = None;
        self.parks = 0;
        self.error = None;
        self.last_call_input = Some((usage.input_tokens, self.messages.len()));
        let mut reply = message.clone();
        unique_echo_ids(step, &mut reply.tool_calls);
        self.calls = reply
            .tool_calls
            .iter()
            .enumerate()
            .map(|(index, call)| CallState {
                id: call_id(step, index),
                approval: Approval::None,
                call: call.clone(),
                started: None,
                counted: false,
                resolved: false,
                outcome_unknown: false,
                requested_at_ms: None,
            })
            .collect();
        self.messages.push(Message::Assistant(reply));
    }

    // A tool call's life.

    fn tool_refused(&mut self, call_id: &str, error: &str, at: At) -> Result<(), FoldError> {
        let call = self.call_mut(call_id, at)?;
        call.resolved = true;
        let echo = call.call.id.clone();
        self.step_refused = true;
        self.push_tool_result(echo, format!("{REFUSED_PREFIX}{error}"));
        Ok(())
    }

    fn tool_started(
        &mut self,
        call_id: &str,
        name: &str,
        args: &serde_json::Value,
        risk: RiskClass,
        at: At,
    ) -> Result<(), FoldError> {
        let call = self.call_mut(call_id, at)?;
        let first_start = !call.counted;
        call.started = Some(risk);
        call.counted = true;
        if first_start {
            self.tool_calls = self.tool_calls.saturating_add(1);
            let count = self.call_counts.entry(call_key(name, args)).or_default();
            *count = count.saturating_add(1);
        }
        Ok(())
    }

    /// A call's result reaches the model.
    fn finish_call(
        &mut self,
        call_id: &str,
        ok: bool,
        content: &str,
        at: At,
    ) -> Result<(), FoldError> {
        let call = self.call_mut(call_id, at)?;
        call.resolved = true;
        call.outcome_unknown = false;
        let fingerprint = fnv1a(&[
            call.call.name.as_bytes(),
            call.call.arguments.as_bytes(),
            content.as_bytes(),
        ]);
        let echo = call.call.id.clone();
        self.step_had_results = true;
        if self.seen_results.insert(fingerprint) {
            self.step_new = true;
        }
        let content = if ok {
            content.to_string()
        } else {
            format!("{FAILED_PREFIX}{content}")
        };
        self.push_tool_result(echo, content);
        Ok(())
    }

    fn outcome_unknown(&mut self, call_id: &str, at: At) -> Result<(), FoldError> {
        self.call_mut(call_id, at)?.outcome_unknown = true;
        Ok(())
    }

    // What humans (and the timers that stand in for them) decide.

    fn approval_requested(
        &mut self,
        call_id: &str,
        expires_at_ms: Option<u64>,
        at_ms: u64,
        at: At,
    ) -> Result<(), FoldError> {
        let call = self.call_mut(call_id, at)?;
        call.approval = Approval::Pending {
            expires_at_ms,
            escalated: false,
        };
        call.requested_at_ms = Some(at_ms);
        Ok(())
    }

    fn approval_decided(
        &mut self,
        call_id: &str,
        approved: bool,
        args: &Option<serde_json::Value>,
        by: &str,
        reason: Option<&str>,
        at: At,
    ) -> Result<(), FoldError> {
        let call = self.call_mut(call_id, at)?;
        if approved {
            call.approval = Approval::Approved { args: args.clone() };
        } else {
            call.approval = Approval::Rejected;
            call.resolved = true;
            let echo = call.call.id.clone();
            let why = reason.unwrap_or("no reason given");
            self.push_tool_result(
                echo,
                format!("{REJECTED_PREFIX}{by} rejected this call: {why}"),
            );
        }
        Ok(())
    }

    fn approval_escalated(&mut self, call_id: &str, at: At) -> Result<(), FoldError> {
        if let Approval::Pending { escalated, .. } = &mut self.call_mut(call_id, at)?.approval {
            *escalated = true;
        }
        Ok(())
    }

    fn outcome_resolved(
        &mut self,
        call_id: &str,
        resolution: &str,
        content: Option<&str>,
        at: At,
    ) -> Result<(), FoldError> {
        let call = self.call_mut(call_id, at)?;
        match (resolution, content) {
            ("retry", _) => {
                // Run it again, with the same idempotency key; it was approved already.
                call.outcome_unknown = false;
                call.started = None;
            }
            (outcome, Some(content)) => {
                let ok = outcome == "succeeded";
                self.finish_call(call_id, ok, content, at)?;
            }
            // Older journals follow the resolution with a `tool_finished`.
            (_, None) => {}
        }
        Ok(())
    }

    fn limit_raised(&mut self, limit: LimitName, value: f64) {
        if self.limit_request == Some(limit) {
            self.limit_request = None;
        }
        if self.hold == Hold::Limit(limit) {
            self.hold = Hold::None;
        }
        self.limits.values.insert(limit, value);
        if limit == LimitName::MaxRepeats {
            // A human looked at the loop and let it go on: count afresh.
            self.call_counts.clear();
            self.stale_streak = 0;
        }
        if limit == LimitName::MaxPark {
            // A human gave the outage more time: measure it afresh.
            self.parked_since_ms = None;
        }
    }

    fn limit_refused(&mut self, limit: LimitName, by: &str, reason: &str) {
        self.limit_request = None;
        if matches!(self.hold, Hold::Limit(_)) {
            self.hold = Hold::None;
        }
        self.limit_rejected = Some(format!(
            "limit request for {limit} rejected by {by}: {reason}"
        ));
    }

    fn cancel_requested(&mut self, by: &str, reason: &str) {
        self.cancel = Some(CancelRequest {
            by: by.to_string(),
            reason: reason.to_string(),
        });
    }

    fn resume_requested(&mut self) {
        // A person's stop, or a park, ends here; a limit still needs raising.
        if matches!(self.hold, Hold::Interrupted | Hold::Park { .. }) {
            self.hold = Hold::None;
        }
    }

    /// A new user turn: the run runs again, its clock restarting at the message (wall time is
    /// measured per turn, since a conversation may go on for days), and the model answers it.
    fn user_message(&mut self, text: &str, at_ms: u64, seq: u64) -> Result<(), FoldError> {
        if let Some(call) = self.calls.iter().find(|c| !c.resolved) {
            return Err(FoldError::MessageMidCall {
                seq,
                call_id: call.id.clone(),
            });
        }
        self.messages.push(Message::User {
            content: text.to_string(),
        });
        self.turns = self.turns.saturating_add(1);
        self.output = None;
        self.error = None;
        self.waiting_reason = None;
        self.hold = Hold::None;
        self.limit_pausing = None;
        self.active_ms = 0;
        self.active_since = Some(at_ms);
        self.turn_started_at_ms = at_ms;
        Ok(())
    }

    // Limits reached, stops and restarts, and the end.

    fn limit_reached(&mut self, limit: LimitName, action: crate::limits::LimitAction) {
        match action {
            crate::limits::LimitAction::Escalate => {
                self.limit_request = Some(limit);
                self.hold = Hold::Limit(limit);
            }
            crate::limits::LimitAction::Pause => self.limit_pausing = Some(limit),
            crate::limits::LimitAction::Fail => {}
        }
    }

    fn waiting(&mut self, reason: &str, at_ms: u64) {
        self.waiting_reason = Some(reason.to_string());
        self.stop_clock(at_ms);
    }

    fn paused(&mut self, reason: &str, at_ms: u64) {
        self.waiting_reason = Some(reason.to_string());
        self.hold = if let Some(limit) = self.limit_pausing.take() {
            Hold::Limit(limit)
        } else if self.model_failure.as_ref().is_some_and(|(_, u)| *u) {
            self.parks = self.parks.saturating_add(1);
            self.parked_since_ms.get_or_insert(at_ms);
            Hold::Park { at_ms }
        } else {
            Hold::Interrupted
        };
        self.stop_clock(at_ms);
    }

    fn resumed(&mut self, at_ms: u64, seq: u64) {
        self.waiting_reason = None;
        self.model_failure = None;
        self.hold = Hold::None;
        // A fork's first drive, right after the copied events, starts the fork's clock: the
        // time between the original's last copied event and the fork belongs to no run.
        if self.forked_from.as_ref().is_some_and(|f| f.seq + 1 == seq) {
            self.active_since = Some(at_ms);
            self.turn_started_at_ms = self.turn_started_at_ms.max(at_ms);
            return;
        }
        // A resume after a crash (still "active") counts the gap: conservative.
        self.active_ms = self.active_ms.saturating_add(
            self.active_since
                .take()
                .map_or(0, |since| at_ms.saturating_sub(since)),
        );
        self.active_since = Some(at_ms);
    }

    fn completed(&mut self, output: &str) {
        self.output = Some(output.to_string());
        self.limit_request = None;
    }

    /// Failed or cancelled: `error` says why.
    fn failed(&mut self, error: String) {
        self.error = Some(error);
        self.limit_request = None;
    }

    fn stop_clock(&mut self, at_ms: u64) {
        if self.limits.count_waiting {
            return;
        }
        if let Some(since) = self.active_since.take() {
            self.active_ms = self.active_ms.saturating_add(at_ms.saturating_sub(since));
        }
    }

    /// Active time of the current turn in ms at `now_ms` (all time since the turn began when
    /// waiting counts).
    pub fn wall_ms(&self, now_ms: u64) -> u64 {
        if self.limits.count_waiting {
            return now_ms.saturating_sub(self.turn_started_at_ms);
        }
        self.active_ms.saturating_add(
            self.active_since
                .map_or(0, |since| now_ms.saturating_sub(since)),
        )
    }

    /// How many times this exact call (name and canonical arguments) has run.
    pub fn executions_of(&self, name: &str, args: &serde_json::Value) -> u32 {
        self.call_counts
            .get(&call_key(name, args))
            .copied()
            .unwrap_or(0)
    }

    /// When the run should next be driven: now while it executes or once a human has acted,
    /// at a timer (an approval's expiry, a parked run's retry), or never until a human acts.
    pub fn wake(&self) -> Wake {
        if self.status.is_terminal() {
            return Wake::Never;
        }
        if self.cancel.is_some() || self.limit_rejected.is_some() {
            return Wake::Now;
        }
        match self.status {
            RunStatus::Running => return Wake::Now,
            RunStatus::Waiting | RunStatus::Paused => {}
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled => {
                return Wake::Never;
            }
        }
        match self.hold {
            Hold::Interrupted | Hold::Limit(_) => return Wake::Never,
            Hold::None | Hold::Park { .. } => {}
        }
        // The first call without a result is the one `decide` would look at.
        if let Some(call) = self.calls.iter().find(|c| !c.resolved) {
            return match (&call.approval, call.outcome_unknown, call.started) {
                (_, true, _) => Wake::Never,
                (_, false, Some(_)) => Wake::Now,
                (
                    Approval::Pending {
                        expires_at_ms,
                        escalated,
                    },
                    false,
                    None,
                ) => match (expires_at_ms, escalated) {
                    (Some(at), false) => Wake::At(*at),
                    _ => Wake::Never,
                },
                (Approval::None | Approval::Approved { .. } | Approval::Rejected, false, None) => {
                    Wake::Now
                }
            };
        }
        match self.hold {
            Hold::Park { at_ms } => Wake::At(at_ms.saturating_add(self.park_delay_ms())),
            _ => Wake::Now,
        }
    }

    /// How long a parked run waits before its next retry: the first delay, doubled per park
    /// after the first, up to [`PARK_RETRY_CEILING_MS`](crate::event::PARK_RETRY_CEILING_MS)
    /// (or the first delay, if that is longer).
    pub fn park_delay_ms(&self) -> u64 {
        let first = self.park_retry_ms.max(1);
        let ceiling = crate::event::PARK_RETRY_CEILING_MS.max(first);
        let doublings = self.parks.saturating_sub(1).min(32);
        first.saturating_mul(1u64 << doublings).min(ceiling)
    }

    /// The event that added message `index` of [`RunState::messages`] (for a summary, the
    /// first event it stands for).
    pub fn message_seq(&self, index: usize) -> Option<u64> {
        self.message_seqs.get(index).copied()
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

    /// A call of the latest reply by its journal id (`STEP.INDEX`).
    pub fn call(&self, call_id: &str) -> Option<&CallState> {
        self.calls.iter().find(|c| c.id == call_id)
    }

    /// The call an event names: by its journal id, or, in journals written before call
    /// identity, by the provider's id.
    fn call_mut(&mut self, call_id: &str, at: At) -> Result<&mut CallState, FoldError> {
        let index = self
            .calls
            .iter()
            .position(|c| c.id == call_id)
            .or_else(|| self.calls.iter().position(|c| c.call.id == call_id));
        match index {
            Some(index) => Ok(&mut self.calls[index]),
            None => Err(FoldError::UnknownCall {
                seq: at.seq,
                kind: at.kind,
                call_id: call_id.to_string(),
            }),
        }
    }

    fn push_tool_result(&mut self, echo_id: String, content: String) {
        self.messages.push(Message::Tool {
            call_id: echo_id,
            content,
        });
    }
}

/// Where in the journal an event sits, for fold errors.
#[derive(Clone, Copy)]
struct At {
    seq: u64,
    kind: &'static str,
}

/// Makes the provider ids of one reply's calls unique, so each result goes back to the
/// provider under an id of its own: an empty id, or one an earlier call of the reply already
/// has, becomes `chassis_STEP_INDEX` (with a suffix in the unlikely case that is taken too).
pub fn unique_echo_ids(step: u32, calls: &mut [ToolCall]) {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let taken: BTreeSet<String> = calls.iter().map(|c| c.id.clone()).collect();
    for (index, call) in calls.iter_mut().enumerate() {
        if call.id.is_empty() || seen.contains(&call.id) {
            let base = format!("chassis_{step}_{index}");
            let mut id = base.clone();
            let mut n = 1;
            while taken.contains(&id) || seen.contains(&id) {
                id = format!("{base}_{n}");
                n += 1;
            }
            call.id = id;
        }
        seen.insert(call.id.clone());
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
