//! Integration tests: toolboxes built from spec entries, called the way the engine calls them.
//!
//! One test binary for the crate. It is also the MCP server the MCP tests talk to: started with
//! `CHASSIS_MCP_TEST_SERVER` set and filtered to the test `mcp_server::serve`, it serves MCP on
//! stdin and stdout (see `mcp_server.rs`).

mod command_tools;
mod custom_tools;
mod fs_tools;
mod http_tools;
mod mcp_auth;
mod mcp_everything;
mod mcp_http;
mod mcp_server;
mod mcp_tasks;
mod mcp_tools;
mod persistent_tools;
mod tool_env;
mod validation;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chassis_core::RiskClass;
use chassis_core::spec::{CommandToolSpec, ToolSpec};
use chassis_tools::{CallContext, Refusal, Tool, ToolError, Toolbox};
use serde_json::{Value, json};

fn ctx() -> CallContext {
    CallContext {
        run_id: "run-1".into(),
        call_id: "call-1".into(),
        idempotency_key: "run-1/call-1".into(),
        began: tokio::time::Instant::now(),
        progress: Default::default(),
    }
}

fn fs_spec(root: &str, only: Option<&[&str]>) -> ToolSpec {
    ToolSpec::Fs {
        root: root.into(),
        only: only.map(|o| o.iter().map(|s| s.to_string()).collect()),
        timeout: Duration::from_secs(20),
    }
}

fn command_spec(name: &str, command: &[&str], timeout: Duration) -> ToolSpec {
    ToolSpec::Command(CommandToolSpec {
        name: name.into(),
        description: format!("{name} for tests"),
        command: command.iter().map(|s| s.to_string()).collect(),
        args_schema: json!({"type": "object"}),
        risk: RiskClass::ReadOnly,
        timeout,
        idempotent: false,
        max_attempts: 1,
        env: Default::default(),
        persistent: false,
    })
}

fn python(name: &str, code: &str) -> ToolSpec {
    command_spec(name, &["python3", "-c", code], Duration::from_secs(20))
}

/// Prepares and runs one call as the engine would.
async fn call(toolbox: &Toolbox, name: &str, args: Value) -> Result<String, ToolError> {
    let (args, tool) = toolbox
        .prepare(name, &args.to_string())
        .unwrap_or_else(|r| panic!("refused: {r}"));
    tool.call(args, &ctx()).await
}

fn refusal(toolbox: &Toolbox, name: &str, raw: &str) -> String {
    match toolbox.prepare(name, raw) {
        Ok(_) => panic!("`{name}` {raw} was not refused"),
        Err(r) => r.to_string(),
    }
}

fn names(toolbox: &Toolbox) -> Vec<String> {
    toolbox.defs().into_iter().map(|d| d.name).collect()
}

/// Builds a toolbox with no MCP servers declared.
async fn build(specs: &[ToolSpec], dir: &Path) -> Result<Toolbox, chassis_tools::Error> {
    Toolbox::from_specs(specs, &BTreeMap::new(), dir).await
}

#[test]
fn loading_a_toolbox_can_move_between_threads() {
    fn send<T: Send>(_: &T) {}
    let mcp = BTreeMap::new();
    let loading = Toolbox::from_specs(&[], &mcp, Path::new("."));
    send(&loading);
}
