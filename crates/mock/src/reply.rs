//! Choosing and filling in the scripted reply for a request; pure, no IO.
//!
//! Every dialect reduces its request to a [`Conversation`] and writes the [`Reply`] in its own
//! wire format, so the script means the same on every endpoint.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

use crate::Script;

/// How chassis tells a model that one of its calls was refused before running (bad arguments,
/// unknown tool). Kept in step with `chassis_core::state::REFUSED_PREFIX`.
pub(crate) const REFUSED_PREFIX: &str = "error: call refused, not executed: ";

/// How chassis tells a model that earlier steps were left out of its context or summarized:
/// the count follows. Kept in step with `chassis_core::context::STEPS_NOTE_PREFIX`.
pub(crate) const STEPS_NOTE_PREFIX: &str = "[context: ";

/// Counts the turn to answer: one per assistant message (and per step a note says was left
/// out or summarized), except a reply whose every tool
/// result came back refused. The scripted model then "repairs" by making that turn again,
/// as a real model corrects a call it got wrong.
#[derive(Default)]
pub(crate) struct TurnCounter {
    turn: u32,
    results: u32,
    refused: u32,
}

impl TurnCounter {
    /// An assistant message.
    pub(crate) fn assistant(&mut self) {
        self.settle();
        self.turn = self.turn.saturating_add(1);
    }

    /// A user message: a note about left-out steps counts them.
    pub(crate) fn user(&mut self, text: &str) {
        let Some(rest) = text.strip_prefix(STEPS_NOTE_PREFIX) else {
            return;
        };
        let digits = rest
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or("");
        if let Ok(steps) = digits.parse::<u32>() {
            self.settle();
            self.turn = self.turn.saturating_add(steps);
        }
    }

    /// A tool result answering the latest assistant message.
    pub(crate) fn tool_result(&mut self, text: &str) {
        self.results += 1;
        if text.starts_with(REFUSED_PREFIX) {
            self.refused += 1;
        }
    }

    /// The turn to answer.
    pub(crate) fn finish(mut self) -> u32 {
        self.settle();
        self.turn
    }

    fn settle(&mut self) {
        if self.results > 0 && self.results == self.refused {
            self.turn = self.turn.saturating_sub(1);
        }
        self.results = 0;
        self.refused = 0;
    }
}

/// Text sent once a scenario's last turn was a tool-call turn and the client asks for more.
const EXHAUSTED: &str = "mock script exhausted";

/// Tool name used for [`FaultKind::BadArgs`](crate::FaultKind::BadArgs) when the script has none.
const FALLBACK_TOOL: &str = "mock_tool";

/// What the script sees of a request, whatever its wire format.
#[derive(Debug)]
pub(crate) struct Conversation<'a> {
    /// Text of the first user message.
    pub(crate) input: Cow<'a, str>,
    /// Text of the last tool result, empty if none.
    pub(crate) last_tool_result: Cow<'a, str>,
    /// Text of the last user message (the input, or a later turn of a conversation).
    pub(crate) last_user: Cow<'a, str>,
    /// Number of assistant messages: the index of the turn to answer.
    pub(crate) turn: u32,
    /// Characters of all message texts, for the estimated input tokens.
    pub(crate) prompt_chars: usize,
}

/// The assistant message to send, placeholders already substituted.
#[derive(Debug, PartialEq)]
pub(crate) struct Reply {
    pub(crate) content: Option<String>,
    pub(crate) tool_calls: Vec<ReplyCall>,
}

/// One tool call of a reply, with its arguments already serialized.
#[derive(Debug, PartialEq)]
pub(crate) struct ReplyCall {
    pub(crate) name: String,
    pub(crate) arguments: String,
}

impl Reply {
    /// Estimated output tokens: text plus serialized tool arguments.
    pub(crate) fn completion_tokens(&self) -> u64 {
        let chars = self.content.as_deref().map_or(0, |c| c.chars().count())
            + self
                .tool_calls
                .iter()
                .map(|c| c.arguments.chars().count())
                .sum::<usize>();
        tokens(chars)
    }
}

impl Reply {
    /// The reply of a model that was offered no tools: a tool-call turn comes back as text, its
    /// own or the calls written out as JSON (one a line), as small models write them.
    pub(crate) fn without_tools(self) -> Reply {
        if self.tool_calls.is_empty() {
            return self;
        }
        let written = || {
            let lines: Vec<String> = self
                .tool_calls
                .iter()
                .map(|call| {
                    let arguments = serde_json::from_str::<Value>(&call.arguments)
                        .unwrap_or_else(|_| Value::String(call.arguments.clone()));
                    serde_json::json!({"name": call.name, "arguments": arguments}).to_string()
                })
                .collect();
            lines.join("\n")
        };
        let content = match &self.content {
            Some(text) if !text.is_empty() => text.clone(),
            _ => written(),
        };
        Reply {
            content: Some(content),
            tool_calls: Vec::new(),
        }
    }
}

