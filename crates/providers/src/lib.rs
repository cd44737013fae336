//! Model clients: the [`ModelClient`] trait and an OpenAI-compatible chat-completions provider.
//!
//! A client turns the runtime's context ([`ChatRequest`]) into one provider call and the
//! provider's answer into a [`ChatResponse`]. Resilience (retries, fallbacks, breakers) wraps
//! clients as layers; a client itself makes exactly one attempt.

mod anthropic;
mod breaker;
mod error;
mod fallback;
mod openai;
mod report;
mod retry;

use async_trait::async_trait;
use chassis_core::{AssistantMessage, Message, ToolDef, Usage};

pub use anthropic::AnthropicClient;
pub use breaker::{Breaker, BreakerConfig, BreakerState, CircuitBreaker, breaker_for};
pub use error::{Error, parse_retry_after};
pub use fallback::{Fallback, Link};
pub use openai::OpenAiClient;
pub use report::{CallEvent, Reporter};
pub use retry::{Retry, RetryPolicy, jitter};

/// One model call's input.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// Model id as the provider knows it.
    pub model: String,
    /// The context.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolDef>,
    /// Cap on output tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Where layers report what happened inside the call (attempts, fallbacks, breakers).
    pub report: Reporter,
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
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, Error>;
}

#[async_trait]
impl<T: ModelClient + ?Sized> ModelClient for std::sync::Arc<T> {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, Error> {
        (**self).complete(request).await
    }
}
