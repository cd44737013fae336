//! The decision function: given a run's state, what happens next.
//!
//! A decision about a tool call carries a complete [`ToolAction`]: the call's journal id, the
//! arguments that run (a human's edit or the model's), the idempotency key, whether its intent
//! must be durable before it runs, and the events to journal before and after. The engine only
//! executes it, so the mapping from a reply to journaled calls lives here, in one place, and
//! the property tests drive exactly this mapping.

use crate::approvals::{OnTimeout, Verdict};
use crate::event::Event;
use crate::limits::{LimitAction, LimitName, price_of};
use crate::state::{Approval, CallState, Hold};
use crate::state::{RunState, RunStatus};
use crate::tool::RiskClass;

/// What `decide` needs from outside the journal: the time, and the size of the next context.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Inputs {
    /// Now, in ms since the epoch.
    pub now_ms: u64,
    /// Input tokens of the context the next model call would send (an upper bound is safe).
    pub next_input_tokens: u64,
}

/// A call that would cross a limit, with the figures at that moment.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitHit {
    /// The limit.
    pub limit: LimitName,
    /// Its value.
    pub value: f64,
    /// Used so far.
    pub used: f64,
    /// Used after the call, at its worst case.
    pub projected: f64,
    /// What to do.
    pub action: LimitAction,
}

/// One tool call to act on, complete: the engine validates the arguments against the tool's
/// schema, executes, and journals the events this builds.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolAction {
    /// The journal's id of the call, `STEP.INDEX`.
    pub call_id: String,
    /// The provider's id of the call (made unique within its reply), echoed back with its
    /// result; informational only.
    pub echo_id: String,
    /// Tool name as the model gave it.
    pub name: String,
    /// The arguments that run: a human's edit when the call was approved with one, else the
    /// model's, as JSON text (maybe invalid: validation refuses it).
    pub arguments: String,
    /// Whether `arguments` are a human's edit.
    pub edited: bool,
    /// The tool's risk class, from the definitions the run started with (`None`: no such
    /// tool; the call is refused).
    pub risk: Option<RiskClass>,
    /// Attempts in all if the tool fails (retryable tools only; otherwise 1).
    pub attempts: u32,
    /// The call was started before and interrupted; it may be repeated (read-only or
    /// declared idempotent), with the same idempotency key.
    pub repeat: bool,
}

impl ToolAction {
    fn of(state: &RunState, call: &CallState) -> ToolAction {
        let def = state.tool(&call.call.name);
        let edited = match &call.approval {
            Approval::Approved { args: Some(args) } => Some(args.to_string()),
            _ => None,
        };
        ToolAction {
            call_id: call.id.clone(),
            echo_id: call.call.id.clone(),
            name: call.call.name.clone(),
            edited: edited.is_some(),
            arguments: edited.unwrap_or_else(|| call.call.arguments.clone()),
            risk: def.map(|d| d.risk),
            attempts: def.map_or(1, |d| {
                if d.retryable() {
                    d.max_attempts.max(1)
                } else {
                    1
                }
            }),
            repeat: call.started.is_some(),
        }
    }

    /// The key handed to the tool so that a repeated delivery can be recognized: the run and
    /// the call's place in it, the same in every process and after every resume.
    pub fn idempotency_key(&self, run_id: &str) -> String {
        format!("{run_id}/{}", self.call_id)
    }

    /// Whether the call's intent must be durable before it runs: everything but a read-only
    /// call (a read can simply be made again after a crash).
    pub fn flush_first(&self) -> bool {
        self.risk != Some(RiskClass::ReadOnly)
    }

    /// The intent, journaled before the call runs, with the validated arguments.
    pub fn started(&self, run_id: &str, args: serde_json::Value) -> Event {
        Event::ToolStarted {
            call_id: self.call_id.clone(),
            name: self.name.clone(),
            args,
            risk: self.risk.unwrap_or(RiskClass::Irreversible),
            idempotency_key: self.idempotency_key(run_id),
        }
    }

    /// The call is refused before it runs; `error` goes back to the model.
    pub fn refused(&self, error: impl Into<String>) -> Event {
        Event::ToolRefused {
            call_id: self.call_id.clone(),
            name: self.name.clone(),
            error: error.into(),
        }
    }

    /// The tool answered: its output, or the error it reported.
    pub fn finished(&self, ok: bool, content: impl Into<String>, latency_ms: u64) -> Event {
        Event::ToolFinished {
            call_id: self.call_id.clone(),
            ok,
            content: content.into(),
            latency_ms,
        }
    }