/// Estimated tokens for `chars` characters: roughly four characters per token, and never zero.
pub(crate) fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

/// The reply for `conv`, or `None` when no scenario matches its input.
///
/// With `break_arguments` the reply carries a tool call whose arguments are not valid JSON.
pub(crate) fn answer(
    script: &Script,
    conv: &Conversation<'_>,
    break_arguments: bool,
) -> Option<Reply> {
    let scenario = script.scenario_for(&conv.input)?;
    let turn = match scenario.turns.get(conv.turn as usize) {
        Some(turn) => Some(turn),
        // Repeating a final text turn is harmless; repeating a tool call would loop the client.
        None => scenario
            .turns
            .last()
            .filter(|turn| turn.tool_calls.is_empty()),
    };
    let mut reply = match turn {
        Some(turn) => Reply {
            content: turn.text.as_deref().map(|text| substitute(text, conv)),
            tool_calls: turn
                .tool_calls
                .iter()
                .map(|call| ReplyCall {
                    name: call.name.clone(),
                    arguments: serialize_arguments(&call.arguments, conv),
                })
                .collect(),
        },
        None => Reply {
            content: Some(EXHAUSTED.to_owned()),
            tool_calls: Vec::new(),
        },
    };
    if break_arguments {
        if reply.tool_calls.is_empty() {
            let call = match script.first_tool_call(scenario) {
                Some(call) => ReplyCall {
                    name: call.name.clone(),
                    arguments: serialize_arguments(&call.arguments, conv),
                },
                None => ReplyCall {
                    name: FALLBACK_TOOL.to_owned(),
                    arguments: "{}".to_owned(),
                },
            };
            reply = Reply {
                content: None,
                tool_calls: vec![call],
            };
        }
        // Serialized objects end in `}`; without it they are truncated JSON, as from a cut stream.
        reply.tool_calls[0].arguments.pop();
    }
    Some(reply)
}

fn serialize_arguments(
    arguments: &serde_json::Map<String, Value>,
    conv: &Conversation<'_>,
) -> String {
    let mut value = Value::Object(arguments.clone());
    substitute_strings(&mut value, conv);
    value.to_string()
}

