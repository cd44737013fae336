//! Model clients: the [`ModelClient`] trait, the OpenAI-compatible chat-completions client and
//! the Anthropic Messages client.
//!
//! A client turns the runtime's context ([`ChatRequest`]) into one provider call and the
//! provider's answer into a [`ChatResponse`]. Resilience (retries, fallbacks, breakers) wraps
//! clients as layers; a client itself makes exactly one attempt. The HTTP exchange is shared
//! (`exchange.rs`); each client is only its dialect, whole or streamed (`assemble.rs`).

mod anthropic;
mod assemble;
mod breaker;
pub mod cassette;
mod deltas;
mod error;
mod exchange;
mod fallback;
mod http;
mod openai;
pub mod rate;
mod report;
mod retry;
mod sse;

use std::borrow::Cow;

use async_trait::async_trait;
use chassis_core::{AssistantMessage, Message, ToolDef, Usage};

pub use anthropic::AnthropicClient;
pub use breaker::{Admission, Breaker, BreakerConfig, BreakerState, CircuitBreaker, breaker_for};
pub use chassis_core::spec::{ToolCallContent, ToolChoice};
pub use deltas::{Delta, DeltaLog, DeltaSink, Deltas};
pub use error::{Error, parse_retry_after};
pub use fallback::{Fallback, Link};
pub use http::{DEFAULT_MAX_STREAMS, HttpOptions, HttpVersion, USER_AGENT};
pub use openai::OpenAiClient;
pub use rate::{Gate, RateLimited};
pub use report::{CallEvent, Reporter};
pub use retry::{Retry, RetryPolicy, jitter};

/// How long a model call may take, in its phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the connection.
    pub connect: std::time::Duration,
    /// The whole call, from sending the request to the last byte of the answer.
    pub total: std::time::Duration,
    /// Silence between two chunks of the answer (a stalled stream or a hung host).
    pub idle: std::time::Duration,
}

impl Timeouts {
    /// A total timeout, with the connect and idle timeouts no longer than it (and the connect
    /// timeout at most 10 s).
    pub fn total(total: std::time::Duration) -> Timeouts {
        Timeouts {
            connect: total.min(std::time::Duration::from_secs(10)),
            total,
            idle: total,
        }
    }
}

/// How a client phrases its calls, beyond HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallOptions {
    /// Ask for the answer as a stream of events (so the idle timeout bounds each chunk and
    /// deltas reach observers as they come) rather than whole.
    pub stream: bool,
    /// What the model may do with the tools; sent whenever tools are offered.
    pub tool_choice: ToolChoice,
    /// OpenAI dialect: the `content` of an assistant message that only calls tools. `None`
    /// decides by host: `null` for `api.openai.com`, which documents it, and `""` elsewhere,
    /// since several compatible servers refuse `null`.
    pub tool_call_content: Option<ToolCallContent>,
    /// Largest reply read (`[limits] max_reply_bytes`): a whole answer's body, or a streamed
    /// answer's text and tool arguments together. Past it reading stops and the attempt
    /// fails, the size named.
    pub max_reply_bytes: u64,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            stream: true,
            tool_choice: ToolChoice::Auto,
            tool_call_content: None,
            max_reply_bytes: chassis_core::spec::DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

/// The `tool_choice` a call sends for `messages`. A forced choice (`required`, a named tool)
/// holds until the model has called a tool since the last user message; after that it is
/// `auto`, or the model could only call tools, and a run would go on until a limit stopped it.
pub(crate) fn tool_choice_for<'a>(
    configured: &'a ToolChoice,
    messages: &[Message],
) -> &'a ToolChoice {
    static AUTO: ToolChoice = ToolChoice::Auto;
    let forced = matches!(configured, ToolChoice::Required | ToolChoice::Tool(_));
    let called = || {
        messages
            .iter()
            .rev()
            .take_while(|m| !matches!(m, Message::User { .. }))
            .any(|m| matches!(m, Message::Assistant(reply) if !reply.tool_calls.is_empty()))
    };
    if forced && called() {
        &AUTO
    } else {
        configured
    }
}

/// One model call's input.
///
/// The context and the tools are borrowed where the caller keeps them (the engine's folded
/// run state), so a step costs no copy of a conversation that grows with the run.
#[derive(Clone, Debug)]
pub struct ChatRequest<'a> {
    /// Model id as the provider knows it.
    pub model: Cow<'a, str>,
    /// The context.
    pub messages: Cow<'a, [Message]>,
    /// Tools the model may call.
    pub tools: Cow<'a, [ToolDef]>,
    /// Cap on output tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Where layers report what happened inside the call (attempts, fallbacks, breakers).
    pub report: Reporter,
    /// Where the answer's pieces go as they arrive (none by default); the call's result is
    /// still the whole response.
    pub deltas: Deltas,
}

/// One model call's answer.
#[derive(Clone, Debug)]
pub struct ChatResponse {
    /// The reply.
    pub message: AssistantMessage,
    /// Tokens used.
    pub usage: Usage,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// Why the model stopped.
    pub finish_reason: Option<String>,
    /// `provider:model` of the client that answered (a fallback may have served the call).
    pub served_by: String,
}

/// Something that answers chat requests.
#[async_trait]
pub trait ModelClient: Send + Sync {
    /// Makes one call.
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, Error>;
}

#[async_trait]
impl<T: ModelClient + ?Sized> ModelClient for std::sync::Arc<T> {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, Error> {
        (**self).complete(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chassis_core::ToolCall;

    #[test]
    fn a_forced_tool_choice_holds_until_a_tool_is_called() {
        let user = |text: &str| Message::User {
            content: text.into(),
        };
        let calling = Message::Assistant(AssistantMessage {
            content: None,
            tool_calls: vec![ToolCall {
                id: "c".into(),
                name: "t".into(),
                arguments: "{}".into(),
            }],
        });
        let result = Message::Tool {
            call_id: "c".into(),
            content: "ok".into(),
        };
        let talking = Message::Assistant(AssistantMessage {
            content: Some("hm".into()),
            tool_calls: Vec::new(),
        });
        let first = vec![user("go")];
        let after_a_call = vec![user("go"), calling.clone(), result.clone()];
        let after_text = vec![user("go"), talking];
        let next_turn = vec![user("go"), calling, result, user("again")];
        let named = ToolChoice::Tool("t".into());
        for forced in [ToolChoice::Required, named] {
            assert_eq!(tool_choice_for(&forced, &first), &forced);
            assert_eq!(tool_choice_for(&forced, &after_text), &forced);
            assert_eq!(tool_choice_for(&forced, &after_a_call), &ToolChoice::Auto);
            assert_eq!(tool_choice_for(&forced, &next_turn), &forced);
        }
        for free in [ToolChoice::Auto, ToolChoice::None] {
            assert_eq!(tool_choice_for(&free, &after_a_call), &free);
        }
    }
}
