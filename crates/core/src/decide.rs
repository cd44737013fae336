//! The decision function: given a run's state, what happens next.

use crate::approvals::{OnTimeout, Verdict};
use crate::limits::{LimitAction, LimitName, price_of};
use crate::message::ToolCall;
use crate::state::Approval;
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

/// The next thing the engine must do for a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Send the context to the model.
    CallModel,
    /// Validate and (if valid) execute this call of the latest reply.
    CallTool(ToolCall),
    /// This call was started but never finished, and repeating it could do harm twice:
    /// journal `tool_outcome_unknown` and wait for a human.
    OutcomeUnknown(ToolCall),
    /// Every model is unavailable: park the run until someone resumes it.
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
    RequestApproval(ToolCall),
    /// The policy denies this call: refuse it and tell the model.
    Deny(ToolCall),
    /// Nobody decided this call's approval in time: apply `on_timeout`.
    ApprovalTimedOut(ToolCall, OnTimeout),
    /// Stop and wait for a human.
    AwaitHuman {
        /// What the human must look at.
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
        RunStatus::Completed | RunStatus::Failed | RunStatus::Waiting | RunStatus::Paused => {
            return Decision::Idle;
        }
        RunStatus::Running => {}
    }
    for call in &state.calls {
        if call.resolved {
            continue;
        }
        if call.outcome_unknown {
            return Decision::AwaitHuman {
                reason: format!(
                    "outcome of call {} ({}) is unknown: the process stopped while it ran",
                    call.call.id, call.call.name
                ),
            };
        }
        return match call.started {
            Some(risk) if !may_repeat(risk) => Decision::OutcomeUnknown(call.call.clone()),
            // An interrupted call that may be repeated was counted when it first started.
            Some(_) => Decision::CallTool(call.call.clone()),
            None => match tool_limit(state, &call.call, inputs) {
                Some(hit) => Decision::Limit(hit),
                None => approval(state, call, inputs),
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
    match state.last_reply() {
        Some(reply) if reply.tool_calls.is_empty() => Decision::Finish {
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

/// Whether a call interrupted mid-flight may simply be made again.
fn may_repeat(risk: RiskClass) -> bool {
    !matches!(risk, RiskClass::Irreversible)
}

/// The first limit a model call would cross at its worst case: the context about to be sent,
/// plus `max_tokens` of output, priced.
pub fn model_limit(state: &RunState, inputs: &Inputs) -> Option<LimitHit> {
    let input = inputs.next_input_tokens as f64;
    let output = f64::from(state.max_tokens);
    let used_in = state.usage.input_tokens as f64;
    let used_out = state.usage.output_tokens as f64;
    let model = state
        .models
        .get(state.chain_offset)
        .map_or("", String::as_str);
    // Without a known price the call's cost is unknown; `unknown_price = "fail"` refused the
    // model when the run started, so here it only cannot add to the check.
    let call_cost = price_of(model, &state.prices).map_or(0.0, |p| {
        p.cost(inputs.next_input_tokens, 0, u64::from(state.max_tokens))
    });
    let checks = [
        (LimitName::MaxSteps, f64::from(state.steps), 1.0),
        (LimitName::MaxModelCalls, f64::from(state.model_calls), 1.0),
        (LimitName::MaxInputTokens, used_in, input),
        (LimitName::MaxOutputTokens, used_out, output),
        (
            LimitName::MaxTotalTokens,
            used_in + used_out,
            input + output,
        ),
        (LimitName::MaxCostUsd, state.cost_usd, call_cost),
    ];
    first_crossed(state, &checks).or_else(|| wall_time(state, inputs))
}

/// The first limit a tool call would cross: the count of tool calls, a repeated identical
/// call, a run of steps that bring nothing new, or the wall time.
pub fn tool_limit(state: &RunState, call: &ToolCall, inputs: &Inputs) -> Option<LimitHit> {
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

/// What the approval policy makes of a call that passed the limits.
fn approval(state: &RunState, call: &crate::state::CallState, inputs: &Inputs) -> Decision {
    let tool_call = call.call.clone();
    let (Some(def), Ok(args)) = (
        state.tool(&tool_call.name),
        serde_json::from_str::<serde_json::Value>(&tool_call.arguments),
    ) else {
        // Unknown tools and unparsable arguments are refused by the engine's validation.
        return Decision::CallTool(tool_call);
    };
    match state.approvals.verdict(def, &args) {
        Verdict::Auto => Decision::CallTool(tool_call),
        Verdict::Deny => Decision::Deny(tool_call),
        Verdict::Require => match &call.approval {
            Approval::None => Decision::RequestApproval(tool_call),
            Approval::Approved { .. } => Decision::CallTool(tool_call),
            Approval::Pending {
                expires_at_ms,
                escalated,
            } => match expires_at_ms {
                Some(at) if inputs.now_ms >= *at && !escalated => {
                    Decision::ApprovalTimedOut(tool_call, state.approvals.on_timeout)
                }
                _ => Decision::AwaitHuman {
                    reason: format!(
                        "approval required: {} ({}) call {}",
                        tool_call.name, def.risk, tool_call.id
                    ),
                },
            },
            // A rejected call is resolved; it never comes back here.
            Approval::Rejected => Decision::Idle,
        },
    }
}
