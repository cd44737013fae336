//! `[context] strategy = "summarize"`: the summarization call's request, chassis's own prompt
//! (never the agent's), and when a run needs one.

use std::ops::Range;

use chassis_core::context::{self, Strategy};
use chassis_core::{Message, RunState};

/// What the summarizing model is told it is doing.
pub(crate) const SYSTEM: &str = "You summarize the earlier part of an AI agent's work so that \
the agent can continue without it. Keep every fact, result, identifier, number and decision \
the agent may still need, what it has tried, and what remains to do. Leave out pleasantries. \
Answer with the summary alone.";

/// How the request's user message begins (the mock model groups summarization requests by it).
pub(crate) const ASK: &str = "Summarize the agent's work below: its task, then an earlier \
summary if any, then each step with the tools' results.";

/// Bytes of the request's text besides the transcript, generously.
const FRAMING: u64 = 1024;

/// The messages a summary would stand for, when the run summarizes and its next context
/// does not fit whole.
pub(crate) fn due(state: &RunState) -> Option<Range<usize>> {
    if state.context.strategy != Strategy::Summarize || !crate::tokens::context(state).trimmed {
        return None;
    }
    context::compactable(state.messages(), state.context.keep_last_turns)
}

/// Output tokens a summary may take: `max_tokens`, at most a quarter of the budget.
pub(crate) fn max_tokens(state: &RunState) -> u32 {
    let quarter = u32::try_from(state.context.max_context_tokens / 4).unwrap_or(u32::MAX);
    state.max_tokens.min(quarter).max(1)
}

/// The summarization request's messages: the prompt, then the task and the transcript of
/// `range`, each message clipped to an equal share so the whole fits the run's budget.
pub(crate) fn request(state: &RunState, range: Range<usize>) -> Vec<Message> {
    let lines: Vec<String> = state.messages()[range].iter().map(line).collect();
    let room = state
        .context
        .max_context_tokens
        .saturating_sub(u64::from(max_tokens(state)))
        .saturating_sub(FRAMING + (SYSTEM.len() + ASK.len() + state.input.len()) as u64);
    let cap = context::water_level(lines.iter().map(|l| l.len() as u64).collect(), room);
    let mut transcript = String::new();
    for line in &lines {
        let cut = usize::try_from(cap).unwrap_or(usize::MAX).min(line.len());
        let end = line.floor_char_boundary(cut);
        transcript.push_str(&line[..end]);
        if end < line.len() {
            transcript.push_str(" […]");
        }
        transcript.push('\n');
    }
    vec![
        Message::System {
            content: SYSTEM.to_string(),
        },
        Message::User {
            content: format!("{ASK}\n\nTask: {}\n\n{transcript}", state.input),
        },
    ]
}

/// One message of the transcript, on one line.
fn line(message: &Message) -> String {
    match message {
        Message::System { content } => format!("system: {content}"),
        Message::User { content } => format!("user: {content}"),
        Message::Tool { content, .. } => format!("result: {content}"),
        Message::Assistant(reply) => {
            let mut text = format!("agent: {}", reply.content.as_deref().unwrap_or(""));
            for call in &reply.tool_calls {
                text.push_str(&format!(" [called {}({})]", call.name, call.arguments));
            }
            text
        }
    }
}
