//! Shared helpers: the binary under test, an in-process mock model, journal queries.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
pub(crate) const CHASSIS: &str = env!("CARGO_BIN_EXE_chassis");

pub(crate) use chassis_testkit::process::{
    COMMAND_TIMEOUT, Output, Spawned, become_subreaper, run,
};

/// Variables that would make a run depend on the machine: a default journal, a log filter,
/// real provider settings, or a proxy in front of the loopback mock.
const SCRUBBED_ENV: [&str; 10] = [
    "CHASSIS_DB",
    "CHASSIS_LOG",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// `chassis --db DB`, with a scrubbed environment and stdin closed.
pub(crate) fn chassis(db: &Path) -> Command {
    let mut command = Command::new(CHASSIS);
    command.arg("--db").arg(db);
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command.env("NO_PROXY", "127.0.0.1,localhost");
    command.stdin(Stdio::null());
    command
}

pub(crate) use chassis_testkit::fixture::{Mock, python, toml_str};

/// A model server that answers with canned chat completions, in order, and keeps every
/// request body: for asserting what chassis puts on the wire, which the mock does not show.
pub(crate) struct Recorder {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Recorder {
    /// Serves `replies` (OpenAI chat-completion bodies), one per request, then stops accepting.
    pub(crate) fn start(replies: Vec<Value>) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for (reply, stream) in replies.into_iter().zip(listener.incoming()) {
                let stream = stream.expect("accept a model request");
                let body = answer(stream, &reply);
                seen.lock().expect("recorder lock").push(body);
            }
        });
        Recorder { addr, bodies }
    }

    /// The OpenAI base URL to put in a spec.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request body received so far.
    pub(crate) fn requests(&self) -> Vec<Value> {
        self.bodies.lock().expect("recorder lock").clone()
    }
}

/// Reads one HTTP request from `stream`, answers `reply` and closes; returns the request body.
fn answer(stream: TcpStream, reply: &Value) -> Value {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read request head");
        if line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("numeric content-length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("read request body");
    let text = reply.to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    )
    .expect("write response");
    serde_json::from_slice(&body).expect("request body is JSON")
}

/// Writes `text` to `dir/name`, returning the path.
pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    chassis_testkit::fixture::write(&dir.join(name), text)
}

/// `chassis runs --json` plus `args`, parsed.
pub(crate) fn runs_json(db: &Path, args: &[&str]) -> Vec<Value> {
    let out = run(chassis(db).args(["runs", "--json"]).args(args));
    out.expect_code(0);
    match out.json() {
        Value::Array(rows) => rows,
        other => panic!("runs --json printed {other}, not an array"),
    }
}

/// `chassis show RUN --json`, parsed.
pub(crate) fn show_json(db: &Path, run_id: &str) -> Value {
    let out = run(chassis(db).args(["show", run_id, "--json"]));
    out.expect_code(0);
    out.json()
}

/// The events of a `show --json` document.
pub(crate) fn events(show: &Value) -> &[Value] {
    show["events"]
        .as_array()
        .unwrap_or_else(|| panic!("show --json has no events array: {show}"))
}

/// The `kind` of every event, in journal order.
pub(crate) fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["kind"].as_str().expect("every event has a kind"))
        .collect()
}

/// Asserts the journal opens with `run_started` at seq 1 and its seqs have no gap.
#[track_caller]
pub(crate) fn assert_well_formed(events: &[Value]) {
    assert_eq!(
        events.first().map(|e| &e["kind"]),
        Some(&Value::from("run_started")),
        "journal must open with run_started: {events:#?}"
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event["seq"].as_u64(),
            Some(i as u64 + 1),
            "seqs must be 1, 2, 3, … without gaps: {events:#?}"
        );
    }
}

/// Asserts nothing was journaled in `db`: no file at all, or a journal without runs.
#[track_caller]
pub(crate) fn assert_nothing_journaled(db: &Path) {
    if db.exists() {
        assert_eq!(
            runs_json(db, &[]),
            Vec::<Value>::new(),
            "runs were journaled"
        );
    }
}

/// `chassis` without `--db`, run in `dir`, with a scrubbed environment and stdin closed: for
/// what depends on where chassis is started (journal discovery, relative paths).
pub(crate) fn chassis_in(dir: &Path) -> Command {
    let mut command = Command::new(CHASSIS);
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command.env("NO_PROXY", "127.0.0.1,localhost");
    command.current_dir(dir);
    command.stdin(Stdio::null());
    command
}

/// A small agent without tools that answers `echo: INPUT`, priced at a cent per million
/// tokens (so every run costs a fraction of a cent), with `team` in its `[vars]`.
pub(crate) struct Echo {
    /// Holds the spec, the prompt and the journal.
    pub dir: tempfile::TempDir,
    /// The journal.
    pub db: PathBuf,
    /// `agent.toml`.
    pub spec: PathBuf,
    /// The model, served while the agent is used.
    _mock: Mock,
}

/// What [`Echo`]'s model answers.
pub(crate) const ECHO_SCRIPT: &str = r#"
[[scenario]]
name = "echo"
[[scenario.turn]]
text = "echo: {input}"
"#;

impl Echo {
    /// The agent, its journal and its model; `extra` is appended to the spec.
    pub(crate) fn new(extra: &str) -> Echo {
        let mock = Mock::start(ECHO_SCRIPT, Duration::ZERO);
        let dir = tempfile::tempdir().expect("temporary directory");
        write(
            dir.path(),
            "prompt.md.j2",
            "You are the desk of team {{ team }}. Request: {{ input }}\n",
        );
        let spec = write(
            dir.path(),
            "agent.toml",
            &format!(
                r#"[agent]
name = "echo-desk"
prompt = "prompt.md.j2"

[model]
primary = "mock:echo-model"
max_tokens = 64

[providers.mock]
kind = "openai"
base_url = {}
max_attempts = 1

[pricing."mock:echo-model"]
input = 0.01
output = 0.01

[vars]
team = "platform"
{extra}"#,
                toml_str(&mock.base_url())
            ),
        );
        Echo {
            db: dir.path().join("j.db"),
            dir,
            spec,
            _mock: mock,
        }
    }

    /// `chassis --db DB` for this agent's journal.
    pub(crate) fn chassis(&self) -> Command {
        chassis(&self.db)
    }

    /// Runs the agent on `input` to its end (exit code 0 asserted); returns the run id.
    pub(crate) fn run(&self, input: &str) -> String {
        let out = run(self
            .chassis()
            .arg("run")
            .arg(&self.spec)
            .args(["--input", input, "--json"]));
        out.expect_code(0);
        out.json()["run_id"]
            .as_str()
            .expect("run --json has a run_id")
            .to_string()
    }
}