    /// One attempt failed and another follows after `delay_ms`.
    pub fn attempt_failed(&self, attempt: u32, error: impl Into<String>, delay_ms: u64) -> Event {
        Event::ToolAttemptFailed {
            call_id: self.call_id.clone(),
            attempt,
            error: error.into(),
            delay_ms,
        }
    }

    /// The call may have acted but its outcome is not known (interrupted, timed out, killed).
    pub fn outcome_unknown(&self) -> Event {
        Event::ToolOutcomeUnknown {
            call_id: self.call_id.clone(),
            name: self.name.clone(),
        }
    }

    /// What to journal when the call was cut off while it may have been acting (it timed out,
    /// its process was killed, the run was interrupted): a read-only call simply failed (it
    /// can be made again); any other call's outcome is unknown and waits for a human, never
    /// a plain failure that invites the model to call it again.
    pub fn cut_off(&self, error: impl Into<String>, latency_ms: u64) -> Event {
        if self.risk == Some(RiskClass::ReadOnly) {
            self.finished(false, error, latency_ms)
        } else {
            self.outcome_unknown()
        }
    }
}

/// The next thing the engine must do for a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Send the context to the model.
    CallModel,
    /// Validate and (if valid) execute this call of the latest reply.
    CallTool(ToolAction),
    /// This call was started but never finished, and repeating it could do harm twice:
    /// journal `tool_outcome_unknown` and wait for a human.
    OutcomeUnknown(ToolAction),
    /// Every model is unavailable: park the run; it is retried with backoff.
    Pause {
        /// Why.
        reason: String,
    },
    /// Give up on the current model for this run and use the chain's next one.
    SwitchModel {
        /// Index in the chain.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The next call would cross a limit: journal it and take the configured action.
    Limit(LimitHit),
    /// The policy requires a human's approval before this call: request it and wait.
    RequestApproval(ToolAction),
    /// The policy denies this call: refuse it and tell the model.
    Deny(ToolAction),
    /// Nobody decided this call's approval in time: apply `on_timeout`.
    ApprovalTimedOut(ToolAction, OnTimeout),
    /// Stop and wait for a human.
    AwaitHuman {
        /// What the human must look at.
        reason: String,
    },
    /// A human asked the run to stop, and nothing is in flight: end it as cancelled.
    Cancel {
        /// Who asked.
        by: String,
        /// Why.
        reason: String,
    },
    /// Complete the run with this answer.
    Finish {
        /// The final answer.
        output: String,
    },
    /// End the run as failed.
    Fail {
        /// Why.
        error: String,
    },
    /// The run has ended (or waits); nothing to do until something outside changes it.
    Idle,
}

/// Says what happens next; pure, so replay after a crash decides exactly as the live run did.
#[must_use]
pub fn decide(state: &RunState, inputs: &Inputs) -> Decision {
    match state.status {
        RunStatus::Completed
        | RunStatus::Failed
        | RunStatus::Cancelled
        | RunStatus::Waiting
        | RunStatus::Paused => {
            return Decision::Idle;
        }
        RunStatus::Running => {}
    }
    if let Some(cancel) = &state.cancel {
        return cancelled(state, cancel);
    }
    if let Some(error) = &state.limit_rejected {
        return Decision::Fail {
            error: error.clone(),
        };
    }
    for call in &state.calls {
        if call.resolved {
            continue;
        }
        if call.outcome_unknown {
            return Decision::AwaitHuman {
                reason: format!(
                    "outcome of call {} ({}) is unknown: it may have acted, but its result was never recorded",
                    call.id, call.call.name
                ),
            };
        }
        let action = ToolAction::of(state, call);
        return match call.started {
            Some(_) if !may_repeat(state, call) => Decision::OutcomeUnknown(action),
            // An interrupted call that may be repeated was counted when it first started.
            Some(_) => Decision::CallTool(action),
            None => match tool_limit(state, &action, inputs) {
                Some(hit) => Decision::Limit(hit),
                None => approval(state, call, action, inputs),
            },
        };
    }
    if let Some((error, unavailable)) = &state.model_failure {
        return if *unavailable {
            Decision::Pause {
                reason: format!("every model is unavailable: {error}"),
            }
        } else {
            Decision::Fail {
                error: error.clone(),
            }
        };
    }
    let streak = state.invalid_streak + u32::from(state.step_refused);
    // A user turn after the last reply (a conversation continued) waits for the model's answer.
    let turn_open = matches!(state.messages.last(), Some(crate::Message::User { .. }));
    match state.last_reply() {
        Some(reply) if reply.tool_calls.is_empty() && !turn_open => Decision::Finish {
            output: reply.content.clone().unwrap_or_default(),
        },
        _ if streak > state.max_repairs => {
            let current = state
                .models
                .get(state.chain_offset)
                .cloned()
                .unwrap_or_default();
            let reason = format!(
                "{current} made invalid tool calls {streak} step(s) in a row (max_repairs = {})",
                state.max_repairs
            );
            if state.chain_offset + 1 < state.models.len() {
                Decision::SwitchModel {
                    index: state.chain_offset + 1,
                    reason,
                }
            } else {
                Decision::Fail { error: reason }
            }
        }
        _ => match model_limit(state, inputs) {
            Some(hit) => Decision::Limit(hit),
            None => Decision::CallModel,
        },
    }
}

