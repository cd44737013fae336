//! Notifications: which journaled events are worth telling the outside world about.
//!
//! A notification is a fact about one event, so it can be decided from that event alone, the
//! same way by every process that writes it (the driver of a run, or a human's `cancel` that
//! ends an undriven run). The engine turns each into an outbox entry written in the same
//! transaction as its event; this module is only the pure part: the kind and its details.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Event;

/// What a notification is about; each can be selected in `[alerts] events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// The run finished with an answer.
    RunCompleted,
    /// The run ended without an answer.
    RunFailed,
    /// A human cancelled the run.
    RunCancelled,
    /// The run stopped to wait for a human (an approval, an unknown outcome, an escalated
    /// limit).
    WaitingForHuman,
    /// The next call would have crossed a limit.
    LimitReached,
    /// A call waits for a human's approval.
    ApprovalRequested,
    /// Nobody decided an approval in time.
    ApprovalEscalated,
}

impl NotifyKind {
    /// Every kind, in the order documentation lists them.
    pub const ALL: [NotifyKind; 7] = [
        NotifyKind::RunCompleted,
        NotifyKind::RunFailed,
        NotifyKind::RunCancelled,
        NotifyKind::WaitingForHuman,
        NotifyKind::LimitReached,
        NotifyKind::ApprovalRequested,
        NotifyKind::ApprovalEscalated,
    ];

    /// The kind's name, as in specs and webhook bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::RunCompleted => "run_completed",
            NotifyKind::RunFailed => "run_failed",
            NotifyKind::RunCancelled => "run_cancelled",
            NotifyKind::WaitingForHuman => "waiting_for_human",
            NotifyKind::LimitReached => "limit_reached",
            NotifyKind::ApprovalRequested => "approval_requested",
            NotifyKind::ApprovalEscalated => "approval_escalated",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<NotifyKind> {
        NotifyKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for NotifyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most bytes of a run's output or error a notification carries; the rest is left to the
/// API (`GET /v1/runs/{id}`), so a webhook body stays small whatever a run produced.
pub const MAX_TEXT_BYTES: usize = 4096;

/// The notification `event` raises, if any: its kind and its details (already redacted, since
/// the event is).
pub fn of(event: &Event) -> Option<(NotifyKind, Value)> {
    match event {
        Event::RunCompleted { output } => {
            Some((NotifyKind::RunCompleted, clipped("output", output)))
        }
        Event::RunFailed { error } => Some((NotifyKind::RunFailed, clipped("error", error))),
        Event::RunCancelled { by, reason, .. } => Some((
            NotifyKind::RunCancelled,
            json!({ "by": by, "reason": reason }),
        )),
        Event::RunWaiting { reason, .. } => {
            Some((NotifyKind::WaitingForHuman, json!({ "reason": reason })))
        }
        Event::LimitReached {
            limit,
            value,
            used,
            projected,
            action,
        } => Some((
            NotifyKind::LimitReached,
            json!({
                "limit": limit,
                "value": value,
                "used": used,
                "projected": projected,
                "action": action.as_str(),
            }),
        )),
        Event::ApprovalRequested {
            call_id,
            tool,
            args,
            ..
        } => Some((
            NotifyKind::ApprovalRequested,
            json!({ "call_id": call_id, "tool": tool, "arguments": args }),
        )),
        Event::ApprovalEscalated { call_id, .. } => {
            Some((NotifyKind::ApprovalEscalated, json!({ "call_id": call_id })))
        }
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
        | Event::ApprovalDecided { .. }
        | Event::OutcomeResolved { .. }
        | Event::ToolOutcomeUnknown { .. }
        | Event::LimitRaised { .. }
        | Event::LimitRejected { .. }
        | Event::CancelRequested { .. }
        | Event::ResumeRequested { .. }
        | Event::UserMessage { .. }
        | Event::RunPaused { .. }
        | Event::RunResumed { .. } => None,
    }
}

/// `{key: text}`, the text cut to [`MAX_TEXT_BYTES`] on a character boundary, with
/// `truncated: true` when it was cut.
fn clipped(key: &str, text: &str) -> Value {
    if text.len() <= MAX_TEXT_BYTES {
        return json!({ key: text });
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    json!({ key: &text[..end], "truncated": true, "bytes": text.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in NotifyKind::ALL {
            assert_eq!(NotifyKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                Value::String(kind.as_str().to_string())
            );
        }
        assert_eq!(NotifyKind::parse("run_started"), None);
    }

    #[test]
    fn long_texts_are_clipped_on_a_character_boundary() {
        let output = "é".repeat(MAX_TEXT_BYTES);
        let (kind, details) = of(&Event::RunCompleted { output }).unwrap();
        assert_eq!(kind, NotifyKind::RunCompleted);
        let text = details["output"].as_str().unwrap();
        assert!(text.len() <= MAX_TEXT_BYTES && text.len() >= MAX_TEXT_BYTES - 1);
        assert_eq!(details["truncated"], true);
        assert_eq!(of(&Event::RunResumed { at_ms: 1 }), None);
    }
}
