//! The human side of a run: approvals, rejections, settling unknown outcomes, the inbox.
//!
//! Decisions are appended to the run's journal with the expected sequence, from any process,
//! days later; the run is then woken so `resume` or a worker continues it. Who decided, when,
//! and their note are journaled: the audit trail.

use chassis_core::approvals::OnTimeout;
use chassis_core::state::Approval;
use chassis_core::{Event, Message, RunState, RunStatus, ToolCall};
use chassis_store::ListFilter;

use crate::{Engine, Error, now_ms};

/// How many characters of each recent message an approval request shows the human.
const CONTEXT_CHARS: usize = 600;

/// How many recent messages it shows.
const CONTEXT_MESSAGES: usize = 4;

/// How a human settles a call whose outcome is unknown.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// It did happen; `result` (if given) is what the model sees as its output.
    Succeeded {
        /// The call's result, as JSON text or plain text.
        result: Option<String>,
    },
    /// It did not happen; the model sees `reason`.
    Failed {
        /// Why.
        reason: Option<String>,
    },
    /// Run it again, with the same idempotency key.
    Retry,
}

/// One thing waiting for a human.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct InboxItem {
    /// The run.
    pub run_id: String,
    /// Its agent.
    pub agent: String,
    /// `approval`, `outcome_unknown` or `limit`.
    pub kind: String,
    /// The call id (for approvals and unknown outcomes) or `limit`.
    pub call_id: String,
    /// The tool, or the limit's name.
    pub tool: String,
    /// The call's arguments.
    pub args: serde_json::Value,
    /// The tool's risk class.
    pub risk: Option<String>,
    /// What the model said alongside the call.
    pub reason: Option<String>,
    /// The last messages of the conversation.
    pub context: Vec<String>,
    /// When it was requested (ms since the epoch).
    pub requested_at_ms: Option<u64>,
    /// When it times out.
    pub expires_at_ms: Option<u64>,
    /// Whether it timed out and was escalated.
    pub escalated: bool,
}

/// Everything waiting for a human, across runs.
pub type Inbox = Vec<InboxItem>;

/// The request event for `call`, with what a human needs to decide.
pub(crate) fn request_event(state: &RunState, call: &ToolCall, now: u64) -> Event {
    let reason = state
        .last_reply()
        .and_then(|reply| reply.content.clone())
        .filter(|text| !text.trim().is_empty());
    let context = state
        .messages
        .iter()
        .rev()
        .take(CONTEXT_MESSAGES)
        .rev()
        .map(render)
        .collect();
    Event::ApprovalRequested {
        call_id: call.id.clone(),
        tool: call.name.clone(),
        args: serde_json::from_str(&call.arguments).unwrap_or(serde_json::Value::Null),
        risk: state
            .tool(&call.name)
            .map_or(chassis_core::RiskClass::Irreversible, |t| t.risk),
        reason,
        context,
        at_ms: now,
        expires_at_ms: state.approvals.timeout_ms.map(|t| now + t),
    }
}

fn render(message: &Message) -> String {
    let clip = |text: &str| -> String {
        if text.chars().count() <= CONTEXT_CHARS {
            text.to_string()
        } else {
            format!("{}…", text.chars().take(CONTEXT_CHARS).collect::<String>())
        }
    };
    match message {
        Message::System { content } => format!("system: {}", clip(content)),
        Message::User { content } => format!("user: {}", clip(content)),
        Message::Tool { call_id, content } => format!("tool {call_id}: {}", clip(content)),
        Message::Assistant(reply) => {
            let calls: Vec<String> = reply
                .tool_calls
                .iter()
                .map(|c| format!("{}({})", c.name, clip(&c.arguments)))
                .collect();
            format!(
                "assistant: {}{}",
                clip(reply.content.as_deref().unwrap_or("")),
                if calls.is_empty() {
                    String::new()
                } else {
                    format!(" [calls {}]", calls.join(", "))
                }
            )
        }
    }
}

/// The events that apply an approval timeout.
pub(crate) fn timeout_events(
    state: &RunState,
    call_id: &str,
    on_timeout: OnTimeout,
    now: u64,
) -> Vec<Event> {
    let waited = state
        .approvals
        .timeout_ms
        .map_or("its timeout".to_string(), |ms| format!("{}s", ms / 1000));
    match on_timeout {
        OnTimeout::Reject => vec![Event::ApprovalDecided {
            call_id: call_id.to_string(),
            approved: false,
            args: None,
            by: "timeout".to_string(),
            note: None,
            reason: Some(format!("nobody approved it within {waited}")),
            at_ms: now,
        }],
        OnTimeout::Escalate => vec![Event::ApprovalEscalated {
            call_id: call_id.to_string(),
            at_ms: now,
        }],
        OnTimeout::Fail => vec![Event::RunFailed {
            error: format!("approval of call {call_id} timed out after {waited}"),
        }],
    }
}