/// A cancel waits for nothing in flight: a call started and not finished that may not be
/// repeated has its outcome journaled (as unknown) first; then the run ends.
fn cancelled(state: &RunState, cancel: &crate::state::CancelRequest) -> Decision {
    let interrupted = state.calls.iter().find(|c| {
        !c.resolved && !c.outcome_unknown && c.started.is_some() && !may_repeat(state, c)
    });
    match interrupted {
        Some(call) => Decision::OutcomeUnknown(ToolAction::of(state, call)),
        None => Decision::Cancel {
            by: cancel.by.clone(),
            reason: cancel.reason.clone(),
        },
    }
}

/// Whether a call interrupted mid-flight may simply be made again: a read, or a tool declared
/// idempotent (it gets the same idempotency key).
fn may_repeat(state: &RunState, call: &CallState) -> bool {
    call.started == Some(RiskClass::ReadOnly)
        || state.tool(&call.call.name).is_some_and(|d| d.idempotent)
}

/// The first limit a model call would cross at its worst case: the context about to be sent,
/// plus `max_tokens` of output, priced; or, for a parked run, how long it has been parked.
pub fn model_limit(state: &RunState, inputs: &Inputs) -> Option<LimitHit> {
    let output = u64::from(state.max_tokens);
    // Without a known price the call's cost is unknown; `unknown_price = "fail"` refused the
    // model when the run started, so here it only cannot add to the check.
    let cost = price_now(state).map_or(0.0, |p| p.cost(inputs.next_input_tokens, 0, output));
    let [input, output, total, cost] = spend(state, inputs.next_input_tokens, output, cost);
    let checks = [
        (LimitName::MaxSteps, f64::from(state.steps), 1.0),
        (LimitName::MaxModelCalls, f64::from(state.model_calls), 1.0),
        input,
        output,
        total,
        cost,
    ];
    first_crossed(state, &checks)
        .or_else(|| parked_too_long(state, inputs))
        .or_else(|| wall_time(state, inputs))
}

/// The first limit a summarization (`[context] strategy = "summarize"`) would cross at its
/// worst case, with the call it is made for: the summary's request (`input_tokens`) and its
/// `max_output` tokens, then that call at its worst (a full `max_context_tokens` context and
/// `max_tokens` of output), priced like the run's current model. A summary the run cannot
/// afford together with that call is not made: its tokens would be spent for nothing. Steps
/// and model calls were checked for the call itself; a summary is neither.
pub fn summary_limit(state: &RunState, input_tokens: u64, max_output: u32) -> Option<LimitHit> {
    let next_input = state.context.max_context_tokens;
    let next_output = u64::from(state.max_tokens);
    let cost = price_now(state).map_or(0.0, |p| {
        p.cost(input_tokens, 0, u64::from(max_output)) + p.cost(next_input, 0, next_output)
    });
    let checks = spend(
        state,
        input_tokens.saturating_add(next_input),
        u64::from(max_output) + next_output,
        cost,
    );
    first_crossed(state, &checks)
}

/// The price of the model the run calls now, if known.
fn price_now(state: &RunState) -> Option<crate::limits::Price> {
    let model = state
        .models
        .get(state.chain_offset)
        .map_or("", String::as_str);
    price_of(model, &state.prices)
}

