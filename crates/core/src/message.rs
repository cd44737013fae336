//! The conversation the runtime rebuilds for every model call.

use serde::{Deserialize, Serialize};

/// One message of the context sent to a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    /// The rendered prompt template.
    System {
        /// Text of the message.
        content: String,
    },
    /// The run's input.
    User {
        /// Text of the message.
        content: String,
    },
    /// A model reply.
    Assistant(AssistantMessage),
    /// The result of one tool call, fed back to the model.
    Tool {
        /// The call this answers.
        call_id: String,
        /// The tool's output, or the error the model should see.
        content: String,
    },
}

/// What a model said: text, tool calls, or both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Text, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool calls, in the order the model made them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// One tool call as the model made it; arguments stay raw until validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call, echoed back with its result. Providers may leave it
    /// empty or repeat it; the fold makes it unique within its reply (see
    /// [`RunState`](crate::RunState)), and chassis itself identifies a call by its step and
    /// its place in the reply, never by this id.
    #[serde(default)]
    pub id: String,
    /// Name of the tool called.
    pub name: String,
    /// Arguments exactly as the model produced them (JSON text, maybe invalid).
    pub arguments: String,
}

/// Tokens a model call consumed, as the provider reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Of the input tokens, those read from the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
