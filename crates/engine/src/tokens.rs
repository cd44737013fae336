//! How many input tokens the next model call will send, for limit checks.
//!
//! Byte-level BPE tokens are at least one byte each, so the context's bytes (plus framing) are a
//! cheap upper bound that is exact enough far from a limit. Near a limit, OpenAI models are
//! counted with their real tokenizer; other models keep the conservative bound.

use std::sync::OnceLock;

use chassis_core::context::{self, Context};
use chassis_core::{Message, RunState};
use tiktoken_rs::CoreBPE;

/// Tokens a chat message costs beyond its content (role, separators), generously.
const PER_MESSAGE: u64 = 8;

/// Tokens of the reply priming and request framing, generously.
const PER_REQUEST: u64 = 16;

/// The context the next call sends: the conversation, kept inside the run's
/// `max_context_tokens` (less the tools and framing) as its `[context]` says, by this module's
/// byte bound.
pub(crate) fn context(state: &RunState) -> Context<'_> {
    let policy = &state.context;
    let budget = policy
        .max_context_tokens
        .saturating_sub(tools_bound(state) + PER_REQUEST);
    context::build(
        state.messages(),
        budget,
        policy.keep_last_turns,
        &message_bound,
    )
}

/// The input tokens the next call sends at least, by the provider's own count: what it
/// reported for the last call, whose context the next one repeats, plus a bound on what was
/// added since (the reply and the tool results); 0 before any call was answered. Only for a
/// context that is the whole conversation: a shortened one need not repeat the last.
pub(crate) fn provider_floor(state: &RunState) -> u64 {
    let Some((reported, sent)) = state.last_call_input else {
        return 0;
    };
    let added: u64 = state
        .messages()
        .get(sent..)
        .unwrap_or_default()
        .iter()
        .map(|m| content_len(m) as u64 + PER_MESSAGE)
        .sum();
    reported.saturating_add(added)
}

/// An upper bound on the input tokens of a call sending `messages`: never less than the real
/// count.
pub(crate) fn upper_bound(state: &RunState, messages: &[Message]) -> u64 {
    let messages: u64 = messages.iter().map(message_bound).sum();
    messages + tools_bound(state) + PER_REQUEST
}

fn message_bound(message: &Message) -> u64 {
    content_len(message) as u64 + PER_MESSAGE
}

fn tools_bound(state: &RunState) -> u64 {
    state
        .tools
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

/// A count with the model's tokenizer when chassis has it (OpenAI model families), plus the
/// same generous framing as the bound; `None` for models without a known tokenizer.
pub(crate) fn precise(state: &RunState, messages: &[Message], model: &str) -> Option<u64> {
    let bpe = tokenizer_for(model)?;
    let count = |text: &str| bpe.encode_ordinary(text).len() as u64;
    let tools: u64 = state
        .tools
        .iter()
        .map(|t| {
            count(&t.name) + count(&t.description) + count(&t.parameters.to_string()) + PER_MESSAGE
        })
        .sum();
    let messages: u64 = messages
        .iter()
        .map(|m| {
            PER_MESSAGE
                + match m {
                    Message::System { content } | Message::User { content } => count(content),
                    Message::Tool { content, call_id } => count(content) + count(call_id),
                    Message::Assistant(reply) => {
                        count(reply.content.as_deref().unwrap_or(""))
                            + reply
                                .tool_calls
                                .iter()
                                .map(|c| count(&c.id) + count(&c.name) + count(&c.arguments))
                                .sum::<u64>()
                    }
                }
        })
        .sum();
    Some(messages + tools + PER_REQUEST)
}

fn content_len(message: &Message) -> usize {
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

/// The tokenizer of an OpenAI model family, built on first use (it takes a while).
fn tokenizer_for(model: &str) -> Option<&'static CoreBPE> {
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    let bare = model.split_once(':').map_or(model, |(_, m)| m);
    let o200k = [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "chatgpt-4o",
    ];
    let cl100k = ["gpt-4", "gpt-3.5"];
    if o200k.iter().any(|p| bare.starts_with(p)) {
        O200K
            .get_or_init(|| tiktoken_rs::o200k_base().ok())
            .as_ref()
    } else if cl100k.iter().any(|p| bare.starts_with(p)) {
        CL100K
            .get_or_init(|| tiktoken_rs::cl100k_base().ok())
            .as_ref()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chassis_core::Event;

    fn state(text: &str) -> RunState {
        let mut state = RunState::default();
        state
            .apply(&Event::RunStarted(Box::new(chassis_core::RunStart {
                agent: "a".into(),
                spec_path: "/a".into(),
                input: text.into(),
                system: "You are terse.".into(),
                model: "openai:gpt-4o-mini".into(),
                fallbacks: vec![],
                tools: vec![].into(),
                limits: Default::default(),
                max_tokens: 10,
                prices: Default::default(),
                at_ms: 0,
                max_repairs: 2,
                park_retry_ms: chassis_core::event::DEFAULT_PARK_RETRY_MS,
                context: Default::default(),
                version: String::new(),
                version_label: None,
                approvals: Default::default(),
                tags: Default::default(),
            })))
            .unwrap();
        state
    }

    #[test]
    fn the_bound_is_never_below_the_real_count() {
        for text in [
            "hello world",
            "naïve café ☕ 数据",
            &"lorem ipsum dolor ".repeat(200),
        ] {
            let s = state(text);
            let exact = precise(&s, s.messages(), "openai:gpt-4o-mini").unwrap();
            let bound = upper_bound(&s, s.messages());
            assert!(bound >= exact, "{bound} < {exact} for {text:?}");
            // The tokenizer counts English at several characters per token.
            if text.len() > 1000 {
                assert!(exact * 2 < bound, "{exact} vs {bound}");
            }
        }
        let x = state("x");
        assert!(precise(&x, x.messages(), "anthropic:claude-haiku-4-5").is_none());
    }

    #[test]
    fn json_len_is_the_length_of_the_compact_text() {
        let value = serde_json::json!({"type": "object", "properties": {"path": {"type": "string", "description": "naïve ☕"}}});
        assert_eq!(json_len(&value), value.to_string().len() as u64);
    }
}
