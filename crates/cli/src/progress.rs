//! Live, one-line-per-event progress on stderr.

use std::io::Write;

use chassis_core::Event;
use chassis_engine::Observer;

/// Prints each event as it happens.
pub struct Progress;

impl Observer for Progress {
    fn on_event(&self, run_id: &str, _state: &chassis_core::RunState, event: &Event) {
        if let Some(line) = describe(run_id, event) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
        }
    }
}

/// A run's cost: dollars, marked as a lower bound when some calls had no known price.
pub fn cost(usd: f64, unpriced_calls: u32) -> String {
    match unpriced_calls {
        0 => format!("${usd:.4}"),
        n => format!("${usd:.4} + {n} call(s) of unknown price"),
    }
}

/// Shortens `text` to one line of at most `max` characters.
pub fn clip(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// One human line for an event; `None` for events not worth a line.
pub fn describe(run_id: &str, event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted(start) => format!(
            "▶ {run_id} started: agent {}, model {}, {} tool(s)",
            start.agent,
            start.model,
            start.tools.len()
        ),
        Event::ModelRequested {
            step,
            model,
            messages,
        } => {
            format!("  step {step}: calling {model} with {messages} message(s)")
        }
        Event::ModelResponded {
            step,
            message,
            usage,
            latency_ms,
            cost_usd,
            ..
        } => {
            let price = cost_usd.map_or(String::new(), |c| format!(", ${c:.5}"));
            let what = if message.tool_calls.is_empty() {
                format!(
                    "answer: {}",
                    clip(message.content.as_deref().unwrap_or(""), 80)
                )
            } else {
                let calls: Vec<String> = message
                    .tool_calls
                    .iter()
                    .map(|c| format!("{}({})", c.name, clip(&c.arguments, 60)))
                    .collect();
                format!("wants {}", calls.join(", "))
            };
            format!(
                "  step {step}: model {what}  [{latency_ms} ms, {}+{} tokens{price}]",
                usage.input_tokens, usage.output_tokens
            )
        }
        Event::ModelAttemptFailed {
            step,
            model,
            attempt,
            error,
            delay_ms,
        } => match delay_ms {
            Some(ms) => format!(
                "  step {step}: {model} attempt {attempt} failed: {}; retrying in {ms} ms",
                clip(error, 80)
            ),
            None => format!(
                "  step {step}: {model} attempt {attempt} failed: {}; giving up on it",
                clip(error, 80)
            ),
        },
        Event::ModelCircuitOpen { step, model } => {
            format!("  step {step}: {model} skipped: its circuit breaker is open")
        }
        Event::ModelFallback { step, from, to, .. } => {
            format!("  step {step}: falling back from {from} to {to}")
        }
        Event::ModelFailed { step, error, .. } => {
            format!("  step {step}: model call failed: {error}")
        }
        Event::ModelSwitched { model, reason, .. } => {
            format!("  switching to {model} for the rest of the run: {reason}")
        }
        Event::ToolAttemptFailed {
            attempt,
            error,
            delay_ms,
            ..
        } => format!(
            "    ✗ attempt {attempt} failed: {}; retrying in {delay_ms} ms",
            clip(error, 80)
        ),
        Event::RunPaused { reason, .. } => {
            format!("⏸ paused: {reason} (continue with `chassis resume {run_id}`)")
        }
        Event::ToolRefused { name, error, .. } => {
            format!("    ✗ {name} refused: {}", clip(error, 100))
        }
        Event::ToolStarted { name, risk, .. } => format!("    → {name} ({risk})"),
        Event::ToolFinished {
            ok,
            content,
            latency_ms,
            ..
        } => {
            let mark = if *ok { "✓" } else { "✗" };
            format!("    {mark} {}  [{latency_ms} ms]", clip(content, 80))
        }
        Event::ToolOutcomeUnknown { name, call_id } => {
            format!(
                "    ? {name} ({call_id}) was cut off; its outcome is unknown and it will not be repeated"
            )
        }
        Event::RunWaiting { reason, .. } => format!("⏸ waiting: {reason}"),
        Event::RunResumed { .. } => format!("▶ {run_id} resumed"),
        Event::LimitReached {
            limit,
            value,
            used,
            projected,
            action,
        } => format!(
            "  ⛔ {limit}: used {used}, next call could reach {projected}, limit {value} → {}",
            action.as_str()
        ),
        Event::ApprovalRequested {
            call_id,
            tool,
            risk,
            ..
        } => format!("    ✋ {tool} ({risk}) needs approval: call {call_id}"),
        Event::ApprovalDecided {
            call_id,
            approved,
            by,
            note,
            reason,
            ..
        } => {
            let verdict = if *approved { "approved" } else { "rejected" };
            let why = reason
                .as_ref()
                .or(note.as_ref())
                .map_or(String::new(), |t| format!(": {t}"));
            format!("    ✋ call {call_id} {verdict} by {by}{why}")
        }
        Event::ApprovalEscalated { call_id, .. } => {
            format!("    ✋ approval of call {call_id} timed out and was escalated")
        }
        Event::OutcomeResolved {
            call_id,
            resolution,
            by,
            ..
        } => format!("    ✋ call {call_id} resolved as {resolution} by {by}"),
        Event::LimitRaised { limit, value, by } => format!("  ↑ {limit} raised to {value} by {by}"),
        Event::LimitRejected {
            limit, by, reason, ..
        } => format!("  ✋ raising {limit} refused by {by}: {reason}"),
        Event::CancelRequested { by, reason, .. } => {
            format!("  ✋ cancel requested by {by}: {reason}")
        }
        Event::ResumeRequested { by, .. } => format!("  ✋ resume requested by {by}"),
        Event::RunCompleted { .. } => "■ completed".to_string(),
        Event::RunFailed { error } => format!("■ failed: {error}"),
        Event::RunCancelled { by, reason, .. } => format!("■ cancelled by {by}: {reason}"),
    })
}
