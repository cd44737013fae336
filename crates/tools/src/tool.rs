//! The [`Tool`] trait: one callable capability, and what a call knows about its surroundings.

use chassis_core::ToolDef;

/// What a tool call knows about its surroundings.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The run the call belongs to.
    pub run_id: String,
    /// The model's id for this call.
    pub call_id: String,
    /// Stable across retries of the same call, so a tool can refuse to act twice.
    pub idempotency_key: String,
}

/// A tool failure the model should see (it becomes the tool message content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

/// One capability an agent can call.
#[async_trait::async_trait]
pub trait Tool: Send + Sync {
    /// Name, description, JSON Schema of the arguments and risk class.
    fn def(&self) -> &ToolDef;

    /// Runs the call; `args` has already been validated against [`ToolDef::parameters`] when it
    /// came through [`Toolbox::prepare`](crate::Toolbox::prepare).
    async fn call(&self, args: serde_json::Value, ctx: &CallContext) -> Result<String, ToolError>;
}

/// Shows the tool's name, so results holding a tool can be debugged and unwrapped.
impl std::fmt::Debug for dyn Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tool({})", self.def().name)
    }
}
