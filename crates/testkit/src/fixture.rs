//! Files, tool scripts, agent specs and the mock model: what a test sets up before a run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use chassis_mock::{MockConfig, MockHandle, Script, Stats};

/// Writes `text` to `path`, creating its parent directories; returns the path.
pub fn write(path: &Path, text: &str) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

/// A Python tool script at `dir/tools/NAME.py`; returns its path.
pub fn python_tool(dir: &Path, name: &str, body: &str) -> PathBuf {
    write(&dir.join("tools").join(format!("{name}.py")), body)
}

/// The Python interpreter tool scripts run with, as an absolute path (found once): the
/// system one when present, because version-manager shims (pyenv) add hundreds of
/// milliseconds to every start.
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if Path::new("/usr/bin/python3").exists() {
            return "/usr/bin/python3".to_string();
        }
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 on PATH: the tests' command tools are Python scripts");
        assert!(out.status.success(), "python3 failed: {out:?}");
        String::from_utf8(out.stdout)
            .expect("UTF-8 path")
            .trim()
            .to_string()
    })
}

/// `text` as a TOML basic string (JSON string escapes are valid TOML).
pub fn toml_str(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// An `agent.toml` for agent `name` on one OpenAI-compatible provider `m` at `base_url`
/// (model `m:model`, prompt `prompt.j2`), followed by `extra` (tools, limits, approvals…).
pub fn agent_toml(name: &str, base_url: &str, extra: &str) -> String {
    format!(
        r#"
[agent]
name = "{name}"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "{base_url}"
{extra}
"#
    )
}

/// Writes `dir/prompt.j2` (`prompt`) and `dir/agent.toml` ([`agent_toml`]); returns the spec's
/// path.
pub fn write_agent(dir: &Path, name: &str, base_url: &str, prompt: &str, extra: &str) -> PathBuf {
    write(&dir.join("prompt.j2"), prompt);
    write(&dir.join("agent.toml"), &agent_toml(name, base_url, extra))
}

/// Starts the mock model on 127.0.0.1 in the current runtime, serving `script` (TOML).
pub async fn start_mock(script: &str, config: MockConfig) -> MockHandle {
    let script = Script::from_toml_str(script).expect("the test's mock script is valid");
    chassis_mock::start(config, script, ([127, 0, 0, 1], 0).into())
        .await
        .expect("the mock binds to 127.0.0.1")
}

/// The mock model on 127.0.0.1, served by a runtime of its own: for tests that run
/// processes and have no runtime.
pub struct Mock {
    // Dropped first: stops the server while its runtime still exists.
    handle: MockHandle,
    _runtime: tokio::runtime::Runtime,
}

impl Mock {
    /// Serves `script` (TOML), answering every request after `latency`.
    pub fn start(script: &str, latency: Duration) -> Mock {
        Mock::with_config(
            script,
            MockConfig {
                latency,
                ..MockConfig::default()
            },
        )
    }

    /// Serves `script` (TOML) as `config` says.
    pub fn with_config(script: &str, config: MockConfig) -> Mock {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime for the mock");
        let handle = runtime.block_on(start_mock(script, config));
        Mock {
            handle,
            _runtime: runtime,
        }
    }

    /// The OpenAI base URL to put in a spec.
    pub fn base_url(&self) -> String {
        self.handle.base_url()
    }

    /// All counters.
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Requests of the conversation whose first user message is `input`, by turn.
    pub fn turns(&self, input: &str) -> std::collections::BTreeMap<u32, u64> {
        self.stats()
            .by_conversation
            .remove(input)
            .unwrap_or_default()
    }

    /// The server.
    pub fn handle(&self) -> &MockHandle {
        &self.handle
    }
}
