//! Agents against a model server with the rules some OpenAI-compatible servers have
//! (tools ignored without tool_choice, no `content: null`, a User-Agent), streamed or not; and the
//! `[model]` keys that reach the clients.

use std::net::SocketAddr;
use std::sync::Arc;

use chassis_core::RunStatus;
use chassis_engine::{Agent, Engine};
use chassis_mock::{MockConfig, Script};
use chassis_store::{Journal, SqliteJournal, Sync};

use crate::write;

const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
text = "the note says {last_tool_result}"
"#;

fn spec(base_url: &str, model_keys: &str) -> String {
    format!(
        r#"
[agent]
name = "strict"
prompt = "prompt.j2"
[model]
primary = "local:m"
{model_keys}
[providers.local]
kind = "openai"
base_url = "{base_url}"
max_attempts = 2
[[tools]]
use = "builtin:fs"
root = "data"
only = ["read_file"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_server_runs_an_agent_streamed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("prompt.j2"), "Read the note.");
    write(&root.join("data/note.txt"), "hello");
    // llama-cpp-python's rules: without tool_choice the model never calls read_file and the
    // answer is not the note; with `content: null` the second step gets HTTP 500.
    let strict = MockConfig {
        require_user_agent: true,
        ..MockConfig::llama_cpp()
    };
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let mock = chassis_mock::start(strict, Script::from_toml_str(SCRIPT).unwrap(), local)
        .await
        .unwrap();
    let journal: Arc<dyn Journal> =
        Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
    let engine = Engine::new(Arc::clone(&journal));
    for keys in ["", "stream = false"] {
        write(&root.join("agent.toml"), &spec(&mock.base_url(), keys));
        let agent = Agent::load(&root.join("agent.toml")).await.unwrap();
        let outcome = engine.start(&agent, "go").await.unwrap();
        assert_eq!(outcome.status, RunStatus::Completed, "{keys}: {outcome:?}");
        assert_eq!(outcome.output.as_deref(), Some("the note says hello"));
    }
    // Streamed, the first call is an empty stream (llama-cpp-python cannot stream an automatic
    // tool choice) and its retry goes unstreamed: three requests, then two.
    let stats = mock.stats();
    assert_eq!(stats.requests, 5);
    assert_eq!(
        stats.by_user_agent,
        [(chassis_providers::USER_AGENT.to_owned(), 5)].into()
    );

    // Told to send `null` as OpenAI does, the same server refuses the second step: the run
    // fails on a refused request rather than parking as if the model were down.
    let keys = "";
    let text = spec(&mock.base_url(), keys).replace(
        "max_attempts = 2\n",
        "max_attempts = 3\ntool_call_content = \"null\"\n",
    );
    write(&root.join("agent.toml"), &text);
    let agent = Agent::load(&root.join("agent.toml")).await.unwrap();
    let outcome = engine.start(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed, "{outcome:?}");
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("local:m: local: HTTP 500: the request was refused: 1 validation error"),
        "{reason}"
    );
    // The empty stream and its retry, then the refused request, not sent again for all three
    // attempts allowed.
    assert_eq!(mock.stats().requests, 8);
    mock.shutdown().await;
}

#[tokio::test]
async fn tool_choice_must_name_a_tool_of_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("prompt.j2"), "Read the note.");
    write(&root.join("data/note.txt"), "hello");
    write(
        &root.join("agent.toml"),
        &spec(
            "http://127.0.0.1:9/v1",
            "tool_choice = { name = \"write_file\" }",
        ),
    );
    let err = Agent::load(&root.join("agent.toml"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.tool_choice.name: tool `write_file` is not among the agent's tools"),
        "{err}"
    );
    write(
        &root.join("agent.toml"),
        &spec(
            "http://127.0.0.1:9/v1",
            "tool_choice = { name = \"read_file\" }",
        ),
    );
    Agent::load(&root.join("agent.toml")).await.unwrap();
}