fn substitute_strings(value: &mut Value, conv: &Conversation<'_>) {
    match value {
        Value::String(text) => {
            if text.contains('{') {
                *text = substitute(text, conv);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| substitute_strings(v, conv)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute_strings(v, conv)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Replaces `{input}`, `{last_tool_result}`, `{last_user}` and `{turn}` in one pass, so substituted text is
/// never itself scanned for placeholders.
fn substitute(template: &str, conv: &Conversation<'_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        if let Some(after) = tail.strip_prefix("{input}") {
            out.push_str(&conv.input);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{last_tool_result}") {
            out.push_str(&conv.last_tool_result);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{last_user}") {
            out.push_str(&conv.last_user);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{turn}") {
            let _ = write!(out, "{}", conv.turn);
            rest = after;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv<'a>(input: &'a str, tool: &'a str, turn: u32) -> Conversation<'a> {
        Conversation {
            input: Cow::Borrowed(input),
            last_tool_result: Cow::Borrowed(tool),
            last_user: Cow::Borrowed(input),
            turn,
            prompt_chars: 0,
        }
    }

    fn script() -> Script {
        Script::from_toml_str(
            r#"
            [[scenario]]
            when_input_contains = "refund"
            [[scenario.turn]]
            tool_calls = [{ name = "read_file", arguments = { path = "{input}.txt", n = [1, "{turn}"] } }]
            [[scenario.turn]]
            text = "notes: {last_tool_result}"

            [[scenario]]
            [[scenario.turn]]
            text = "hello {input}"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn placeholders_are_replaced_once() {
        let c = conv("{turn}", "{input}", 3);
        assert_eq!(
            substitute("a {input} b {last_tool_result} c {turn} {other} {", &c),
            "a {turn} b {input} c 3 {other} {"
        );
    }

    #[test]
    fn tool_call_arguments_are_substituted() {
        let reply = answer(&script(), &conv("refund", "", 0), false).unwrap();
        assert_eq!(reply.content, None);
        assert_eq!(reply.tool_calls[0].name, "read_file");
        let args: Value = serde_json::from_str(&reply.tool_calls[0].arguments).unwrap();
        assert_eq!(
            args,
            serde_json::json!({"path": "refund.txt", "n": [1, "0"]})
        );
    }

    #[test]
    fn past_the_end() {
        let s = script();
        let text = answer(&s, &conv("hi", "", 5), false).unwrap();
        assert_eq!(text.content.as_deref(), Some("hello hi"));
        // The refund scenario ends in a text turn, so it repeats too.
        let again = answer(&s, &conv("refund", "x", 7), false).unwrap();
        assert_eq!(again.content.as_deref(), Some("notes: x"));

        let tools_last = Script::from_toml_str(
            "[[scenario]]\n[[scenario.turn]]\ntool_calls = [{ name = \"ls\" }]\n",
        )
        .unwrap();
        let exhausted = answer(&tools_last, &conv("", "", 1), false).unwrap();
        assert_eq!(exhausted.content.as_deref(), Some(EXHAUSTED));
        assert!(exhausted.tool_calls.is_empty());
    }

    #[test]
    fn no_scenario_matches() {
        let only_refund = Script::from_toml_str(
            "[[scenario]]\nwhen_input_contains = \"refund\"\n[[scenario.turn]]\ntext = \"x\"\n",
        )
        .unwrap();
        assert_eq!(answer(&only_refund, &conv("hello", "", 0), false), None);
    }

    #[test]
    fn broken_arguments() {
        let s = script();
        let broken = answer(&s, &conv("refund", "", 0), true).unwrap();
        assert!(serde_json::from_str::<Value>(&broken.tool_calls[0].arguments).is_err());

        // A text turn borrows the first scripted tool, even from another scenario.
        let borrowed = answer(&s, &conv("hi", "", 0), true).unwrap();
        assert_eq!(borrowed.content, None);
        assert_eq!(borrowed.tool_calls[0].name, "read_file");
        assert!(serde_json::from_str::<Value>(&borrowed.tool_calls[0].arguments).is_err());

        let text_only =
            Script::from_toml_str("[[scenario]]\n[[scenario.turn]]\ntext = \"x\"\n").unwrap();
        let fallback = answer(&text_only, &conv("", "", 0), true).unwrap();
        assert_eq!(fallback.tool_calls[0].name, FALLBACK_TOOL);
        assert_eq!(fallback.tool_calls[0].arguments, "{");
    }

    #[test]
    fn without_tools_a_call_is_written_out() {
        let s = script();
        let call = answer(&s, &conv("refund", "", 0), false).unwrap();
        let written = call.without_tools();
        assert!(written.tool_calls.is_empty());
        let line: Value = serde_json::from_str(written.content.as_deref().unwrap()).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"name": "read_file", "arguments": {"path": "refund.txt", "n": [1, "0"]}})
        );
        let text = answer(&s, &conv("hi", "", 0), false).unwrap();
        assert_eq!(text.without_tools().content.as_deref(), Some("hello hi"));
        let both = Reply {
            content: Some("let me look".to_owned()),
            tool_calls: vec![ReplyCall {
                name: "ls".to_owned(),
                arguments: "{".to_owned(),
            }],
        };
        let kept = both.without_tools();
        assert_eq!(kept.content.as_deref(), Some("let me look"));
        assert!(kept.tool_calls.is_empty());
    }

    #[test]
    fn token_counts_are_at_least_one() {
        assert_eq!(tokens(0), 1);
        assert_eq!(tokens(4), 1);
        assert_eq!(tokens(5), 2);
    }
}

#[cfg(test)]
mod turn_tests {
    use super::*;

    #[test]
    fn a_reply_whose_calls_were_all_refused_is_made_again() {
        let mut t = TurnCounter::default();
        t.assistant();
        t.tool_result("ok");
        t.assistant();
        t.tool_result(&format!("{REFUSED_PREFIX}bad arguments"));
        assert_eq!(t.finish(), 1, "the refused turn is repeated");

        let mut t = TurnCounter::default();
        t.assistant();
        t.tool_result(&format!("{REFUSED_PREFIX}bad arguments"));
        t.tool_result("ok");
        assert_eq!(t.finish(), 1, "a partly refused turn counts");

        let mut t = TurnCounter::default();
        t.assistant();
        assert_eq!(t.finish(), 1, "a text reply counts");
    }
}

#[cfg(test)]
mod steps_note_tests {
    use super::*;

    #[test]
    fn a_note_of_left_out_steps_counts_them_as_turns() {
        let mut turns = TurnCounter::default();
        turns.user("[context: 37 earlier steps were left out to fit the context window]");
        turns.user("an ordinary message");
        turns.user("[context: nonsense]");
        turns.assistant();
        turns.tool_result("ok");
        assert_eq!(turns.finish(), 38);
    }
}
