//! An agent on the Anthropic Messages provider, alone and as the fallback of an OpenAI one.

use std::net::SocketAddr;
use std::sync::Arc;

use chassis_core::{Event, RunStatus};
use chassis_engine::{Agent, Engine};
use chassis_mock::{FaultKind, MockConfig, Script};
use chassis_store::{Journal, SqliteJournal, Sync};

use crate::write;

const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
text = "the note says {last_tool_result}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_serves_when_the_openai_primary_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("prompt.j2"), "Read the note.");
    write(&root.join("data/note.txt"), "hello");
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let script = || Script::from_toml_str(SCRIPT).unwrap();
    let down = MockConfig {
        fault_rate: 1.0,
        faults: vec![FaultKind::ServerError],
        ..MockConfig::default()
    };
    let openai = chassis_mock::start(down, script(), local).await.unwrap();
    let anthropic = chassis_mock::start(MockConfig::default(), script(), local)
        .await
        .unwrap();
    write(
        &root.join("agent.toml"),
        &format!(
            r#"
[agent]
name = "claude-fallback"
prompt = "prompt.j2"
[model]
primary = "oai:gpt-x"
fallbacks = ["claude:claude-haiku-4-5"]
[providers.oai]
kind = "openai"
base_url = "{}"
max_attempts = 1
[providers.claude]
kind = "anthropic"
base_url = "{}"
api_key_env = "CHASSIS_TEST_ANTHROPIC_KEY_THAT_IS_SET"
[[tools]]
use = "builtin:fs"
root = "data"
only = ["read_file"]
"#,
            openai.base_url(),
            anthropic.anthropic_base_url()
        ),
    );
    // The spec names a key variable; loading refuses it while unset.
    let err = Agent::load(&root.join("agent.toml"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("CHASSIS_TEST_ANTHROPIC_KEY_THAT_IS_SET is not set"),
        "{err}"
    );
    let text = std::fs::read_to_string(root.join("agent.toml")).unwrap();
    write(
        &root.join("agent.toml"),
        &text.replace(
            "api_key_env = \"CHASSIS_TEST_ANTHROPIC_KEY_THAT_IS_SET\"\n",
            "",
        ),
    );

    let agent = Agent::load(&root.join("agent.toml")).await.unwrap();
    let journal: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    let engine = Engine::new(Arc::clone(&journal));
    let outcome = engine.start(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.output.as_deref(), Some("the note says hello"));

    let served: Vec<String> = journal
        .load(&outcome.run_id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::ModelResponded { model, .. } => Some(model),
            _ => None,
        })
        .collect();
    assert_eq!(
        served,
        vec!["claude:claude-haiku-4-5"; 2],
        "the fallback served each step"
    );
    assert_eq!(anthropic.stats().requests, 2);
}
