//! Keeping every model call's context inside the model's window, pure.
//!
//! The fold keeps the whole conversation ([`RunState::messages`](crate::RunState)); before
//! each call the engine asks [`build`] for the messages to send, given a token estimator and
//! the budget (`[context] max_context_tokens`). What always stays: the head (the system prompt,
//! the input and a summary standing for earlier steps, if any) and the last
//! `keep_last_turns` turns. A turn is a model reply with its tool results (a step), or a
//! user message. To fit the rest:
//!
//! 0. the oldest turns no context can hold any more ([`beyond_reach`]: even their least form,
//!    with everything after them, exceeds the budget) are left out first; under `truncate`
//!    the fold forgets them for good, so a run's state does not grow with its length;
//! 1. a tool result larger than half of what the head leaves is clipped, with a note; a model
//!    reply that large has its largest tool-call arguments replaced by a note (arguments a
//!    toolbox refused for their size, say) and then its text clipped;
//! 2. the oldest tool results are replaced by a short note, turn by turn;
//! 3. the oldest whole turns are left out (a reply always with its results), and a note says
//!    how many steps are missing;
//! 4. if the kept turns still do not fit, their tool results are clipped to equal shares
//!    (and, if notes are all that fits, left out, oldest first).
//!
//! A tool call is never separated from its result: results are only shortened, and turns are
//! left out whole.

use std::borrow::Cow;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::message::{AssistantMessage, Message, ToolCall};
use crate::tool::ToolDef;

/// Tokens a chat message costs beyond its content (role, separators), generously.
pub const PER_MESSAGE: u64 = 8;

/// Tokens of the reply priming and request framing, generously.
pub const PER_REQUEST: u64 = 16;

/// Default `[context] keep_last_turns`.
pub const DEFAULT_KEEP_LAST_TURNS: u32 = 4;

/// The window assumed for a model chassis does not know (`[model] context_window` overrides).
pub const UNKNOWN_WINDOW: u64 = 32_768;

/// How a note about left-out or summarized steps begins; the mock model reads the count after
/// it to know which turn it is answering. Keep them in step.
pub const STEPS_NOTE_PREFIX: &str = "[context: ";

/// What happens when the conversation no longer fits, `[context] strategy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Old tool results, then old turns, are left out.
    #[default]
    Truncate,
    /// Old turns are summarized by a model call, journaled as `context_compacted`.
    Summarize,
}

impl Strategy {
    /// The spelling in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Truncate => "truncate",
            Strategy::Summarize => "summarize",
        }
    }
}

/// How a run keeps its context inside the model's window; journaled in `run_started`, so a
/// resumed run builds its contexts as it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextPolicy {
    /// What happens when the conversation does not fit.
    #[serde(default)]
    pub strategy: Strategy,
    /// Input tokens a call's context may hold (messages, tools and framing). Runs journaled
    /// before context management have no bound (`u64::MAX`).
    #[serde(default = "unbounded")]
    pub max_context_tokens: u64,
    /// Turns that always stay whole, besides the head.
    #[serde(default = "default_keep")]
    pub keep_last_turns: u32,
}

fn unbounded() -> u64 {
    u64::MAX
}

fn default_keep() -> u32 {
    DEFAULT_KEEP_LAST_TURNS
}

impl Default for ContextPolicy {
    /// No bound: what runs journaled before context management get.
    fn default() -> Self {
        ContextPolicy {
            strategy: Strategy::Truncate,
            max_context_tokens: u64::MAX,
            keep_last_turns: DEFAULT_KEEP_LAST_TURNS,
        }
    }
}

impl ContextPolicy {
    /// True for the policy of runs journaled before context management.
    pub fn is_unbounded(&self) -> bool {
        *self == ContextPolicy::default()
    }
}

