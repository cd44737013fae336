//! A small agent against the mock model: it reads a note with a file tool, then answers.

use std::path::PathBuf;
use std::sync::Arc;

use chassis_core::Observer;
use chassis_engine::{Agent, Engine};
use chassis_mock::{MockConfig, MockHandle, Script};
use chassis_store::{Journal, SqliteJournal, Sync};
use tempfile::TempDir;

const SCRIPT: &str = r#"
[[scenario]]
name = "notes"
[[scenario.turn]]
text = "Let me read the note."
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
text = "The note says: {last_tool_result}"
"#;

/// The note the agent reads.
pub(crate) const NOTE: &str = "replica lag resolved at 04:10";

/// An agent directory, its journal and the mock model it talks to.
pub(crate) struct Desk {
    /// Kept for its lifetime: the agent's files and journal.
    _dir: TempDir,
    pub spec: PathBuf,
    pub journal: Arc<dyn Journal>,
    /// Kept for its lifetime: the model the agent talks to.
    _mock: MockHandle,
}

impl Desk {
    /// The desk; `limits` is the body of its `[limits]` table.
    pub(crate) async fn new(limits: &str) -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let script = Script::from_toml_str(SCRIPT).unwrap();
        let mock = chassis_mock::start(
            MockConfig::default(),
            script,
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        std::fs::create_dir(dir.path().join("notes")).unwrap();
        std::fs::write(dir.path().join("notes/note.txt"), NOTE).unwrap();
        std::fs::write(
            dir.path().join("prompt.j2"),
            "You read notes. Request: {{ input }}",
        )
        .unwrap();
        let spec = dir.path().join("agent.toml");
        std::fs::write(
            &spec,
            format!(
                r#"
[agent]
name = "desk"
prompt = "prompt.j2"
version = "v1"

[model]
primary = "mock:desk-model"
max_tokens = 256

[providers.mock]
kind = "openai"
base_url = "{}"

[[tools]]
use = "builtin:fs"
root = "notes"
only = ["read_file"]

[limits]
{limits}
"#,
                mock.base_url()
            ),
        )
        .unwrap();
        let journal: Arc<dyn Journal> =
            Arc::new(SqliteJournal::open(&dir.path().join("chassis.db"), Sync::Full).unwrap());
        Desk {
            _dir: dir,
            spec,
            journal,
            _mock: mock,
        }
    }

    /// The agent, loaded.
    pub(crate) async fn agent(&self) -> Agent {
        Agent::load(&self.spec).await.unwrap()
    }

    /// An engine on the desk's journal reporting to `observers`.
    pub(crate) fn engine(&self, observers: &[Arc<dyn Observer>]) -> Engine {
        observers
            .iter()
            .fold(Engine::new(Arc::clone(&self.journal)), |engine, o| {
                engine.with_observer(Arc::clone(o))
            })
    }
}
