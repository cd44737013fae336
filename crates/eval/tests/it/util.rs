//! Shared set-up: an agent on disk, the mock model, an engine on a temporary journal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chassis_engine::Engine;
use chassis_eval::suite::RawSuite;
use chassis_eval::{Mode, Options, Report, Suite};
use chassis_mock::{MockConfig, MockHandle, Script};
use chassis_store::{SqliteJournal, Sync};
use tempfile::TempDir;

/// Replies for every test: a judge that always fails the answer, a JSON answer, a thread of
/// three user turns (read the note and say it; repeat the latest message; read it again), and
/// a conversation that reads a note and repeats it.
pub(crate) const SCRIPT: &str = r#"
[[scenario]]
name = "judge"
when_input_contains = "Grade the answer of an AI agent"
[[scenario.turn]]
text = "FAIL: the answer does not say who was paged."

[[scenario]]
name = "json"
when_input_contains = "json"
[[scenario.turn]]
text = '{"severity": "high"}'

[[scenario]]
name = "marker"
when_input_contains = "mark"
[[scenario.turn]]
tool_calls = [{ name = "mark", arguments = { note = "{input}" } }]
[[scenario.turn]]
text = "Marked: {last_tool_result}"

[[scenario]]
name = "thread"
when_input_contains = "thread"
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
text = "The notes say: {last_tool_result}"
[[scenario.turn]]
text = "You said: {last_user}"
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
text = "Again: {last_tool_result}"

[[scenario]]
name = "notes"
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
text = "The notes say: {last_tool_result}"
"#;

/// What the notes conversation answers.
pub(crate) const ANSWER: &str = "The notes say: the replica lagged 40 s";

/// Serves [`SCRIPT`] on 127.0.0.1.
pub(crate) async fn mock() -> MockHandle {
    let script = Script::from_toml_str(SCRIPT).expect("test script is valid");
    chassis_mock::start(
        MockConfig::default(),
        script,
        "127.0.0.1:0".parse().expect("loopback address"),
    )
    .await
    .expect("mock binds to 127.0.0.1")
}

/// A directory holding an agent (a file tool over `notes/`), its journal and its suites.
pub(crate) struct Desk {
    /// Everything lives here.
    pub dir: TempDir,
}

impl Desk {
    /// An agent talking to the model at `base_url`.
    pub(crate) fn new(base_url: &str) -> Desk {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        std::fs::create_dir(root.join("notes")).expect("notes directory");
        std::fs::write(root.join("notes/note.txt"), "the replica lagged 40 s").expect("note");
        std::fs::write(
            root.join("prompt.md.j2"),
            "Answer from the notes: {{ input }}\n",
        )
        .expect("prompt");
        std::fs::write(root.join("agent.toml"), agent_toml(base_url)).expect("agent");
        Desk { dir }
    }

    /// The agent spec.
    pub(crate) fn spec(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    /// An engine on this desk's journal.
    pub(crate) fn engine(&self) -> Arc<Engine> {
        let journal = SqliteJournal::open(&self.dir.path().join("chassis.db"), Sync::Normal)
            .expect("journal opens");
        Arc::new(Engine::new(Arc::new(journal)))
    }

    /// A suite from TOML text, as if it were a file in this directory.
    pub(crate) fn suite(&self, text: &str) -> Suite {
        let raw: RawSuite = toml::from_str(text).expect("suite parses");
        raw.validate(self.dir.path(), "test")
            .expect("suite is valid")
    }
}

/// The agent's spec text.
pub(crate) fn agent_toml(base_url: &str) -> String {
    format!(
        r#"[agent]
name = "notes-desk"
prompt = "prompt.md.j2"

[model]
primary = "mock:desk-model"
max_tokens = 256

[providers.mock]
kind = "openai"
base_url = "{base_url}"
max_attempts = 1

[pricing."mock:desk-model"]
input = 1.0
output = 2.0

[limits]
max_steps = 5

[[tools]]
use = "builtin:fs"
root = "notes"
only = ["read_file", "list_dir"]
"#
    )
}

/// Runs `suite` in `mode` on `engine`.
pub(crate) async fn run(suite: Suite, engine: Arc<Engine>, mode: Mode) -> Report {
    chassis_eval::run(
        Arc::new(suite),
        engine,
        &Options {
            mode,
            concurrency: None,
            live_tools: chassis_eval::LiveTools::None,
        },
        None,
    )
    .await
}

/// A base URL where nothing listens (the mock after it was shut down would do too).
pub(crate) fn nowhere() -> &'static str {
    "http://127.0.0.1:9/v1"
}

/// Reads a file the test wrote.
pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