/// The context windows of well-known models, in tokens, by model id without its provider (a
/// prefix matches its dated and sized variants); `None` for a model chassis does not know.
pub fn known_window(model: &str) -> Option<u64> {
    let bare = model.split_once(':').map_or(model, |(_, m)| m);
    // Longest prefixes first, so `gpt-4o` is not read as `gpt-4`.
    const TABLE: &[(&str, u64)] = &[
        ("gpt-4o-mini", 128_000),
        ("gpt-4o", 128_000),
        ("gpt-4.1", 1_047_576),
        ("gpt-4-turbo", 128_000),
        ("gpt-4", 8_192),
        ("gpt-3.5-turbo", 16_385),
        ("gpt-5", 400_000),
        ("o1", 200_000),
        ("o3", 200_000),
        ("o4-mini", 200_000),
        ("claude-", 200_000),
        ("gemini-1.5", 1_048_576),
        ("gemini-2", 1_048_576),
        ("llama3.1", 131_072),
        ("llama-3.1", 131_072),
        ("mistral-large", 131_072),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| bare.starts_with(prefix))
        .map(|&(_, window)| window)
}

/// `[context] max_context_tokens` when the spec leaves it out: the window, less the reply
/// (`max_tokens`), less a margin of 5% (at least 256 tokens) for what estimates miss.
pub fn default_budget(window: u64, max_tokens: u32) -> u64 {
    let margin = (window / 20).max(256);
    window
        .saturating_sub(u64::from(max_tokens))
        .saturating_sub(margin)
}

/// The estimate every context is built with: a message's bytes plus its framing, an upper
/// bound on its tokens (byte-level BPE tokens are at least one byte each). The fold forgets
/// by it too, so the two must stay one function.
pub fn message_bound(message: &Message) -> u64 {
    content_len(message) as u64 + PER_MESSAGE
}

/// The bytes of a message's content: text, call ids, tool names and arguments.
pub fn content_len(message: &Message) -> usize {
    match message {
        Message::System { content } | Message::User { content } => content.len(),
        Message::Tool { call_id, content } => call_id.len() + content.len(),
        Message::Assistant(reply) => {
            reply.content.as_deref().map_or(0, str::len)
                + reply
                    .tool_calls
                    .iter()
                    .map(|c| c.id.len() + c.name.len() + c.arguments.len())
                    .sum::<usize>()
        }
    }
}

/// An upper bound on the tokens the tool definitions take in a request.
pub fn tools_bound(tools: &[ToolDef]) -> u64 {
    tools
        .iter()
        .map(|t| {
            (t.name.len() + t.description.len()) as u64 + json_len(&t.parameters) + PER_MESSAGE
        })
        .sum()
}

/// The length of `value` as compact JSON, counted without building the text (this runs
/// before every call).
fn json_len(value: &serde_json::Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len() as u64;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Tokens the messages of a call may take under `policy`, by [`message_bound`]: what is left
/// of `max_context_tokens` after the tools and the request's framing.
pub fn budget(policy: &ContextPolicy, tools: &[ToolDef]) -> u64 {
    policy
        .max_context_tokens
        .saturating_sub(tools_bound(tools) + PER_REQUEST)
}

/// The note that stands for `steps` left-out steps.
pub fn steps_note(steps: u32) -> Message {
    Message::User {
        content: format!(
            "{STEPS_NOTE_PREFIX}{steps} earlier steps were left out to fit the context window]"
        ),
    }
}

/// The message that stands for `steps` summarized steps.
pub fn summary_note(steps: u32, summary: &str) -> Message {
    Message::User {
        content: format!(
            "{STEPS_NOTE_PREFIX}{steps} earlier steps are summarized here]\n{summary}"
        ),
    }
}

/// What a tool result left out says instead.
fn left_out(bytes: usize) -> String {
    format!("[result left out to fit the context window: {bytes} bytes]")
}

/// What stands for tool-call arguments left out of a context: a JSON object, as every provider
/// requires of arguments.
fn arguments_left_out(bytes: usize) -> String {
    format!("{{\"left_out\":\"arguments of {bytes} bytes, too large for the context window\"}}")
}

/// What ends a clipped tool result.
fn clipped(kept: usize, bytes: usize) -> String {
    format!("\n[clipped to fit the context window: {kept} of {bytes} bytes shown]")
}

/// The messages to send, and whether anything was shortened or left out.
#[derive(Debug)]
pub struct Context<'a> {
    /// The messages, in order.
    pub messages: Cow<'a, [Message]>,
    /// True when they are not the whole conversation.
    pub trimmed: bool,
}

/// The head, the turns, and which turns may go: how [`build`] and the summarizer see a
/// conversation.
#[derive(Debug)]
pub struct Shape {
    /// Messages before the first reply (system prompt, input, a summary).
    pub head: usize,
    /// Each turn's range of messages.
    pub turns: Vec<Range<usize>>,
    /// How many of the first turns may be left out or summarized.
    pub droppable: usize,
}

