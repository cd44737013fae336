//! The benchmark agent and the mock's script, written to a working directory.
//!
//! The agent has one read-only tool, `read_file`, so every step but the last is a model call
//! plus a tool call. Which `read_file` is the bench's `--tool`: written in Rust and answering
//! from memory (the default: the runtime alone), `builtin:fs` on a tiny file, a command run per
//! call (`cat`), or a persistent command (`note_tool.py`, one `python3` process for every call).
//! The script has one scenario per run length, chosen by a marker in the input: a run of `n`
//! steps is `n - 1` tool-call turns and a final text turn.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chassis_core::spec::HttpVersion;
use chassis_core::{RiskClass, ToolDef};
use chassis_engine::Agent;
use chassis_tools::{CallContext, Tool, ToolError};

use crate::BenchTool;
use serde_json::json;

use crate::Error;

/// The one file the tool reads; small, so the tool result does not dominate the journal.
pub(crate) const NOTE: &str = "Replica lag alert fired at 02:14; failover not needed.\n";

/// The persistent tool's program, in the fixture's directory.
const NOTE_TOOL: &str = "note_tool.py";

/// `read_file` as a persistent command tool, written as a user would write one: the standard
/// library only, one request per line, the note the request names read from `notes/` on every
/// call, one answer per line, flushed.
const NOTE_TOOL_PY: &str = r#"import json
import os
import sys

NOTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes")

for line in sys.stdin:
    request = json.loads(line)
    name = str(request["args"].get("path", ""))
    try:
        if name != os.path.basename(name) or name.startswith("."):
            raise ValueError(f"no note `{name}`")
        with open(os.path.join(NOTES, name)) as note:
            answer = {"id": request["id"], "result": note.read()}
    except (OSError, ValueError) as e:
        answer = {"id": request["id"], "error": str(e)}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"#;

pub(crate) const PROMPT: &str =
    "You are a benchmark agent. Read the note, then answer in one line.\n";

/// The benchmark's working directory and the files in it.
pub(crate) struct Fixture {
    /// Removed on drop, with everything in it; `None` for a directory another process made
    /// ([`Fixture::at`]).
    _temp: Option<tempfile::TempDir>,
    root: PathBuf,
    script: PathBuf,
    http: HttpVersion,
    tool: BenchTool,
}

