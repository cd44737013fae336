//! How many input tokens the next model call will send, for limit checks.
//!
//! Byte-level BPE tokens are at least one byte each, so the context's bytes (plus framing) are a
//! cheap upper bound that is exact enough far from a limit. Near a limit, OpenAI models are
//! counted with their real tokenizer; other models keep the conservative bound.

use std::sync::OnceLock;

use chassis_core::context::{self, Context, PER_MESSAGE, PER_REQUEST};
use chassis_core::{Message, RunState};
use tiktoken_rs::CoreBPE;

/// The context the next call sends: the conversation, kept inside the run's
/// `max_context_tokens` (less the tools and framing) as its `[context]` says, by this module's
/// byte bound.
pub(crate) fn context(state: &RunState) -> Context<'_> {
    let policy = &state.context;
    context::build(
        state.messages(),
        context::budget(policy, &state.tools),
        policy.keep_last_turns,
        state.forgotten_steps,
        &context::message_bound,
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
        .map(context::message_bound)
        .sum();
    reported.saturating_add(added)
}

/// An upper bound on the input tokens of a call sending `messages`: never less than the real
/// count.
pub(crate) fn upper_bound(state: &RunState, messages: &[Message]) -> u64 {
    request_bound(messages) + context::tools_bound(&state.tools)
}

/// An upper bound on the input tokens of a request sending `messages` and no tools.
pub(crate) fn request_bound(messages: &[Message]) -> u64 {
    messages.iter().map(context::message_bound).sum::<u64>() + PER_REQUEST
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
    Some(precise_request(messages, model)? + tools)
}

/// [`precise`] for a request sending `messages` and no tools.
pub(crate) fn precise_request(messages: &[Message], model: &str) -> Option<u64> {
    let bpe = tokenizer_for(model)?;
    let count = |text: &str| bpe.encode_ordinary(text).len() as u64;
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
    Some(messages + PER_REQUEST)
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
                forked_from: None,
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
}