impl Engine {
    /// Approves or rejects a pending call. Edited arguments are checked against the tool's
    /// schema first; if they are invalid, nothing is journaled.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is one field of the audit record"
    )]
    pub async fn decide_approval(
        &self,
        run_id: &str,
        call_id: &str,
        approved: bool,
        edited_args: Option<&str>,
        by: &str,
        note: Option<String>,
        reason: Option<String>,
    ) -> Result<(), Error> {
        let state = self.load(run_id).await?;
        let call = pending_call(&state, run_id, call_id)?;
        if !matches!(call.approval, Approval::Pending { .. }) {
            return Err(Error::Refused(format!(
                "run {run_id}: call {call_id} ({}) is not waiting for approval",
                call.call.name
            )));
        }
        let args = match edited_args {
            Some(raw) if approved => {
                let def = state.tool(&call.call.name).ok_or_else(|| {
                    Error::Refused(format!(
                        "run {run_id}: tool `{}` is unknown",
                        call.call.name
                    ))
                })?;
                let args = chassis_tools::check_arguments(def, raw).map_err(|refusal| {
                    Error::Refused(format!("--args: {refusal}; nothing was recorded"))
                })?;
                Some(args)
            }
            Some(_) => {
                return Err(Error::Refused(
                    "--args only goes with an approval".to_string(),
                ));
            }
            None => None,
        };
        let event = Event::ApprovalDecided {
            call_id: call_id.to_string(),
            approved,
            args,
            by: by.to_string(),
            note,
            reason,
            at_ms: now_ms(),
        };
        self.journal().append(run_id, state.seq, &[event]).await?;
        self.journal().wake(run_id, now_ms() as i64).await?;
        Ok(())
    }

    /// Settles a call whose outcome is unknown.
    pub async fn resolve_outcome(
        &self,
        run_id: &str,
        call_id: &str,
        resolution: Resolution,
        by: &str,
        note: Option<String>,
    ) -> Result<(), Error> {
        let state = self.load(run_id).await?;
        let call = pending_call(&state, run_id, call_id)?;
        if !call.outcome_unknown {
            return Err(Error::Refused(format!(
                "run {run_id}: the outcome of call {call_id} ({}) is not unknown; nothing to resolve",
                call.call.name
            )));
        }
        let (name, settled) = match &resolution {
            Resolution::Succeeded { result } => (
                "succeeded",
                Some((
                    true,
                    result
                        .clone()
                        .unwrap_or_else(|| format!("succeeded (confirmed by {by})")),
                )),
            ),
            Resolution::Failed { reason } => (
                "failed",
                Some((
                    false,
                    reason
                        .clone()
                        .unwrap_or_else(|| format!("did not happen (confirmed by {by})")),
                )),
            ),
            Resolution::Retry => ("retry", None),
        };
        let mut events = vec![Event::OutcomeResolved {
            call_id: call_id.to_string(),
            resolution: name.to_string(),
            by: by.to_string(),
            note,
            at_ms: now_ms(),
        }];
        if let Some((ok, content)) = settled {
            events.push(Event::ToolFinished {
                call_id: call_id.to_string(),
                ok,
                content,
                latency_ms: 0,
            });
        }
        self.journal().append(run_id, state.seq, &events).await?;
        self.journal().wake(run_id, now_ms() as i64).await?;
        Ok(())
    }

    /// Rejects an escalated limit request: the run fails with the human's reason.
    pub async fn reject_limit(&self, run_id: &str, by: &str, reason: &str) -> Result<(), Error> {
        let state = self.load(run_id).await?;
        if state.status.is_terminal() {
            return Err(Error::Refused(format!(
                "run {run_id} has ended ({})",
                state.status
            )));
        }
        let Some(limit) = state.limit_request else {
            return Err(Error::Refused(format!(
                "run {run_id} has no pending limit request"
            )));
        };
        let event = Event::RunFailed {
            error: format!("limit request for {limit} rejected by {by}: {reason}"),
        };
        self.journal().append(run_id, state.seq, &[event]).await?;
        Ok(())
    }

    /// Applies approval timeouts that have passed to a waiting run (without driving it).
    pub async fn apply_timeouts(&self, run_id: &str) -> Result<RunState, Error> {
        let mut state = self.load(run_id).await?;
        let now = now_ms();
        let expired: Vec<String> = state
            .calls
            .iter()
            .filter(|c| {
                matches!(c.approval, Approval::Pending { expires_at_ms: Some(at), escalated: false } if now >= at)
            })
            .map(|c| c.call.id.clone())
            .collect();
        if expired.is_empty() || state.status.is_terminal() {
            return Ok(state);
        }
        let mut events = Vec::new();
        for call_id in &expired {
            events.extend(timeout_events(
                &state,
                call_id,
                state.approvals.on_timeout,
                now,
            ));
        }
        self.journal().append(run_id, state.seq, &events).await?;
        self.journal().wake(run_id, now as i64).await?;
        for event in &events {
            state.apply(event).map_err(|source| Error::Replay {
                run_id: run_id.to_string(),
                source,
            })?;
        }
        Ok(state)
    }

    /// Everything waiting for a human across all runs, after applying passed timeouts.
    pub async fn inbox(&self) -> Result<Inbox, Error> {
        let waiting = self
            .journal()
            .list(&ListFilter {
                status: Some(RunStatus::Waiting),
                agent: None,
                limit: Some(10_000),
            })
            .await?;
        let mut items = Vec::new();
        for run in waiting {
            let state = self.apply_timeouts(&run.run_id).await?;
            items.extend(inbox_items(&run.run_id, &state));
        }
        items.sort_by_key(|i| i.requested_at_ms.unwrap_or(0));
        Ok(items)
    }
}

