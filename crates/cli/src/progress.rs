//! Live, one-line-per-event progress on stderr, and the same lines for `chassis show`.

use chassis_core::{Event, ToolProgress};
use chassis_engine::Observer;

use crate::style::{Mark, Style};

/// Prints each event as it happens (nothing under `-q`), and, on a terminal, each answer as
/// the model writes it.
#[derive(Default)]
pub(crate) struct Progress {
    /// Show answers as they stream.
    stream: bool,
    /// The streamed line left open (printed without its end yet), if any.
    open: std::sync::Mutex<Open>,
}

/// What a streamed line shows, while it is open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Open {
    #[default]
    None,
    /// The answer's text.
    Text,
    /// A tool call's arguments: the line ends with `)`.
    Call,
}

impl Open {
    /// What ends the line.
    fn end(self) -> &'static str {
        match self {
            Open::None => "",
            Open::Text => "\n",
            Open::Call => ")\n",
        }
    }
}

impl Progress {
    /// Events only.
    pub(crate) fn new() -> Progress {
        Progress::default()
    }

    /// Events, and answers as they stream when stderr is a terminal (unless `--no-stream`).
    pub(crate) fn streaming(enabled: bool) -> Progress {
        use std::io::IsTerminal;
        Progress {
            stream: enabled && std::io::stderr().is_terminal() && !crate::out::quiet(),
            open: std::sync::Mutex::new(Open::None),
        }
    }

    /// Ends a streamed line, if one is open.
    fn close(&self) {
        if let Ok(mut open) = self.open.lock()
            && *open != Open::None
        {
            crate::out::write_stderr_raw(open.end());
            *open = Open::None;
        }
    }
}

impl Observer for Progress {
    fn on_event(&self, run_id: &str, _state: &chassis_core::RunState, event: &Event) {
        self.close();
        if let Some(line) = describe(run_id, event, Style::stderr()) {
            noteln!("{}", line.render(Style::stderr()));
        }
    }

    fn on_tool_progress(&self, _run_id: &str, _call_id: &str, progress: &ToolProgress) {
        self.close();
        let line = progress_line(progress, Style::stderr());
        noteln!("{}", line.render(Style::stderr()));
    }

    fn wants_deltas(&self) -> bool {
        self.stream
    }

    fn on_delta(&self, _run_id: &str, step: u32, delta: &chassis_providers::Delta) {
        use chassis_providers::Delta;
        let style = Style::stderr();
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        let (piece, now) = match delta {
            Delta::Text(text) if *open == Open::Text => (text.clone(), Open::Text),
            Delta::Text(text) => (
                format!(
                    "{}  {} step {step}: {text}",
                    open.end(),
                    style.mark(Mark::Step)
                ),
                Open::Text,
            ),
            Delta::ToolCallStarted { name, .. } => (
                format!("{}    {} {name}(", open.end(), style.mark(Mark::Call)),
                Open::Call,
            ),
            Delta::ToolArgs { arguments, .. } => (arguments.clone(), Open::Call),
            Delta::Abandoned => (
                format!(
                    "{}  {} the attempt failed; starting over\n",
                    open.end(),
                    style.mark(Mark::Retry)
                ),
                Open::None,
            ),
        };
        crate::out::write_stderr_raw(&piece);
        *open = now;
    }
}

/// One event as a human line: an indent showing its depth, a mark, and the text.
pub(crate) struct Line {
    /// Spaces before the mark: a step is indented under its run, a tool under its step.
    pub indent: &'static str,
    /// What kind of thing happened, if a mark says it.
    pub mark: Option<Mark>,
    /// What happened.
    pub text: String,
}

impl Line {
    fn new(indent: &'static str, mark: Option<Mark>, text: String) -> Line {
        Line { indent, mark, text }
    }

    /// The line with its mark as `style` shows it.
    pub(crate) fn render(&self, style: Style) -> String {
        match self.mark {
            Some(mark) => format!("{}{} {}", self.indent, style.mark(mark), self.text),
            None => format!("{}{}", self.indent, self.text),
        }
    }
}

pub(crate) use chassis_core::limits::usd;

/// A run's cost: dollars, marked as a lower bound when some calls had no known price.
pub(crate) fn cost(amount: f64, unpriced_calls: u32) -> String {
    match unpriced_calls {
        0 => usd(amount),
        n => format!("{} + {n} call(s) of unknown price", usd(amount)),
    }
}

