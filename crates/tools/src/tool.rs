//! The [`Tool`] trait: one callable capability, and what a call knows about its surroundings.

use std::sync::Arc;

use chassis_core::{ToolDef, ToolProgress};

/// Where a call's progress reports go (the engine hands them to its observers).
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Arc<dyn Fn(ToolProgress) + Send + Sync>>);

impl ProgressSink {
    /// A sink that hands each report to `report`.
    pub fn new(report: impl Fn(ToolProgress) + Send + Sync + 'static) -> ProgressSink {
        ProgressSink(Some(Arc::new(report)))
    }

    /// Reports progress; nothing happens when nobody listens.
    pub fn report(&self, progress: ToolProgress) {
        if let Some(report) = &self.0 {
            report(progress);
        }
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressSink(listened)"
        } else {
            "ProgressSink(none)"
        })
    }
}

/// What a tool call knows about its surroundings.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The run the call belongs to.
    pub run_id: String,
    /// The model's id for this call.
    pub call_id: String,
    /// Stable across retries of the same call, so a tool can refuse to act twice.
    pub idempotency_key: String,
    /// When the call's first attempt began: a tool whose timeout covers all attempts (an MCP
    /// call's does) counts from here.
    pub began: tokio::time::Instant,
    /// Where the call reports how far it has come (MCP `notifications/progress`).
    pub progress: ProgressSink,
}

/// A tool failure the model should see (it becomes the tool message content).
///
/// A failure is either *definite* (the tool answered that it failed, or refused before
/// acting) or *indeterminate*: the call was cut off while it may have been acting (it timed
/// out, its process was killed, the connection broke after the request was sent). An
/// indeterminate failure of a tool that is not safe to repeat is an unknown outcome for a
/// human to settle, never a plain failure that invites the model to call it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    message: String,
    indeterminate: bool,
    /// Whether another attempt could end differently; an answer of the tool's own, or a call
    /// whose time is used up, would not.
    retry: bool,
}

impl ToolError {
    /// The tool failed, and did not act (or says exactly what it did).
    pub fn failed(message: impl Into<String>) -> ToolError {
        ToolError {
            message: message.into(),
            indeterminate: false,
            retry: true,
        }
    }

    /// The tool answered that the call failed (an MCP result with `isError`, or a built-in
    /// tool's refusal of its arguments, such as a path that does not exist): another attempt
    /// would meet the same answer, so it goes to the model as it is, and the call is never
    /// attempted again.
    pub fn answered(message: impl Into<String>) -> ToolError {
        ToolError {
            message: message.into(),
            indeterminate: false,
            retry: false,
        }
    }

    /// The call was cut off while it may have been acting: its effect is unknown.
    pub fn indeterminate(message: impl Into<String>) -> ToolError {
        ToolError {
            message: message.into(),
            indeterminate: true,
            retry: true,
        }
    }

    /// This error, after which the call is not attempted again (its time is used up).
    #[must_use]
    pub fn last(mut self) -> ToolError {
        self.retry = false;
        self
    }

    /// This error with another message, and otherwise the same.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> ToolError {
        self.message = message.into();
        self
    }

    /// Whether another attempt may end differently (for a tool safe to repeat).
    pub fn may_retry(&self) -> bool {
        self.retry
    }

    /// What went wrong, phrased for the model.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the call may have had an effect although it did not answer.
    pub fn is_indeterminate(&self) -> bool {
        self.indeterminate
    }
}

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
