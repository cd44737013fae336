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

/// Reports progress twice, the second time quoting a secret, then answers.
struct SlowExport {
    def: ToolDef,
}

#[chassis_tools::async_trait]
impl Tool for SlowExport {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, _args: Value, ctx: &CallContext) -> Result<String, ToolError> {
        for (done, message) in [(1.0, "exporting"), (2.0, "sent with sk-abcdef123456")] {
            ctx.progress.report(chassis_core::ToolProgress {
                tool: self.def.name.clone(),
                progress: done,
                total: Some(2.0),
                message: Some(message.into()),
            });
        }
        Ok("exported".into())
    }
}

/// Keeps every progress report it hears, with the call it belongs to.
#[derive(Default)]
struct Heard(std::sync::Mutex<Vec<(String, chassis_core::ToolProgress)>>);

impl chassis_core::Observer for Heard {
    fn on_event(&self, _: &str, _: &chassis_core::RunState, _: &chassis_core::Event) {}

    fn on_tool_progress(&self, _run_id: &str, call_id: &str, p: &chassis_core::ToolProgress) {
        self.0
            .lock()
            .unwrap()
            .push((call_id.to_string(), p.clone()));
    }
}

#[tokio::test]
async fn a_tool_s_progress_reaches_the_observers_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let script = "[[scenario]]\n[[scenario.turn]]\ntool_calls = [{ name = \"export\", arguments = {} }]\n\
                  [[scenario.turn]]\ntext = \"done: {last_tool_result}\"\n";
    let mock = chassis_mock::start(
        MockConfig::default(),
        Script::from_toml_str(script).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    write(&root.join("prompt.j2"), "Export.");
    let spec = root.join("agent.toml");
    write(
        &spec,
        &format!(
            "[agent]\nname = \"desk\"\nprompt = \"prompt.j2\"\n[model]\nprimary = \"m:x\"\n\
             [providers.m]\nkind = \"openai\"\nbase_url = \"{}\"\n\
             [redact]\npatterns = [\"sk-[a-z0-9]{{8,}}\"]\n",
            mock.base_url()
        ),
    );
    let tool = Arc::new(SlowExport {
        def: ToolDef {
            name: "export".into(),
            description: "Exports the ledger".into(),
            parameters: json!({"type": "object"}),
            risk: RiskClass::ReadOnly,
            idempotent: false,
            max_attempts: 1,
        },
    });
    let agent = Agent::load_with_tools(&spec, vec![tool]).await.unwrap();
    let heard = Arc::new(Heard::default());
    let journal = Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    let outcome = Engine::new(journal)
        .with_observer(heard.clone())
        .start(&agent, "export it")
        .await
        .unwrap();
    assert_eq!(outcome.output.as_deref(), Some("done: exported"));
    let heard = heard.0.lock().unwrap();
    let said: Vec<(f64, Option<f64>, &str)> = heard
        .iter()
        .map(|(_, p)| (p.progress, p.total, p.message.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        said,
        [
            (1.0, Some(2.0), "exporting"),
            (2.0, Some(2.0), "sent with [REDACTED]")
        ]
    );
    assert!(
        heard
            .iter()
            .all(|(call, p)| !call.is_empty() && p.tool == "export")
    );
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
        state.calls().iter().any(|c| c.outcome_unknown),
        "the cut-off call is an unknown outcome: {:?}",
        state.calls()
    );
}
