//! The decision function: given a run's state, what happens next.

use crate::message::ToolCall;
use crate::state::{RunState, RunStatus};
use crate::tool::RiskClass;

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
pub fn decide(state: &RunState) -> Decision {
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
            _ => Decision::CallTool(call.call.clone()),
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
        _ if state.steps >= state.max_steps => Decision::Fail {
            error: format!(
                "max_steps reached: {} model calls made, no final answer",
                state.steps
            ),
        },
        _ => Decision::CallModel,
    }
}

/// Whether a call interrupted mid-flight may simply be made again.
fn may_repeat(risk: RiskClass) -> bool {
    !matches!(risk, RiskClass::Irreversible)
}