impl Shape {
    /// Splits `messages` into head and turns; the last `keep_last_turns` (at least one) stay.
    pub fn of(messages: &[Message], keep_last_turns: u32) -> Shape {
        let head = messages
            .iter()
            .position(|m| matches!(m, Message::Assistant(_)))
            .unwrap_or(messages.len());
        let mut turns: Vec<Range<usize>> = Vec::new();
        for (i, message) in messages.iter().enumerate().skip(head) {
            match (message, turns.last_mut()) {
                (Message::Tool { .. }, Some(turn)) => turn.end = i + 1,
                _ => turns.push(i..i + 1),
            }
        }
        let keep = (keep_last_turns.max(1) as usize).min(turns.len());
        let droppable = turns.len() - keep;
        Shape {
            head,
            turns,
            droppable,
        }
    }
}

/// The context to send: `messages` as they are when they fit `budget` (tokens for the
/// messages alone, as `estimate` counts them), else shortened as the module says. `forgotten`
/// counts the steps the fold already left out of `messages` for good ([`beyond_reach`]): the
/// context then always says they are missing.
pub fn build<'a>(
    messages: &'a [Message],
    budget: u64,
    keep_last_turns: u32,
    forgotten: u32,
    estimate: &dyn Fn(&Message) -> u64,
) -> Context<'a> {
    let sizes: Vec<u64> = messages.iter().map(estimate).collect();
    let total: u64 = sizes.iter().sum();
    if total <= budget && forgotten == 0 {
        return Context {
            messages: Cow::Borrowed(messages),
            trimmed: false,
        };
    }
    let shape = Shape::of(messages, keep_last_turns);
    let mut trim = Trim {
        messages,
        sizes,
        total,
        replaced: vec![None; messages.len()],
        estimate,
    };
    let head: u64 = trim.sizes[..shape.head].iter().sum();

    // 0. Turns no context can hold go first, so they do not crowd out what can stay.
    let gone = beyond_reach(messages, &shape, budget, estimate);
    let steps_in = |turn: &Range<usize>| {
        turn.clone()
            .filter(|&i| matches!(messages[i], Message::Assistant(_)))
            .count() as u32
    };
    let mut dropped_turns = gone;
    let mut dropped_steps = forgotten;
    for turn in &shape.turns[..gone] {
        dropped_steps += steps_in(turn);
        trim.total -= trim.sizes[turn.clone()].iter().sum::<u64>();
    }
    let reachable = shape.turns.get(gone).map_or(messages.len(), |t| t.start);

    // 1. A result too large for its share is clipped wherever it is.
    let share = budget.saturating_sub(head) / 2;
    for (i, message) in messages.iter().enumerate().skip(reachable) {
        if trim.sizes[i] > share {
            match message {
                Message::Assistant(_) => trim.shrink_reply(i, share),
                _ => trim.clip(i, share),
            }
        }
    }

    // 2. The oldest tool results are left out, turn by turn.
    let droppable = &shape.turns[gone..shape.droppable];
    'results: for turn in droppable {
        for i in turn.clone() {
            if trim.total <= budget {
                break 'results;
            }
            trim.leave_out(i);
        }
    }

    // 3. The oldest whole turns are left out.
    let note_for = |steps: u32| {
        if steps > 0 {
            estimate(&steps_note(steps))
        } else {
            0
        }
    };
    let mut note = note_for(dropped_steps);
    while trim.total + note > budget && dropped_turns < shape.droppable {
        let turn = shape.turns[dropped_turns].clone();
        dropped_steps += steps_in(&turn);
        trim.total -= trim.sizes[turn].iter().sum::<u64>();
        dropped_turns += 1;
        note = note_for(dropped_steps);
    }

    // 4. The kept turns' results are clipped to equal shares of what is left.
    let kept = shape
        .turns
        .get(dropped_turns)
        .map_or(messages.len(), |t| t.start);
    if trim.total + note > budget {
        let results: Vec<usize> = (kept..messages.len())
            .filter(|&i| matches!(messages[i], Message::Tool { .. }))
            .collect();
        let results_size: u64 = results.iter().map(|&i| trim.sizes[i]).sum();
        let others = trim.total - results_size + note;
        let cap = water_level(
            results.iter().map(|&i| trim.sizes[i]).collect(),
            budget.saturating_sub(others),
        );
        for &i in &results {
            if trim.sizes[i] > cap {
                trim.clip(i, cap);
            }
        }
        // 5. Clipping to a share smaller than a note can still overshoot: then the kept
        // results are left out, oldest first.
        for i in results {
            if trim.total + note <= budget {
                break;
            }
            trim.leave_out(i);
        }
    }

    let mut out = Vec::with_capacity(shape.head + 1 + messages.len() - kept);
    for i in (0..shape.head).chain(kept..messages.len()) {
        if i == kept && dropped_steps > 0 {
            out.push(steps_note(dropped_steps));
        }
        out.push(trim.take(i));
    }
    if kept == messages.len() && dropped_steps > 0 {
        out.push(steps_note(dropped_steps));
    }
    Context {
        messages: Cow::Owned(out),
        trimmed: true,
    }
}