/// Shortens `text` to one line of at most `max` characters, marking the cut as `style` can.
pub(crate) fn clip(text: &str, max: usize, style: Style) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let ellipsis = style.ellipsis();
    let cut: String = one_line
        .chars()
        .take(max.saturating_sub(ellipsis.chars().count()))
        .collect();
    format!("{cut}{ellipsis}")
}

/// A tool's progress report as a line under its call: `search: 3/10 fetching page 3`.
pub(crate) fn progress_line(progress: &ToolProgress, style: Style) -> Line {
    let number = |n: f64| {
        if n.fract() == 0.0 && n.abs() < 1e15 {
            format!("{n:.0}")
        } else {
            format!("{n:.2}")
        }
    };
    let done = match progress.total {
        Some(total) => format!("{}/{}", number(progress.progress), number(total)),
        None => number(progress.progress),
    };
    let message = progress
        .message
        .as_deref()
        .map(|m| format!(" {}", clip(m, 80, style)))
        .unwrap_or_default();
    Line::new(
        "      ",
        None,
        format!("{}: {done}{message}", progress.tool),
    )
}

/// One human line for an event, as `style` can show it; `None` for events not worth a line.
pub(crate) fn describe(run_id: &str, event: &Event, style: Style) -> Option<Line> {
    let clip = |text: &str, max: usize| clip(text, max, style);
    let (top, step, tool) = ("", "  ", "    ");
    Some(match event {
        Event::RunStarted(start) => Line::new(
            top,
            Some(Mark::Start),
            format!(
                "{run_id} started: agent {}, model {}, {} tool(s)",
                start.agent,
                start.model,
                start.tools.len()
            ),
        ),
        Event::ModelRequested {
            step: n,
            model,
            messages,
        } => Line::new(
            step,
            None,
            format!("step {n}: calling {model} with {messages} message(s)"),
        ),
        Event::ModelResponded {
            step: n,
            message,
            usage,
            latency_ms,
            cost_usd,
            ..
        } => {
            let price = cost_usd.map_or(String::new(), |c| format!(", {}", usd(c)));
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
            Line::new(
                step,
                None,
                format!(
                    "step {n}: model {what}  [{latency_ms} ms, {}+{} tokens{price}]",
                    usage.input_tokens, usage.output_tokens
                ),
            )
        }
        Event::ModelAttemptFailed {
            step: n,
            model,
            attempt,
            error,
            delay_ms,
        } => Line::new(
            step,
            None,
            match delay_ms {
                Some(ms) => format!(
                    "step {n}: {model} attempt {attempt} failed: {}; retrying in {ms} ms",
                    clip(error, 80)
                ),
                None => format!(
                    "step {n}: {model} attempt {attempt} failed: {}; giving up on it",
                    clip(error, 80)
                ),
            },
        ),
        Event::ModelCircuitOpen { step: n, model } => Line::new(
            step,
            None,
            format!("step {n}: {model} skipped: its circuit breaker is open"),
        ),
        Event::ModelFallback {
            step: n, from, to, ..
        } => Line::new(
            step,
            None,
            format!("step {n}: falling back from {from} to {to}"),
        ),
        Event::ModelFailed { step: n, error, .. } => {
            Line::new(step, None, format!("step {n}: model call failed: {error}"))
        }
        Event::ContextCompacted {
            from_seq, to_seq, ..
        } => Line::new(
            step,
            None,
            format!("context compacted: a summary stands for events {from_seq}..{to_seq}"),
        ),
        Event::ModelSwitched { model, reason, .. } => Line::new(
            step,
            None,
            format!("switching to {model} for the rest of the run: {reason}"),
        ),
        Event::ToolAttemptFailed {
            attempt,
            error,
            delay_ms,
            ..
        } => Line::new(
            tool,
            Some(Mark::Fail),
            format!(
                "attempt {attempt} failed: {}; retrying in {delay_ms} ms",
                clip(error, 80)
            ),
        ),
        Event::RunPaused { reason, .. } => Line::new(
            top,
            Some(Mark::Wait),
            format!("paused: {reason} (continue with `chassis resume {run_id}`)"),
        ),
        Event::ToolRefused { name, error, .. } => Line::new(
            tool,
            Some(Mark::Fail),
            format!("{name} refused: {}", clip(error, 100)),
        ),
        Event::ToolStarted { name, risk, .. } => {
            Line::new(tool, Some(Mark::Call), format!("{name} ({risk})"))
        }
        Event::ToolFinished {
            ok,
            content,
            latency_ms,
            ..
        } => Line::new(
            tool,
            Some(if *ok { Mark::Ok } else { Mark::Fail }),
            format!("{}  [{latency_ms} ms]", clip(content, 80)),
        ),
        Event::ToolOutcomeUnknown { name, call_id } => Line::new(
            tool,
            Some(Mark::Unknown),
            format!(
                "{name} ({call_id}) was cut off; its outcome is unknown and it will not be repeated"
            ),
        ),
        Event::RunWaiting { reason, .. } => {
            Line::new(top, Some(Mark::Wait), format!("waiting: {reason}"))
        }
        Event::RunResumed { .. } => Line::new(top, Some(Mark::Start), format!("{run_id} resumed")),
        Event::LimitReached {
            limit,
            value,
            used,
            projected,
            action,
        } => Line::new(
            step,
            Some(Mark::Limit),
            format!(
                "{limit}: used {used}, next call could reach {projected}, limit {value} {} {}",
                style.arrow(),
                action.as_str()
            ),
        ),
        Event::ApprovalRequested {
            call_id,
            tool: name,
            risk,
            ..
        } => Line::new(
            tool,
            Some(Mark::Human),
            format!("{name} ({risk}) needs approval: call {call_id}"),
        ),
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
            Line::new(
                tool,
                Some(Mark::Human),
                format!("call {call_id} {verdict} by {by}{why}"),
            )
        }
        Event::ApprovalEscalated { call_id, .. } => Line::new(
            tool,
            Some(Mark::Human),
            format!("approval of call {call_id} timed out and was escalated"),
        ),
        Event::OutcomeResolved {
            call_id,
            resolution,
            by,
            ..
        } => Line::new(
            tool,
            Some(Mark::Human),
            format!("call {call_id} resolved as {resolution} by {by}"),
        ),
        Event::LimitRaised { limit, value, by } => Line::new(
            step,
            Some(Mark::Raise),
            format!("{limit} raised to {value} by {by}"),
        ),
        Event::LimitRejected {
            limit, by, reason, ..
        } => Line::new(
            step,
            Some(Mark::Human),
            format!("raising {limit} refused by {by}: {reason}"),
        ),
        Event::CancelRequested { by, reason, .. } => Line::new(
            step,
            Some(Mark::Human),
            format!("cancel requested by {by}: {reason}"),
        ),
        Event::ResumeRequested { by, .. } => {
            Line::new(step, Some(Mark::Human), format!("resume requested by {by}"))
        }
        Event::UserMessage { text, by, .. } => Line::new(
            top,
            Some(Mark::Human),
            format!("message from {by}: {}", clip(text, 120)),
        ),
        Event::RunCompleted { .. } => Line::new(top, Some(Mark::End), "completed".to_string()),
        Event::RunFailed { error } => Line::new(top, Some(Mark::End), format!("failed: {error}")),
        Event::RunCancelled { by, reason, .. } => {
            Line::new(top, Some(Mark::End), format!("cancelled by {by}: {reason}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_done_of_total_and_the_tool_s_words() {
        let report = |progress, total, message: Option<&str>| ToolProgress {
            tool: "fetch".into(),
            progress,
            total,
            message: message.map(str::to_string),
        };
        let line = |p| progress_line(&p, Style::PLAIN).render(Style::PLAIN);
        assert_eq!(
            line(report(3.0, Some(10.0), Some("page 3"))),
            "      fetch: 3/10 page 3"
        );
        assert_eq!(line(report(0.25, None, None)), "      fetch: 0.25");
        assert_eq!(
            line(report(1.0, Some(2.0), Some("two\nlines"))),
            "      fetch: 1/2 two lines"
        );
    }

    #[test]
    fn small_costs_keep_two_significant_digits() {
        assert_eq!(usd(0.0), "$0.0000");
        assert_eq!(usd(0.000012), "$0.000012");
        assert_eq!(usd(0.00012345), "$0.00012");
        assert_eq!(usd(0.0123), "$0.0123");
        assert_eq!(usd(1.5), "$1.5000");
        assert_eq!(usd(0.000_000_000_000_1), "$0.000000000000");
    }

    #[test]
    fn clip_marks_the_cut_as_the_stream_can_show_it() {
        let plain = clip("abcdefghij", 6, Style::PLAIN);
        assert_eq!(plain, "abc...");
        let unicode = clip(
            "abcdefghij",
            6,
            Style {
                color: false,
                unicode: true,
            },
        );
        assert_eq!(unicode, "abcde…");
    }
}