impl Fixture {
    /// Writes the prompt, the note and a script with a scenario for each of `steps`.
    pub(crate) fn new(
        dir: Option<&Path>,
        steps: &[u32],
        http: HttpVersion,
        tool: BenchTool,
    ) -> Result<Fixture, Error> {
        let temp = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(Error::io(format!("creating {}", dir.display())))?;
                tempfile::Builder::new()
                    .prefix("chassis-bench-")
                    .tempdir_in(dir)
            }
            None => tempfile::Builder::new().prefix("chassis-bench-").tempdir(),
        }
        .map_err(Error::io("creating the benchmark directory"))?;
        let root = temp.path().to_path_buf();
        let notes = root.join("notes");
        std::fs::create_dir_all(&notes)
            .map_err(Error::io(format!("creating {}", notes.display())))?;
        write(&notes.join("note.txt"), NOTE)?;
        write(&root.join("prompt.md.j2"), PROMPT)?;
        write(&root.join(NOTE_TOOL), NOTE_TOOL_PY)?;

        let mut steps = steps.to_vec();
        steps.sort_unstable();
        steps.dedup();
        let scenarios: Vec<_> = steps.iter().map(|&n| scenario(n)).collect();
        let script = root.join("script.json");
        write(
            &script,
            &serde_json::to_string(&json!({ "scenario": scenarios }))
                .map_err(|e| Error::io("encoding the mock script")(std::io::Error::other(e)))?,
        )?;
        Ok(Fixture {
            _temp: Some(temp),
            root,
            script,
            http,
            tool,
        })
    }

    /// The fixture [`Fixture::new`] wrote at `root` (by the parent of a benchmark child process),
    /// left in place when dropped.
    pub(crate) fn at(root: &Path, http: HttpVersion, tool: BenchTool) -> Fixture {
        Fixture {
            _temp: None,
            root: root.to_path_buf(),
            script: root.join("script.json"),
            http,
            tool,
        }
    }

    /// The working directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The mock's script.
    pub(crate) fn script(&self) -> &Path {
        &self.script
    }

    /// A fresh journal path named `name`.
    pub(crate) fn db(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.db"))
    }

    /// The input that makes the mock answer with a run of `steps` steps.
    pub(crate) fn input(steps: u32) -> String {
        format!("Summarize the note. [steps={steps}]")
    }

    /// The HTTP protocol the agents speak to the mock.
    pub(crate) fn http(&self) -> HttpVersion {
        self.http
    }

    /// Writes `agent-NAME.toml` pointing at `base_url`, spoken to with `http`, granting `tool`,
    /// its answers streamed when `stream`; returns its path. With
    /// [`BenchTool::Memory`] the spec grants no tool: [`Fixture::agent`] adds it in Rust.
    pub(crate) fn spec_with(
        &self,
        name: &str,
        base_url: &str,
        http: HttpVersion,
        tool: BenchTool,
        stream: bool,
    ) -> Result<PathBuf, Error> {
        let http = crate::http_name(http);
        let tools = match tool {
            BenchTool::Fs => {
                "\n[[tools]]\nuse = \"builtin:fs\"\nroot = \"notes\"\nonly = [\"read_file\"]\n"
            }
            BenchTool::Memory => "",
            BenchTool::Command => concat!(
                "\n[[tools]]\nname = \"read_file\"\ndescription = \"Reads one of the notes.\"\n",
                "command = [\"cat\", \"notes/note.txt\"]\n",
                "args_schema = { type = \"object\", properties = { path = { type = \"string\" } }, required = [\"path\"] }\n",
                "risk = \"read_only\"\n",
            ),
            BenchTool::Persistent => concat!(
                "\n[[tools]]\nname = \"read_file\"\ndescription = \"Reads one of the notes.\"\n",
                "command = [\"python3\", \"note_tool.py\"]\n",
                "args_schema = { type = \"object\", properties = { path = { type = \"string\" } }, required = [\"path\"] }\n",
                "risk = \"read_only\"\npersistent = true\n",
            ),
        };
        let path = self.root.join(format!("agent-{name}.toml"));
        // One attempt and a long timeout: a benchmark must not hide failures behind retries,
        // and thousands of queued requests may wait a while. Whole answers, not streamed: the
        // overhead is the runtime's, and a stream's events cost the mock more than the
        // runtime, which makes the mock's share (measured apart) too noisy to subtract.
        let spec = format!(
            r#"[agent]
name = "bench"
prompt = "prompt.md.j2"

[model]
primary = "mock:bench-model"
max_tokens = 256
timeout = "600s"
stream = {stream}

[providers.mock]
kind = "openai"
base_url = "{base_url}"
max_attempts = 1
http = "{http}"

[limits]
max_steps = 100000
max_model_calls = 100000
max_tool_calls = 100000
max_input_tokens = 1000000000
max_output_tokens = 1000000000
max_total_tokens = 1000000000
max_wall_time = "24h"
max_repeats = 1000000
{tools}"#
        );
        write(&path, &spec)?;
        Ok(path)
    }

    /// Writes and loads the agent pointing at `base_url`.
    pub(crate) fn agent(&self, name: &str, base_url: &str) -> Result<Arc<Agent>, Error> {
        self.agent_streaming(name, base_url, false)
    }

    /// [`Fixture::agent`], asking the model for streamed answers when `stream`.
    pub(crate) fn agent_streaming(
        &self,
        name: &str,
        base_url: &str,
        stream: bool,
    ) -> Result<Arc<Agent>, Error> {
        self.agent_of(name, base_url, self.tool, stream)
    }

    /// [`Fixture::agent_streaming`] whose steps call `tool` instead of the fixture's own.
    pub(crate) fn agent_of(
        &self,
        name: &str,
        base_url: &str,
        tool: BenchTool,
        stream: bool,
    ) -> Result<Arc<Agent>, Error> {
        let path = self.spec_with(name, base_url, self.http, tool, stream)?;
        // Loading is async (MCP servers are started); the benches call this outside a runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                what: "starting a runtime to load the agent".into(),
                source,
            })?;
        let tools: Vec<Arc<dyn Tool>> = match tool {
            BenchTool::Memory => vec![Arc::new(NoteInMemory::new())],
            BenchTool::Fs | BenchTool::Command | BenchTool::Persistent => Vec::new(),
        };
        Ok(Arc::new(
            runtime.block_on(Agent::load_with_tools(&path, tools))?,
        ))
    }
}

/// `read_file` answered from memory: a tool written in Rust, doing no IO, so a step measures
/// the runtime and not a file system (`--tool fs` measures `builtin:fs` instead).
struct NoteInMemory {
    def: ToolDef,
}

impl NoteInMemory {
    fn new() -> NoteInMemory {
        NoteInMemory {
            def: ToolDef {
                name: "read_file".into(),
                description: "Reads one of the notes.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {"path": {"type": "string", "description": "The note's name"}},
                    "required": ["path"],
                }),
                risk: RiskClass::ReadOnly,
                idempotent: false,
                max_attempts: 1,
            },
        }
    }
}

#[chassis_tools::async_trait]
impl Tool for NoteInMemory {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, args: serde_json::Value, _ctx: &CallContext) -> Result<String, ToolError> {
        match args["path"].as_str() {
            Some("note.txt") => Ok(NOTE.to_string()),
            other => Err(ToolError::failed(format!(
                "no note `{}`",
                other.unwrap_or("")
            ))),
        }
    }
}

/// A scenario of `steps` model calls: `steps - 1` reads, then the answer.
fn scenario(steps: u32) -> serde_json::Value {
    let read =
        json!({ "tool_calls": [{ "name": "read_file", "arguments": { "path": "note.txt" } }] });
    let mut turns = vec![read; steps.saturating_sub(1) as usize];
    turns.push(json!({ "text": "The note says: {last_tool_result}" }));
    json!({
        "name": format!("steps-{steps}"),
        "when_input_contains": format!("[steps={steps}]"),
        "turn": turns,
    })
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
}
