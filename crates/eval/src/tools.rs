//! Tools under a cassette: recorded as they run, or answered from the recording.
//!
//! A replay is offline and performs no effect: every tool of a replayed run answers from the
//! cassette ([`ReplayTool`]), matched by tool and arguments, and a call the cassette lacks is
//! refused with a diff, never executed. Only with [`LiveTools::ReadOnly`] do read-only tools
//! run for real (a replay against fresh data); nothing else ever does.

use std::sync::Arc;

use chassis_core::{RiskClass, ToolDef};
use chassis_engine::Agent;
use chassis_providers::cassette::{Recorder, Replay, ToolResult};
use chassis_tools::{CallContext, Tool, ToolError};
use serde_json::Value;

/// Which tools a replay runs for real.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LiveTools {
    /// None: every result comes from the cassette.
    #[default]
    None,
    /// Read-only tools run; the others answer from the cassette.
    ReadOnly,
}

impl LiveTools {
    /// Parses the command-line spelling: `none` or `read_only`.
    pub fn parse(text: &str) -> Result<LiveTools, String> {
        match text {
            "none" => Ok(LiveTools::None),
            "read_only" => Ok(LiveTools::ReadOnly),
            other => Err(format!(
                "unknown value `{other}` (use none or read_only: irreversible and reversible \
                 tools never run in a replay)"
            )),
        }
    }
}

/// Records every call of `agent`'s tools, with its result, into `recorder`.
pub fn record_tools(agent: &mut Agent, recorder: &Arc<Recorder>) {
    agent.toolbox.map_tools(|inner| {
        Arc::new(RecordingTool {
            inner,
            recorder: recorder.clone(),
        }) as Arc<dyn Tool>
    });
}

/// Makes `agent`'s tools answer from `replay` (all of them, or all but the read-only ones).
pub fn replay_tools(agent: &mut Agent, replay: &Arc<Replay>, live: LiveTools) {
    agent.toolbox.map_tools(|inner| {
        if live == LiveTools::ReadOnly && inner.def().risk == RiskClass::ReadOnly {
            return inner;
        }
        Arc::new(ReplayTool {
            def: inner.def().clone(),
            replay: replay.clone(),
        }) as Arc<dyn Tool>
    });
}

/// A tool whose every call is recorded with its result.
pub struct RecordingTool {
    inner: Arc<dyn Tool>,
    recorder: Arc<Recorder>,
}

#[chassis_tools::async_trait]
impl Tool for RecordingTool {
    fn def(&self) -> &ToolDef {
        self.inner.def()
    }

    async fn call(&self, args: Value, ctx: &CallContext) -> Result<String, ToolError> {
        let result = self.inner.call(args.clone(), ctx).await;
        let (ok, indeterminate, content) = match &result {
            Ok(content) => (true, false, content.clone()),
            Err(e) => (false, e.is_indeterminate(), e.message().to_string()),
        };
        let recorded = ToolResult {
            tool: self.inner.def().name.clone(),
            args,
            ok,
            indeterminate,
            content,
        };
        // The call has happened: a cassette that cannot be written loses the recording, not
        // the call's result.
        if let Err(e) = self.recorder.record_tool(recorded) {
            tracing::error!(tool = %self.inner.def().name, error = %e, "cannot record the tool's result");
        }
        result
    }
}

/// A tool that answers from a cassette and never runs.
pub struct ReplayTool {
    def: ToolDef,
    replay: Arc<Replay>,
}

#[chassis_tools::async_trait]
impl Tool for ReplayTool {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, args: Value, _ctx: &CallContext) -> Result<String, ToolError> {
        match self.replay.tool_result(&self.def.name, &args) {
            Ok(recorded) if recorded.ok => Ok(recorded.content),
            Ok(recorded) if recorded.indeterminate => {
                Err(ToolError::indeterminate(recorded.content).last())
            }
            Ok(recorded) => Err(ToolError::failed(recorded.content)),
            // Final: asking again cannot find what the cassette lacks.
            Err(divergence) => Err(ToolError::answered(divergence)),
        }
    }
}