/// How many of the first turns no context can hold, now or later: with the head, even the
/// least `build` can make of them and of every turn after them exceeds `budget`, and later
/// messages only add. Never one of the turns that always stay. The fold forgets these turns
/// (under `truncate`), so a run's state stops growing with its length.
///
/// `estimate` must not grow when content shrinks (true of [`message_bound`]).
pub fn beyond_reach(
    messages: &[Message],
    shape: &Shape,
    budget: u64,
    estimate: &dyn Fn(&Message) -> u64,
) -> usize {
    let mut least: u64 = messages[..shape.head].iter().map(estimate).sum();
    for (t, turn) in shape.turns.iter().enumerate().rev() {
        least = least.saturating_add(turn.clone().map(|i| floor(&messages[i], estimate)).sum());
        if least > budget {
            return (t + 1).min(shape.droppable);
        }
    }
    0
}

/// The least `estimate` says of any form `build` may give `message`: a result as it is, left
/// out or clipped to nothing, whichever is shortest; a reply with each of its arguments and
/// its text so; anything else as it is.
fn floor(message: &Message, estimate: &dyn Fn(&Message) -> u64) -> u64 {
    let shortest = |text: &str, forms: &[String]| -> String {
        forms
            .iter()
            .filter(|form| form.len() < text.len())
            .min_by_key(|form| form.len())
            .cloned()
            .unwrap_or_else(|| text.to_string())
    };
    match message {
        Message::Tool { call_id, content } => estimate(&Message::Tool {
            call_id: call_id.clone(),
            content: shortest(
                content,
                &[left_out(content.len()), clipped(0, content.len())],
            ),
        }),
        Message::Assistant(reply) => estimate(&Message::Assistant(AssistantMessage {
            content: (reply.content.as_deref())
                .map(|text| shortest(text, &[clipped(0, text.len())])),
            tool_calls: reply
                .tool_calls
                .iter()
                .map(|c| ToolCall {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: shortest(&c.arguments, &[arguments_left_out(c.arguments.len())]),
                })
                .collect(),
        })),
        other => estimate(other),
    }
}

/// The messages a summary may stand for: after the system prompt and the input, up to the
/// turns that always stay (an earlier summary included); `None` when that holds no reply.
pub fn compactable(messages: &[Message], keep_last_turns: u32) -> Option<Range<usize>> {
    let shape = Shape::of(messages, keep_last_turns);
    let end = shape.turns.get(shape.droppable)?.start;
    let start = messages
        .iter()
        .position(|m| matches!(m, Message::User { .. }))?
        + 1;
    let range = start..end;
    messages
        .get(range.clone())?
        .iter()
        .any(|m| matches!(m, Message::Assistant(_)))
        .then_some(range)
}

/// The length of the longest start of `text` (cut at a char boundary) that `fits`, by
/// bisection; 0 when none does.
fn longest_fitting_start(text: &str, fits: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, text.len());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(text.floor_char_boundary(mid)) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    text.floor_char_boundary(lo)
}

/// The largest cap `c` such that the sizes, each cut to `c`, sum to at most `room`.
pub fn water_level(mut sizes: Vec<u64>, room: u64) -> u64 {
    sizes.sort_unstable();
    let mut left = room;
    let mut remaining = sizes.len() as u64;
    for size in sizes {
        // Every remaining size is at least `size`: cutting them all to `size` costs this much.
        if size.saturating_mul(remaining) <= left {
            left -= size;
            remaining -= 1;
        } else {
            return left / remaining;
        }
    }
    u64::MAX
}

