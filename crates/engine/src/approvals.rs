//! The human side of a run: approvals, rejections, settling unknown outcomes, raising or
//! refusing limits, cancelling, and the inbox.
//!
//! Decisions come from any process, days later, whoever drives the run meanwhile: each is one
//! write of the decision and the run's next wake time, as the fold computes it after the
//! decision ([`chassis_store::Journal::decide`]), so no crash can strand a decided run. Who
//! decided, when and their note are journaled — the audit trail — with secrets in what they
//! typed redacted like everything else. Reading the inbox never writes: an approval whose time
//! ran out is shown as expired, and the run's driver (a worker, woken at the expiry) applies
//! the timeout.

use chassis_core::approvals::OnTimeout;
use chassis_core::state::{Approval, CallState, Hold};
use chassis_core::{Event, LimitName, Message, RunState, RunStatus, ToolAction, Wake};
use chassis_store::ListFilter;

use crate::{Engine, Error, RunOutcome};

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
    /// What waits: `approval` (a call to approve or reject), `outcome_unknown` (a call that may
    /// have acted, to settle), `limit` (a limit escalated to a human, to raise or refuse),
    /// `paused` (stopped at a limit, to raise and resume), `interrupted` (stopped by a person,
    /// to resume) or `ready` (decided, waiting only to be resumed: nothing drives it yet).
    pub kind: String,
    /// The call id (`STEP.INDEX`, for approvals and unknown outcomes), `limit`, or `run`.
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
    /// Whether its time ran out (its run's driver applies the timeout when it next runs).
    pub expired: bool,
    /// Whether it timed out and was escalated.
    pub escalated: bool,
    /// The idempotency key the call ran (or runs) with, for unknown outcomes.
    pub idempotency_key: Option<String>,
}

/// Everything waiting for a human, across runs.
pub type Inbox = Vec<InboxItem>;

/// The request event for `action`, with what a human needs to decide.
pub(crate) fn request_event(state: &RunState, action: &ToolAction, now: u64) -> Event {
    let reason = state
        .last_reply()
        .and_then(|reply| reply.content.clone())
        .filter(|text| !text.trim().is_empty());
    Event::ApprovalRequested {
        call_id: action.call_id.clone(),
        tool: action.name.clone(),
        args: serde_json::from_str(&action.arguments).unwrap_or(serde_json::Value::Null),
        risk: action.risk.unwrap_or(chassis_core::RiskClass::Irreversible),
        reason,
        context: recent_context(state),
        at_ms: now,
        expires_at_ms: state.approvals.timeout_ms.map(|t| now.saturating_add(t)),
    }
}