fn pending_call<'s>(
    state: &'s RunState,
    run_id: &str,
    call_id: &str,
) -> Result<&'s chassis_core::state::CallState, Error> {
    if state.status.is_terminal() {
        return Err(Error::Refused(format!(
            "run {run_id} has ended ({})",
            state.status
        )));
    }
    state
        .calls
        .iter()
        .find(|c| c.call.id == call_id)
        .ok_or_else(|| {
            let pending: Vec<&str> = state
                .calls
                .iter()
                .filter(|c| !c.resolved)
                .map(|c| c.call.id.as_str())
                .collect();
            Error::Refused(format!(
                "run {run_id} has no call {call_id} awaiting a decision (pending: {})",
                if pending.is_empty() {
                    "none".to_string()
                } else {
                    pending.join(", ")
                }
            ))
        })
}

/// What in one run's state waits for a human.
pub fn inbox_items(run_id: &str, state: &RunState) -> Vec<InboxItem> {
    let mut items = Vec::new();
    for call in &state.calls {
        let (kind, expires_at_ms, escalated) = match (&call.approval, call.outcome_unknown) {
            (_, true) => ("outcome_unknown", None, false),
            (
                Approval::Pending {
                    expires_at_ms,
                    escalated,
                },
                _,
            ) if !call.resolved => ("approval", *expires_at_ms, *escalated),
            _ => continue,
        };
        let def = state.tool(&call.call.name);
        items.push(InboxItem {
            run_id: run_id.to_string(),
            agent: state.agent.clone(),
            kind: kind.to_string(),
            call_id: call.call.id.clone(),
            tool: call.call.name.clone(),
            args: serde_json::from_str(&call.call.arguments).unwrap_or(serde_json::Value::Null),
            risk: def.map(|d| d.risk.to_string()),
            reason: state.last_reply().and_then(|r| r.content.clone()),
            context: state
                .messages
                .iter()
                .rev()
                .take(CONTEXT_MESSAGES)
                .rev()
                .map(render)
                .collect(),
            requested_at_ms: None,
            expires_at_ms,
            escalated,
        });
    }
    if let Some(limit) = state.limit_request {
        items.push(InboxItem {
            run_id: run_id.to_string(),
            agent: state.agent.clone(),
            kind: "limit".to_string(),
            call_id: "limit".to_string(),
            tool: limit.as_str().to_string(),
            args: serde_json::json!({ "limit": limit, "value": state.limits.get(limit) }),
            risk: None,
            reason: state.waiting_reason.clone(),
            context: Vec::new(),
            requested_at_ms: None,
            expires_at_ms: None,
            escalated: false,
        });
    }
    items
}
