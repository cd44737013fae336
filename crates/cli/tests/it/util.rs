//! Shared helpers: the binary under test, an in-process mock model, journal queries.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chassis_mock::{MockConfig, MockHandle, Script, Stats};
use serde_json::Value;

/// The binary under test.
pub(crate) const CHASSIS: &str = env!("CARGO_BIN_EXE_chassis");

/// The longest any one command may take before a test gives up on it: generous, so that a
/// busy machine makes the suite slower rather than red.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

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

/// How a finished command exited and what it printed.
#[derive(Debug)]
pub(crate) struct Output {
    /// Exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl Output {
    /// Stdout parsed as one JSON value.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self:#?}"))
    }

    /// Panics, showing the output, unless the exit code is `code`.
    #[track_caller]
    pub(crate) fn expect_code(&self, code: i32) -> &Output {
        assert_eq!(self.code, Some(code), "unexpected exit code: {self:#?}");
        self
    }
}

/// A child process in its own process group, its output going to temporary files.
///
/// The group lets a test kill chassis together with the tools it is running, and reap them.
pub(crate) struct Spawned {
    child: Child,
    stdout: File,
    stderr: File,
}

impl Spawned {
    /// Starts `command` as the leader of a new process group.
    pub(crate) fn start(command: &mut Command) -> Spawned {
        use std::os::unix::process::CommandExt;

        let stdout = tempfile::tempfile().expect("temporary file for stdout");
        let stderr = tempfile::tempfile().expect("temporary file for stderr");
        let child = command
            .process_group(0)
            .stdout(stdout.try_clone().expect("clone stdout file"))
            .stderr(stderr.try_clone().expect("clone stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Spawned {
            child,
            stdout,
            stderr,
        }
    }

    /// The process id (and process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it is reaped if so).
    pub(crate) fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends SIGTERM and waits for the process to exit, as a service manager stops it.
    #[allow(
        unsafe_code,
        reason = "std cannot send SIGTERM; the process is one this test started"
    )]
    pub(crate) fn terminate(self) -> Output {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) takes no pointers.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        self.finish()
    }

    /// Writes `bytes` to the process's stdin (started piped) and closes it.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let mut stdin = self.child.stdin.take().expect("stdin is piped");
        stdin.write_all(bytes).expect("write stdin");
    }

    /// Waits for the process to exit (at most [`COMMAND_TIMEOUT`]) and collects its output.
    pub(crate) fn finish(mut self) -> Output {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            match self.child.try_wait().expect("wait for chassis") {
                Some(status) => break status,
                None if Instant::now() > deadline => {
                    let pid = self.child.id();
                    self.crash(None);
                    panic!(
                        "chassis (pid {pid}) still running after {COMMAND_TIMEOUT:?}; killed it"
                    );
                }
                // Polling granularity only; nothing is asserted about how long this takes.
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        self.output(status)
    }

    /// SIGKILLs the process; with `tools_outlive_it`, the rest of its group (the tool it was
    /// running) lives on that long before it is killed too. Everything is reaped.
    pub(crate) fn crash(mut self, tools_outlive_it: Option<Duration>) {
        let group = self.child.id();
        match tools_outlive_it {
            None => kill_group(group),
            Some(grace) => {
                // Only chassis dies; it stays a zombie (so its pid cannot be reused as a group
                // id) until the whole group is killed below.
                let _ = self.child.kill();
                std::thread::sleep(grace);
                kill_group(group);
            }
        }
        let _ = self.child.wait();
        reap_group(group);
    }

    fn output(mut self, status: ExitStatus) -> Output {
        let read = |file: &mut File| {
            let mut text = String::new();
            file.rewind().expect("rewind output file");
            file.read_to_string(&mut text).expect("output is UTF-8");
            text
        };
        Output {
            code: status.code(),
            stdout: read(&mut self.stdout),
            stderr: read(&mut self.stderr),
        }
    }
}

/// Runs `command` to its end (at most [`COMMAND_TIMEOUT`]).
pub(crate) fn run(command: &mut Command) -> Output {
    Spawned::start(command).finish()
}

/// Sends SIGKILL to every process of the group led by `leader`.
#[allow(
    unsafe_code,
    reason = "std has no safe way to signal a process group; the group is one this test started"
)]
fn kill_group(leader: u32) {
    let group = libc::pid_t::try_from(leader).expect("pid fits pid_t");
    // SAFETY: kill(2) takes no pointers; a group that is already gone gives ESRCH, ignored.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

/// Reaps the group's processes that were re-parented to this process (see
/// [`become_subreaper`]), so killed tools do not linger as zombies.
#[allow(
    unsafe_code,
    reason = "std cannot wait for a process group; the group is one this test started"
)]
fn reap_group(leader: u32) {
    let group = libc::pid_t::try_from(leader).expect("pid fits pid_t");
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid, writable int for the duration of the call.
        let reaped = unsafe { libc::waitpid(-group, &mut status, 0) };
        if reaped > 0 {
            continue;
        }
        if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        // ECHILD: none of the group is (any longer) a child of this process.
        return;
    }
}

/// Makes this process adopt the orphans of the processes it starts, so the tools of a killed
/// chassis can be reaped by [`Spawned::crash`] instead of piling up as zombies under an init
/// that may not reap them.
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "prctl has no safe wrapper in std; PR_SET_CHILD_SUBREAPER affects only this process"
)]
pub(crate) fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes plain integers and no pointers.
    unsafe {
        libc::prctl(
            libc::PR_SET_CHILD_SUBREAPER,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
    }
}

/// Elsewhere orphans go to init; reaping them is then its job.
#[cfg(not(target_os = "linux"))]
pub fn become_subreaper() {}

/// The mock model, served on 127.0.0.1 by a runtime owned by the test.
pub(crate) struct Mock {
    // Dropped first: stops the server while its runtime still exists.
    handle: MockHandle,
    _runtime: tokio::runtime::Runtime,
}

impl Mock {
    /// Serves `script` (TOML), answering every request after `latency`.
    pub(crate) fn start(script: &str, latency: Duration) -> Mock {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime for the mock");
        let script = Script::from_toml_str(script).expect("test script is valid");
        let config = MockConfig {
            latency,
            ..MockConfig::default()
        };
        let addr = "127.0.0.1:0".parse().expect("loopback address");
        let handle = runtime
            .block_on(chassis_mock::start(config, script, addr))
            .expect("mock binds to 127.0.0.1");
        Mock {
            handle,
            _runtime: runtime,
        }
    }

    /// The OpenAI base URL to put in a spec.
    pub(crate) fn base_url(&self) -> String {
        self.handle.base_url()
    }

    /// All counters.
    pub(crate) fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Requests of the conversation whose first user message is `input`, by turn.
    pub(crate) fn turns(&self, input: &str) -> BTreeMap<u32, u64> {
        self.stats()
            .by_conversation
            .remove(input)
            .unwrap_or_default()
    }
}

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

/// The Python interpreter the command tools run with, as an absolute path (found once).
///
/// Absolute so tool calls do not pay for a version-manager shim on every start.
pub(crate) fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
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
pub(crate) fn toml_str(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// Writes `text` to `dir/name`, returning the path.
pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
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