fn recent_context(state: &RunState) -> Vec<String> {
    state
        .messages()
        .iter()
        .rev()
        .take(CONTEXT_MESSAGES)
        .rev()
        .map(render)
        .collect()
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

/// What a cancel did.
#[derive(Clone, Debug, PartialEq)]
pub enum Cancelled {
    /// Nobody was driving the run: it was ended here.
    Ended(RunOutcome),
    /// Another process drives the run; it ends it at its next safe point.
    Requested {
        /// Who drives it.
        driver: String,
    },
}

/// How many times a decision is tried again when the journal moved under it (the run's
/// driver appended meanwhile).
const DECIDE_ATTEMPTS: usize = 5;

impl Engine {
    /// Journals a human decision built from the run's current state by `build`, with the wake
    /// time the fold computes after it, in one write. If the journal moves meanwhile (its
    /// driver appended), the state is read again and the decision rebuilt, a few times.
    async fn decide_with(
        &self,
        run_id: &str,
        build: impl Fn(&RunState) -> Result<Vec<Event>, Error>,
    ) -> Result<RunState, Error> {
        self.decide_on(run_id, false, build).await
    }

    /// [`Engine::decide_with`]; with `reopens`, an ended run is offered to `build` too, which
    /// decides (a new user message continues a completed run).
    async fn decide_on(
        &self,
        run_id: &str,
        reopens: bool,
        build: impl Fn(&RunState) -> Result<Vec<Event>, Error>,
    ) -> Result<RunState, Error> {
        let mut last = None;
        for _ in 0..DECIDE_ATTEMPTS {
            let state = self.load(run_id).await?;
            if state.status().is_terminal() && !reopens {
                return Err(Error::Refused(format!(
                    "run {run_id} has ended ({}); nothing was recorded",
                    state.status()
                )));
            }
            let redactor = self.human_redactor(&state);
            // A refusal may quote what the human typed (a schema error names the value):
            // it is redacted like the decision itself would have been.
            let events: Vec<Event> = build(&state)
                .map_err(|e| match e {
                    Error::Invalid(m) => Error::Invalid(redactor.redact(&m)),
                    Error::Refused(m) => Error::Refused(redactor.redact(&m)),
                    other => other,
                })?
                .into_iter()
                .map(|e| redactor.redact_event(e))
                .collect();
            let mut after = state.clone();
            for event in &events {
                after.apply(event).map_err(|source| Error::Replay {
                    run_id: run_id.to_string(),
                    source,
                })?;
            }
            match self
                .journal()
                .decide(run_id, state.seq(), &events, after.wake())
                .await
            {
                Ok(_) => return Ok(after),
                Err(e @ chassis_store::Error::SequenceConflict { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(
            || Error::Refused(format!("run {run_id}: the decision could not be recorded")),
            Error::from,
        ))
    }

    /// Continues a conversation: journals `text` as a new user turn of a completed run, with
    /// the wake time that makes it runnable at once, in one write. Whoever drives it next (a
    /// worker, `chassis resume`, [`Engine::resume`]) makes the next model call, whose context
    /// is the whole conversation with this message last. A run that has not answered yet
    /// (running, waiting, paused) or that ended without an answer (failed, cancelled) is
    /// refused, naming its status, and nothing is recorded.
    pub async fn send_message(&self, run_id: &str, text: &str, by: &str) -> Result<(), Error> {
        if text.trim().is_empty() {
            return Err(Error::Invalid(
                "the message is empty; nothing was recorded".to_string(),
            ));
        }
        let now = self.now_ms();
        self.decide_on(run_id, true, |state| {
            match state.status() {
                RunStatus::Completed => {}
                RunStatus::Running => {
                    return Err(Error::Refused(format!(
                        "run {run_id} is running; send the message once it has answered"
                    )));
                }
                RunStatus::Waiting | RunStatus::Paused => {
                    return Err(Error::Refused(format!(
                        "run {run_id} is {} ({}); settle that and let it answer first",
                        state.status(),
                        state.waiting_reason.as_deref().unwrap_or("stopped")
                    )));
                }
                RunStatus::Failed | RunStatus::Cancelled => {
                    return Err(Error::Refused(format!(
                        "run {run_id} has ended ({}) without an answer; fork it to continue from an earlier point",
                        state.status()
                    )));
                }
            }
            Ok(vec![Event::UserMessage {
                text: text.to_string(),
                by: by.to_string(),
                at_ms: now,
            }])
        })
        .await
        .map(|_| ())
    }

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
        let now = self.now_ms();
        self.decide_with(run_id, |state| {
            let call = pending_call(state, run_id, call_id)?;
            if !matches!(call.approval, Approval::Pending { .. }) {
                return Err(Error::Refused(format!(
                    "run {run_id}: call {} ({}) is not waiting for approval",
                    call.id, call.call.name
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
                        Error::Invalid(format!("--args: {refusal}; nothing was recorded"))
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
            Ok(vec![Event::ApprovalDecided {
                call_id: call.id.clone(),
                approved,
                args,
                by: by.to_string(),
                note: note.clone(),
                reason: reason.clone(),
                at_ms: now,
            }])
        })
        .await
        .map(|_| ())
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
        let now = self.now_ms();
        self.decide_with(run_id, |state| {
            let call = pending_call(state, run_id, call_id)?;
            if !call.outcome_unknown {
                return Err(Error::Refused(format!(
                    "run {run_id}: the outcome of call {} ({}) is not unknown; nothing to resolve",
                    call.id, call.call.name
                )));
            }
            let (name, content) = match &resolution {
                Resolution::Succeeded { result } => (
                    "succeeded",
                    Some(
                        result
                            .clone()
                            .unwrap_or_else(|| format!("succeeded (confirmed by {by})")),
                    ),
                ),
                Resolution::Failed { reason } => (
                    "failed",
                    Some(
                        reason
                            .clone()
                            .unwrap_or_else(|| format!("did not happen (confirmed by {by})")),
                    ),
                ),
                Resolution::Retry => ("retry", None),
            };
            Ok(vec![Event::OutcomeResolved {
                call_id: call.id.clone(),
                resolution: name.to_string(),
                by: by.to_string(),
                note: note.clone(),
                at_ms: now,
                content,
            }])
        })
        .await
        .map(|_| ())
    }

    /// Raises limits of a run that has not ended; the run wakes if that was what it waited for.
    pub async fn raise_limits(
        &self,
        run_id: &str,
        raises: &[(LimitName, f64)],
        by: &str,
    ) -> Result<(), Error> {
        if raises.is_empty() {
            return Ok(());
        }
        self.decide_with(run_id, |_| {
            Ok(raises
                .iter()
                .map(|&(limit, value)| Event::LimitRaised {
                    limit,
                    value,
                    by: by.to_string(),
                })
                .collect())
        })
        .await
        .map(|_| ())
    }

    /// Grants an escalated limit request (`[limits] on_limit = "escalate"`): the raises must
    /// include the limit the run waits on; others may come along. A run with no pending
    /// request is refused (raise a paused run's limits with [`Engine::raise_limits`] and a
    /// resume instead), and nothing is recorded.
    pub async fn approve_limit(
        &self,
        run_id: &str,
        raises: &[(LimitName, f64)],
        by: &str,
    ) -> Result<(), Error> {
        if raises.is_empty() {
            return Err(Error::Invalid(
                "raise at least one limit (LIMIT=VALUE)".to_string(),
            ));
        }
        self.decide_with(run_id, |state| {
            let Some(limit) = state.limit_request else {
                return Err(Error::Refused(format!(
                    "run {run_id} has no pending limit request"
                )));
            };
            if !raises.iter().any(|(l, _)| *l == limit) {
                return Err(Error::Invalid(format!(
                    "run {run_id} waits on {limit}; raise that one ({limit}=VALUE)"
                )));
            }
            Ok(raises
                .iter()
                .map(|&(limit, value)| Event::LimitRaised {
                    limit,
                    value,
                    by: by.to_string(),
                })
                .collect())
        })
        .await
        .map(|_| ())
    }

    /// Refuses an escalated limit request: the run fails (when next driven) with the reason.
    pub async fn reject_limit(&self, run_id: &str, by: &str, reason: &str) -> Result<(), Error> {
        let now = self.now_ms();
        self.decide_with(run_id, |state| {
            let Some(limit) = state.limit_request else {
                return Err(Error::Refused(format!(
                    "run {run_id} has no pending limit request"
                )));
            };
            Ok(vec![Event::LimitRejected {
                limit,
                by: by.to_string(),
                reason: reason.to_string(),
                at_ms: now,
            }])
        })
        .await
        .map(|_| ())
    }

    /// Cancels a run: journals the request (who and why), then ends the run here if nobody
    /// drives it, or leaves it to its driver, which stops at its next safe point (never inside
    /// a call that may not be repeated: that call's outcome is journaled first).
    pub async fn cancel(&self, run_id: &str, by: &str, reason: &str) -> Result<Cancelled, Error> {
        let now = self.now_ms();
        self.decide_with(run_id, |_| {
            Ok(vec![Event::CancelRequested {
                by: by.to_string(),
                reason: reason.to_string(),
                at_ms: now,
            }])
        })
        .await?;
        let lease = match self.claim_run(run_id).await {
            Ok(lease) => lease,
            Err(Error::Store(chassis_store::Error::Held { owner, .. })) => {
                return Ok(Cancelled::Requested { driver: owner });
            }
            Err(e) => return Err(e),
        };
        // Nobody drives it: end it here. Its agent need not load (the spec may be gone): only
        // `run_cancelled` (and an unknown outcome before it) can follow a cancel.
        self.settle_leased(run_id, lease)
            .await
            .map(Cancelled::Ended)
    }

    /// Refuses an escalated limit request and, if nobody drives the run, fails it here at
    /// once; otherwise its driver does.
    pub async fn refuse_limit(
        &self,
        run_id: &str,
        by: &str,
        reason: &str,
    ) -> Result<Cancelled, Error> {
        self.reject_limit(run_id, by, reason).await?;
        match self.claim_run(run_id).await {
            Ok(lease) => self
                .settle_leased(run_id, lease)
                .await
                .map(Cancelled::Ended),
            Err(Error::Store(chassis_store::Error::Held { owner, .. })) => {
                Ok(Cancelled::Requested { driver: owner })
            }
            Err(e) => Err(e),
        }
    }

    /// Asks for a run stopped by a person (or parked) to be driven again by whoever claims it
    /// next (a worker), raising limits first if asked; one write, which wakes the run.
    pub async fn request_resume(
        &self,
        run_id: &str,
        raises: &[(LimitName, f64)],
        by: &str,
    ) -> Result<RunState, Error> {
        let now = self.now_ms();
        self.decide_with(run_id, |_| {
            let mut events: Vec<Event> = raises
                .iter()
                .map(|&(limit, value)| Event::LimitRaised {
                    limit,
                    value,
                    by: by.to_string(),
                })
                .collect();
            events.push(Event::ResumeRequested {
                by: by.to_string(),
                at_ms: now,
            });
            Ok(events)
        })
        .await
    }

    /// Under `lease`, journals what a run's state decides that needs no agent (an unknown
    /// outcome recorded, a cancel, a failure a human asked for), then releases the lease.
    async fn settle_leased(
        &self,
        run_id: &str,
        lease: chassis_store::Lease,
    ) -> Result<RunOutcome, Error> {
        let settled = self.settle_inner(run_id, &lease).await;
        if settled.is_err()
            && let Err(e) = self.journal().release(&lease, u64::MAX, Wake::Never).await
        {
            tracing::warn!(run_id, error = %e, "cannot release the lease; it will expire");
        }
        settled
    }

    async fn settle_inner(
        &self,
        run_id: &str,
        lease: &chassis_store::Lease,
    ) -> Result<RunOutcome, Error> {
        let mut state = self.load(run_id).await?;
        let mut probe = state.clone();
        let mut events = Vec::new();
        let fold = |probe: &mut RunState, event: &Event| {
            probe.apply(event).map_err(|source| Error::Replay {
                run_id: run_id.to_string(),
                source,
            })
        };
        if matches!(state.status(), RunStatus::Waiting | RunStatus::Paused) {
            let resumed = Event::RunResumed {
                at_ms: self.now_ms(),
            };
            fold(&mut probe, &resumed)?;
            events.push(resumed);
        }
        loop {
            let inputs = chassis_core::Inputs {
                now_ms: self.now_ms(),
                next_input_tokens: 0,
            };
            let event = match chassis_core::decide(&probe, &inputs) {
                chassis_core::Decision::OutcomeUnknown(action) => action.outcome_unknown(),
                chassis_core::Decision::Cancel { by, reason } => Event::RunCancelled {
                    by,
                    reason,
                    at_ms: self.now_ms(),
                },
                chassis_core::Decision::Fail { error } if probe.limit_rejected.is_some() => {
                    Event::RunFailed { error }
                }
                _ => break,
            };
            fold(&mut probe, &event)?;
            events.push(event);
        }
        // Only worth writing if it ended the run (a resume alone would leave it running with
        // nobody driving it).
        // (A run another driver ended before the lease was taken has nothing to write.)
        if probe.status().is_terminal() && !events.is_empty() {
            let alerts = self.alerts_for(&state).await;
            let notes = crate::outbox::notifications(
                &alerts,
                &crate::outbox::About {
                    run_id,
                    agent: &state.agent,
                    version: &state.version,
                    at_ms: self.now_ms(),
                },
                state.seq() + 1,
                &events,
            );
            self.journal()
                .append_with(lease, state.seq(), &events, probe.wake(), &notes)
                .await?;
            if !notes.is_empty() {
                self.queued_notifications();
            }
            state = probe;
        }
        self.journal()
            .release(lease, state.seq(), state.wake())
            .await?;
        Ok(RunOutcome::of(run_id, &state))
    }

    /// Everything waiting for a human across all runs. Reading it never writes: approvals
    /// whose time ran out are marked `expired`.
    pub async fn inbox(&self) -> Result<Inbox, Error> {
        let now = self.now_ms();
        let mut items = Vec::new();
        for status in [RunStatus::Waiting, RunStatus::Paused] {
            let runs = self
                .journal()
                .list(&ListFilter {
                    status: Some(status),
                    agent: None,
                    limit: Some(10_000),
                    ..ListFilter::default()
                })
                .await?;
            for run in runs {
                let state = self.load(&run.run_id).await?;
                let mut found = inbox_items(&run.run_id, &state, now);
                // A run left by a driver that is still alive is not waiting for a human.
                if run
                    .lease
                    .as_ref()
                    .is_some_and(|(_, until)| *until > i64::try_from(now).unwrap_or(i64::MAX))
                {
                    found.retain(|item| item.kind != "ready");
                }
                items.extend(found);
            }
        }
        items.sort_by_key(|i| i.requested_at_ms.unwrap_or(0));
        Ok(items)
    }
}

fn pending_call<'s>(
    state: &'s RunState,
    run_id: &str,
    call_id: &str,
) -> Result<&'s CallState, Error> {
    if state.status().is_terminal() {
        return Err(Error::Refused(format!(
            "run {run_id} has ended ({})",
            state.status()
        )));
    }
    // The journal's id (`STEP.INDEX`), or the provider's id when it names one call only.
    let by_echo: Vec<&CallState> = state
        .calls()
        .iter()
        .filter(|c| c.call.id == call_id)
        .collect();
    state
        .call(call_id)
        .or(match by_echo.as_slice() {
            [one] => Some(*one),
            _ => None,
        })
        .ok_or_else(|| {
            let pending: Vec<&str> = state
                .calls()
                .iter()
                .filter(|c| !c.resolved)
                .map(|c| c.id.as_str())
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

/// What in one run's state waits for a human, at `now_ms`.
pub fn inbox_items(run_id: &str, state: &RunState, now_ms: u64) -> Vec<InboxItem> {
    let mut items = Vec::new();
    if !matches!(state.status(), RunStatus::Waiting | RunStatus::Paused) {
        return items;
    }
    let item = |kind: &str, call_id: String, tool: String| InboxItem {
        run_id: run_id.to_string(),
        agent: state.agent.clone(),
        kind: kind.to_string(),
        call_id,
        tool,
        args: serde_json::Value::Null,
        risk: None,
        reason: None,
        context: Vec::new(),
        requested_at_ms: None,
        expires_at_ms: None,
        expired: false,
        escalated: false,
        idempotency_key: None,
    };
    for call in state.calls() {
        let kind = match (&call.approval, call.outcome_unknown) {
            (_, true) if !call.resolved => "outcome_unknown",
            (Approval::Pending { .. }, _) if !call.resolved => "approval",
            _ => continue,
        };
        let (expires_at_ms, escalated) = match &call.approval {
            Approval::Pending {
                expires_at_ms,
                escalated,
            } if kind == "approval" => (*expires_at_ms, *escalated),
            _ => (None, false),
        };
        let def = state.tool(&call.call.name);
        items.push(InboxItem {
            args: serde_json::from_str(&call.call.arguments).unwrap_or(serde_json::Value::Null),
            risk: def.map(|d| d.risk.to_string()),
            reason: state.last_reply().and_then(|r| r.content.clone()),
            context: recent_context(state),
            requested_at_ms: call.requested_at_ms,
            expires_at_ms,
            expired: expires_at_ms.is_some_and(|at| now_ms >= at) && !escalated,
            escalated,
            idempotency_key: (kind == "outcome_unknown").then(|| format!("{run_id}/{}", call.id)),
            ..item(kind, call.id.clone(), call.call.name.clone())
        });
    }
    if let Some(limit) = state.limit_request {
        items.push(InboxItem {
            args: serde_json::json!({ "limit": limit, "value": state.limits.get(limit) }),
            reason: state.waiting_reason.clone(),
            ..item("limit", "limit".to_string(), limit.as_str().to_string())
        });
    } else if let Hold::Limit(limit) = state.hold {
        items.push(InboxItem {
            args: serde_json::json!({ "limit": limit, "value": state.limits.get(limit) }),
            reason: state.waiting_reason.clone(),
            ..item("paused", "limit".to_string(), limit.as_str().to_string())
        });
    } else if state.hold == Hold::Interrupted {
        items.push(InboxItem {
            reason: state.waiting_reason.clone(),
            ..item("interrupted", "run".to_string(), String::new())
        });
    }
    if items.is_empty() && chassis_core::decide::ready_to_continue(state) {
        items.push(InboxItem {
            reason: Some(format!(
                "decided; nothing drives it yet: `chassis resume {run_id}` (or a worker) continues it"
            )),
            ..item("ready", "run".to_string(), String::new())
        });
    }
    items
}