/// The work of [`build`]: sizes as they stand, and the tool results it replaced.
struct Trim<'a, 'e> {
    messages: &'a [Message],
    sizes: Vec<u64>,
    total: u64,
    replaced: Vec<Option<Message>>,
    estimate: &'e dyn Fn(&Message) -> u64,
}

impl Trim<'_, '_> {
    /// The tool result at `i`, its content as given.
    fn original(&self, i: usize) -> Option<(&str, &str)> {
        match &self.messages[i] {
            Message::Tool { call_id, content } => Some((call_id, content)),
            _ => None,
        }
    }

    fn replace(&mut self, i: usize, message: Message) {
        let size = (self.estimate)(&message);
        if size < self.sizes[i] {
            self.total = self.total - self.sizes[i] + size;
            self.sizes[i] = size;
            self.replaced[i] = Some(message);
        }
    }

    /// Replaces a tool result by a note naming its size.
    fn leave_out(&mut self, i: usize) {
        let Some((call_id, content)) = self.original(i) else {
            return;
        };
        let note = Message::Tool {
            call_id: call_id.to_string(),
            content: left_out(content.len()),
        };
        self.replace(i, note);
    }

    /// Clips a tool result to the longest start of it that fits `cap` with its note, or
    /// leaves it out when not even the note fits.
    fn clip(&mut self, i: usize, cap: u64) {
        let Some((call_id, content)) = self.original(i) else {
            return;
        };
        let with = |kept: usize| Message::Tool {
            call_id: call_id.to_string(),
            content: format!("{}{}", &content[..kept], clipped(kept, content.len())),
        };
        let fits = |kept: usize| (self.estimate)(&with(kept)) <= cap;
        if !fits(0) {
            return self.leave_out(i);
        }
        let message = with(longest_fitting_start(content, fits));
        self.replace(i, message);
    }

    /// Shrinks the reply at `i` toward `cap`: its tool calls' arguments replaced by a note,
    /// largest first, until it fits; then, if it still does not, its text clipped.
    fn shrink_reply(&mut self, i: usize, cap: u64) {
        let Message::Assistant(reply) = &self.messages[i] else {
            return;
        };
        let with = |left_out: &[bool], text: Option<String>| {
            Message::Assistant(AssistantMessage {
                content: text,
                tool_calls: reply
                    .tool_calls
                    .iter()
                    .zip(left_out)
                    .map(|(call, &out)| ToolCall {
                        id: call.id.clone(),
                        name: call.name.clone(),
                        arguments: if out {
                            arguments_left_out(call.arguments.len())
                        } else {
                            call.arguments.clone()
                        },
                    })
                    .collect(),
            })
        };
        let mut order: Vec<usize> = (0..reply.tool_calls.len()).collect();
        order.sort_by_key(|&c| std::cmp::Reverse(reply.tool_calls[c].arguments.len()));
        let mut left_out = vec![false; reply.tool_calls.len()];
        let mut message = with(&left_out, reply.content.clone());
        for c in order {
            let bytes = reply.tool_calls[c].arguments.len();
            if (self.estimate)(&message) <= cap || bytes <= arguments_left_out(bytes).len() {
                break;
            }
            left_out[c] = true;
            message = with(&left_out, reply.content.clone());
        }
        if let Some(text) = reply.content.as_deref()
            && (self.estimate)(&message) > cap
        {
            let clipped_to = |kept: usize| {
                with(
                    &left_out,
                    Some(format!("{}{}", &text[..kept], clipped(kept, text.len()))),
                )
            };
            let kept =
                longest_fitting_start(text, |kept| (self.estimate)(&clipped_to(kept)) <= cap);
            message = clipped_to(kept);
        }
        self.replace(i, message);
    }

    fn take(&mut self, i: usize) -> Message {
        self.replaced[i]
            .take()
            .unwrap_or_else(|| self.messages[i].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_is_the_length_of_the_compact_text() {
        let value = serde_json::json!({"type": "object", "properties": {"path": {"type": "string", "description": "naïve ☕"}}});
        assert_eq!(json_len(&value), value.to_string().len() as u64);
    }
}
