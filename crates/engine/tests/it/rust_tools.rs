//! Tools written in Rust by the embedding program: granted with `Agent::load_with_tools`,
//! called like any other tool, and part of the agent version.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chassis_core::{RiskClass, RunStatus, ToolDef};
use chassis_engine::{Agent, Engine};
use chassis_mock::{MockConfig, Script};
use chassis_store::{SqliteJournal, Sync};
use chassis_tools::{CallContext, Tool, ToolError};
use serde_json::{Value, json};

use crate::write;

const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
tool_calls = [{ name = "ticket_status", arguments = { id = "T-7" } }]
[[scenario.turn]]
text = "status: {last_tool_result}"
"#;

/// Answers from memory and counts its calls.
struct TicketStatus {
    def: ToolDef,
    calls: AtomicUsize,
}

#[chassis_tools::async_trait]
impl Tool for TicketStatus {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, args: Value, _ctx: &CallContext) -> Result<String, ToolError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(format!("{} is open", args["id"].as_str().unwrap_or("?")))
    }
}

#[tokio::test]
async fn a_rust_tool_is_granted_called_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = chassis_mock::start(
        MockConfig::default(),
        Script::from_toml_str(SCRIPT).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    write(&root.join("prompt.j2"), "Check the ticket.");
    let spec = root.join("agent.toml");
    write(
        &spec,
        &format!(
            "[agent]\nname = \"desk\"\nprompt = \"prompt.j2\"\n[model]\nprimary = \"m:x\"\n\
             [providers.m]\nkind = \"openai\"\nbase_url = \"{}\"\n",
            mock.base_url()
        ),
    );
    let tool = Arc::new(TicketStatus {
        def: ToolDef {
            name: "ticket_status".into(),
            description: "The status of a ticket".into(),
            parameters: json!({
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
            }),
            risk: RiskClass::ReadOnly,
            idempotent: false,
            max_attempts: 1,
        },
        calls: AtomicUsize::new(0),
    });
    let agent = Agent::load_with_tools(&spec, vec![tool.clone()])
        .await
        .unwrap();
    let plain = Agent::load(&spec).await.unwrap();
    assert_ne!(
        agent.version, plain.version,
        "the Rust tool is part of the version"
    );

    let journal = Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    let outcome = Engine::new(journal).start(&agent, "T-7?").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.output.as_deref(), Some("status: T-7 is open"));
    assert_eq!(tool.calls.load(Ordering::Relaxed), 1);
}

/// Never answers: a Rust tool stuck on a lock or a socket of its own.
struct Stuck {
    def: ToolDef,
}

#[chassis_tools::async_trait]
impl Tool for Stuck {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, _args: Value, _ctx: &CallContext) -> Result<String, ToolError> {
        std::future::pending().await
    }
}

/// A Rust tool has no spec entry and no timeout of its own: the engine's deadline cuts it off,
/// and since it may have acted, its outcome is unknown and the run waits for a human instead
/// of hanging forever.
#[tokio::test]
async fn a_rust_tool_that_never_answers_is_cut_off_by_the_engines_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = chassis_mock::start(
        MockConfig::default(),
        Script::from_toml_str(&SCRIPT.replace("ticket_status", "stuck")).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    write(&root.join("prompt.j2"), "Check the ticket.");
    let spec = root.join("agent.toml");
    write(
        &spec,
        &format!(
            "[agent]\nname = \"desk\"\nprompt = \"prompt.j2\"\n[model]\nprimary = \"m:x\"\n\
             [providers.m]\nkind = \"openai\"\nbase_url = \"{}\"\n",
            mock.base_url()
        ),
    );
    let tool = Arc::new(Stuck {
        def: ToolDef {
            name: "stuck".into(),
            description: "Never answers".into(),
            parameters: json!({ "type": "object" }),
            risk: RiskClass::Reversible,
            idempotent: false,
            max_attempts: 1,
        },
    });
    let agent = Agent::load_with_tools(&spec, vec![tool]).await.unwrap();
    let journal = Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    let mut config = chassis_engine::DriveConfig::new("test");
    config.tool_deadline = std::time::Duration::from_millis(200);
    let engine = Engine::new(journal).with_drive_config(config);
    // A guard, not a measurement: without the deadline the run would never end.
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        engine.start(&agent, "T-7?"),
    )
    .await
    .expect("the run ended: the deadline cut the tool off")
    .unwrap();
    assert_eq!(outcome.status, RunStatus::Waiting, "{outcome:?}");
    let state = engine.load(&outcome.run_id).await.unwrap();
    assert!(
        state.calls.iter().any(|c| c.outcome_unknown),
        "the cut-off call is an unknown outcome: {:?}",
        state.calls
    );
}