/// The token and cost checks of calls taking `input` and `output` tokens for `cost` dollars:
/// (limit, used so far, what the calls add).
fn spend(state: &RunState, input: u64, output: u64, cost: f64) -> [(LimitName, f64, f64); 4] {
    let (input, output) = (input as f64, output as f64);
    let used_in = state.usage.input_tokens as f64;
    let used_out = state.usage.output_tokens as f64;
    [
        (LimitName::MaxInputTokens, used_in, input),
        (LimitName::MaxOutputTokens, used_out, output),
        (
            LimitName::MaxTotalTokens,
            used_in + used_out,
            input + output,
        ),
        (LimitName::MaxCostUsd, state.cost_usd, cost),
    ]
}

/// The first limit a tool call would cross: the count of tool calls, a repeated identical
/// call, a run of steps that bring nothing new, or the wall time.
pub fn tool_limit(state: &RunState, call: &ToolAction, inputs: &Inputs) -> Option<LimitHit> {
    let repeats = match serde_json::from_str::<serde_json::Value>(&call.arguments) {
        Ok(args) => f64::from(state.executions_of(&call.name, &args)),
        Err(_) => 0.0,
    };
    let stale =
        f64::from(state.stale_streak + u32::from(state.step_had_results && !state.step_new));
    let checks = [
        (LimitName::MaxToolCalls, f64::from(state.tool_calls), 1.0),
        (LimitName::MaxRepeats, repeats.max(stale), 1.0),
    ];
    first_crossed(state, &checks).or_else(|| wall_time(state, inputs))
}

fn first_crossed(state: &RunState, checks: &[(LimitName, f64, f64)]) -> Option<LimitHit> {
    checks.iter().find_map(|&(limit, used, call)| {
        let value = state.limits.get(limit)?;
        let projected = used + call;
        (projected > value + f64::EPSILON * value.abs().max(1.0)).then(|| LimitHit {
            limit,
            value,
            used,
            projected,
            action: state.limits.action(limit),
        })
    })
}

fn wall_time(state: &RunState, inputs: &Inputs) -> Option<LimitHit> {
    let value = state.limits.get(LimitName::MaxWallTime)?;
    let used = state.wall_ms(inputs.now_ms) as f64;
    (used >= value).then(|| LimitHit {
        limit: LimitName::MaxWallTime,
        value,
        used,
        projected: used,
        action: state.limits.action(LimitName::MaxWallTime),
    })
}

/// A parked run retried after `max_park` has passed since its outage began.
fn parked_too_long(state: &RunState, inputs: &Inputs) -> Option<LimitHit> {
    let value = state.limits.get(LimitName::MaxPark)?;
    let since = state.parked_since_ms?;
    let used = inputs.now_ms.saturating_sub(since) as f64;
    (used >= value).then(|| LimitHit {
        limit: LimitName::MaxPark,
        value,
        used,
        projected: used,
        action: state.limits.action(LimitName::MaxPark),
    })
}

/// What the approval policy makes of a call that passed the limits.
fn approval(state: &RunState, call: &CallState, action: ToolAction, inputs: &Inputs) -> Decision {
    let (Some(def), Ok(args)) = (
        state.tool(&call.call.name),
        serde_json::from_str::<serde_json::Value>(&call.call.arguments),
    ) else {
        // Unknown tools and unparsable arguments are refused by the engine's validation.
        return Decision::CallTool(action);
    };
    match state.approvals.verdict(def, &args) {
        Verdict::Auto => Decision::CallTool(action),
        Verdict::Deny => Decision::Deny(action),
        Verdict::Require => match &call.approval {
            Approval::None => Decision::RequestApproval(action),
            Approval::Approved { .. } => Decision::CallTool(action),
            Approval::Pending {
                expires_at_ms,
                escalated,
            } => match expires_at_ms {
                Some(at) if inputs.now_ms >= *at && !escalated => {
                    Decision::ApprovalTimedOut(action, state.approvals.on_timeout)
                }
                _ => Decision::AwaitHuman {
                    reason: format!(
                        "approval required: {} ({}) call {}",
                        call.call.name, def.risk, call.id
                    ),
                },
            },
            // A rejected call is resolved; it never comes back here.
            Approval::Rejected => Decision::Idle,
        },
    }
}

/// Whether the run, though stopped, holds nothing a human must act on: once resumed, it
/// would go on by itself.
pub fn ready_to_continue(state: &RunState) -> bool {
    matches!(state.status, RunStatus::Waiting | RunStatus::Paused)
        && matches!(state.hold, Hold::None)
        && state.wake() == crate::state::Wake::Now
}
