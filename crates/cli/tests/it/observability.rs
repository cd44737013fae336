//! Observability of the real binary: secrets absent from every artifact, spans exported over
//! OTLP/HTTP, JSON logs carrying run id and step, `/metrics` while a run runs, and
//! `chassis trace` / `chassis stats` read from the journal.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use tempfile::TempDir;

use crate::util::{Mock, Output, chassis, python, run, runs_json, toml_str, write};

/// The model fails a tool, calls a tool that prints secrets, then repeats what it saw.
const SCRIPT: &str = r#"
[[scenario]]
name = "leaky"
when_input_contains = "leak"
[[scenario.turn]]
tool_calls = [{ name = "leak_fail", arguments = {} }]
[[scenario.turn]]
tool_calls = [{ name = "leak", arguments = {} }]
[[scenario.turn]]
text = "The tool said: {last_tool_result} {\"seen\":\"tok\\u005flive\\u005fABCDEFGHIJABCDEFGHIJ1234\"}"

[[scenario]]
name = "human"
when_input_contains = "ask"
[[scenario.turn]]
tool_calls = [{ name = "send", arguments = { text = "{input}" } }]
[[scenario.turn]]
tool_calls = [{ name = "send", arguments = { text = "once more" } }]
[[scenario.turn]]
tool_calls = [{ name = "slow", arguments = {} }]
[[scenario.turn]]
text = "Settled: {last_tool_result}"

[[scenario]]
name = "notes"
[[scenario.turn]]
tool_calls = [{ name = "read_file", arguments = { path = "note.txt" } }]
[[scenario.turn]]
text = "The note says: {last_tool_result}"
"#;

/// Prints the secret variables and a token that matches the spec's pattern, as they are and
/// as a JSON encoder may escape them. The token is put together at run time so that it appears
/// in no file of the test directory.
const LEAK_PY: &str = r#"
import os, sys
token = "tok_live_" + "ABCDEFGHIJ" * 2 + "1234"
env, key = os.environ["OBS_SECRET"], os.environ["OBS_API_KEY"]
line = "env=%s key=%s token=%s" % (env, key, token)
escaped = lambda s: "".join("\\u%04x" % ord(c) if c in "-_" else c for c in s)
line += ' json={"env":"%s","key":"%s","token":"%s"}' % (escaped(env), escaped(key), escaped(token))
if sys.argv[1:] == ["fail"]:
    sys.stderr.write("failed with " + line + "\n")
    sys.exit(3)
print(line)
"#;

/// An irreversible tool that keeps the arguments it got and the environment it saw.
const SEND_PY: &str = r#"
import json, os, sys
args = json.load(sys.stdin)
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"args": args, "env": dict(os.environ)}) + "\n")
print("sent")
"#;

/// A key in chassis's environment that the spec never names: only a tool process that
/// inherited chassis's environment could write it anywhere.
const UNNAMED_KEY: &str = "sk-unnamed-provider-key-7e6d5c4b3a";

/// The value of a variable named under `[redact] env`.
const ENV_SECRET: &str = "zz-env-secret-4f9a1c77e2";
/// The provider's API key: sent to the model as a header.
const API_KEY: &str = "sk-header-key-0b1c2d3e4f5a6b7c";
/// What the tool prints for the `[redact] patterns` entry.
const TOKEN: &str = "tok_live_ABCDEFGHIJABCDEFGHIJ1234";

/// An agent whose tools leak secrets and read a note, its journal, and its mock model.
struct Desk {
    dir: TempDir,
    db: PathBuf,
    spec: PathBuf,
    /// Where the `send` tool writes what it got and saw.
    sent: PathBuf,
    /// Receives the agent's alert webhooks.
    alerts: Receiver,
    _mock: Mock,
}

impl Desk {
    fn new(latency: Duration, limits: &str) -> Desk {
        let mock = Mock::start(SCRIPT, latency);
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        std::fs::create_dir(root.join("notes")).expect("notes directory");
        write(&root.join("notes"), "note.txt", "replica lag resolved");
        write(root, "leak.py", LEAK_PY);
        write(root, "send.py", SEND_PY);
        let sent = root.join("sent.jsonl");
        let alerts = Receiver::start();
        write(
            root,
            "prompt.md.j2",
            "You read notes. Request: {{ input }}\n",
        );
        let python = toml_str(python());
        let spec = write(
            root,
            "agent.toml",
            &format!(
                r#"[agent]
name = "obs-desk"
prompt = "prompt.md.j2"

[model]
primary = "mock:obs-model"
timeout = "60s"

[providers.mock]
kind = "openai"
base_url = {base_url}
api_key_env = "OBS_API_KEY"

[redact]
env = ["OBS_SECRET"]
patterns = ["tok_live_[A-Za-z0-9]{{20,}}"]

[limits]
{limits}

[alerts]
webhook = {webhook}
secret_env = "OBS_HOOK_SECRET"

[approvals.tools]
slow = "auto"

[[tools]]
name = "send"
description = "Sends a message; cannot be undone"
command = [{python}, "-I", "send.py", {sent}]
args_schema = {{ type = "object", properties = {{ text = {{ type = "string" }} }} }}
timeout = "60s"

[[tools]]
name = "slow"
description = "Takes longer than it may"
command = [{python}, "-I", "-c", "import time; time.sleep(60)"]
timeout = "1s"

[[tools]]
use = "builtin:fs"
root = "notes"
only = ["read_file"]

[[tools]]
name = "leak"
description = "Prints what it knows"
command = [{python}, "-I", "leak.py"]
risk = "read_only"
timeout = "60s"
env = ["OBS_SECRET", "OBS_API_KEY"]

[[tools]]
name = "leak_fail"
description = "Fails, saying what it knows"
command = [{python}, "-I", "leak.py", "fail"]
risk = "read_only"
timeout = "60s"
env = ["OBS_SECRET", "OBS_API_KEY"]
"#,
                base_url = toml_str(&mock.base_url()),
                webhook = toml_str(&alerts.endpoint()),
                sent = toml_str(&sent.display().to_string()),
            ),
        );
        Desk {
            db: root.join("j.db"),
            dir,
            spec,
            sent,
            alerts,
            _mock: mock,
        }
    }

    /// `chassis` with the secrets in its environment.
    fn chassis(&self) -> Command {
        let mut command = chassis(&self.db);
        command
            .env("OBS_SECRET", ENV_SECRET)
            .env("OBS_HOOK_SECRET", "obs-webhook-signing-secret-0123456789")
            .env("OBS_API_KEY", API_KEY)
            .env("OPENAI_API_KEY", UNNAMED_KEY)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        command
    }

    fn run(&self, input: &str, args: &[&str]) -> Command {
        let mut command = self.chassis();
        command
            .args(args)
            .arg("run")
            .arg(&self.spec)
            .args(["--input", input]);
        command
    }
}

/// A minimal OTLP/HTTP receiver on 127.0.0.1: keeps every request body, answers 200.
pub(crate) struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let store = Arc::clone(&store);
                std::thread::spawn(move || serve(stream, &store));
            }
        });
        Receiver { addr, bodies }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn bodies(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().expect("receiver lock").clone()
    }

    /// Every exported span's name and attributes (as `key=value` text).
    pub(crate) fn spans(&self) -> Vec<(String, Vec<String>)> {
        self.bodies()
            .iter()
            .flat_map(|body| {
                chassis_telemetry::proto::ExportTraceServiceRequest::decode(&body[..])
                    .expect("an OTLP protobuf request")
                    .resource_spans
            })
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .map(|span| {
                let attrs = span
                    .attributes
                    .iter()
                    .map(|kv| format!("{}={:?}", kv.key, kv.value))
                    .collect();
                (span.name, attrs)
            })
            .collect()
    }
}

/// Serves HTTP/1.1 requests on one connection until the client closes it.
fn serve(stream: TcpStream, store: &Mutex<Vec<Vec<u8>>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut stream = stream;
    loop {
        let mut length = 0;
        let mut first = true;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.trim_end().is_empty() && !first {
                break;
            }
            first = false;
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        store.lock().expect("receiver lock").push(body);
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read test directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).expect("read artifact")));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The run id of the only run in the journal.
fn only_run(db: &Path) -> String {
    let runs = runs_json(db, &[]);
    assert_eq!(runs.len(), 1, "{runs:#?}");
    runs[0]["run_id"].as_str().expect("run id").to_string()
}

#[test]
fn planted_secrets_appear_in_no_artifact() {
    let desk = Desk::new(Duration::ZERO, "max_steps = 6");
    let receiver = Receiver::start();
    let mut artifacts: Vec<(String, Vec<u8>)> = Vec::new();

    // The run, logging everything there is to log (trace level, JSON) and exporting spans
    // with message content: the most a deployment could expose.
    let recorded = desk.dir.path().join("recorded.json");
    let out = run(desk
        .run(
            "leak everything",
            &["--log", "trace", "--log-format", "json"],
        )
        .arg("--record")
        .arg(&recorded)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        .env("OTEL_BSP_SCHEDULE_DELAY", "50"));
    out.expect_code(0);
    assert!(
        out.stdout
            .starts_with("The tool said: env=[REDACTED] key=[REDACTED] token=[REDACTED]"),
        "the model saw the tool's output redacted: {out:#?}"
    );
    assert!(
        out.stderr.lines().any(|l| l.starts_with('{')),
        "JSON logs were written"
    );
    assert!(
        out.stderr.contains("[REDACTED]"),
        "the failing tool's error reached the log, redacted"
    );
    artifacts.push(("run stdout".into(), out.stdout.into_bytes()));
    artifacts.push(("run stderr (trace, json)".into(), out.stderr.into_bytes()));
    let run_id = only_run(&desk.db);

    let exported = desk.dir.path().join("exported.json");
    let exported_arg = exported.display().to_string();
    // Every way of reading the run back, with readable logs this time.
    for args in [
        vec!["export", &run_id, "--cassette", &exported_arg],
        vec!["show", &run_id, "--json"],
        vec!["show", &run_id],
        vec!["trace", &run_id],
        vec!["trace", &run_id, "--json"],
        vec!["stats", "--json"],
        vec!["runs", "--json"],
        vec!["resume", &run_id],
    ] {
        let out = run(desk.chassis().args(["--log", "debug"]).args(&args));
        out.expect_code(0);
        artifacts.push((format!("{args:?} stdout"), out.stdout.into_bytes()));
        artifacts.push((format!("{args:?} stderr"), out.stderr.into_bytes()));
    }

    // Secrets typed by people: in a run's input, edited arguments (JSON-escaped, as a client
    // may send them), a note, who decided, a rejection's reason and a settled call's result.
    let escaped_secret = ENV_SECRET.replace('-', "\\u002d");
    let human = run(desk
        .run(&format!("ask about {ENV_SECRET}"), &[])
        .arg("--json")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        .env("OTEL_BSP_SCHEDULE_DELAY", "50"));
    human.expect_code(3);
    let human_run = human.json()["run_id"].as_str().expect("run id").to_string();
    artifacts.push(("human run stdout".into(), human.stdout.clone().into_bytes()));
    artifacts.push(("human run stderr".into(), human.stderr.clone().into_bytes()));
    let edited = format!(r#"{{"text": "edited {escaped_secret}"}}"#);
    let note = format!("ok, key is {API_KEY}");
    let reason = format!("no: {}", TOKEN.replace('_', "\\u005f"));
    let result = format!("done with {ENV_SECRET}");
    for (args, code) in [
        (
            vec![
                "approve", &human_run, "1.0", "--args", &edited, "--note", &note,
            ]
            .into_iter()
            .chain(["--by", TOKEN, "--resume"])
            .collect::<Vec<&str>>(),
            3,
        ),
        (
            vec!["reject", &human_run, "2.0", "--reason", &reason, "--resume"],
            3,
        ),
        (
            vec![
                "resolve",
                &human_run,
                "3.0",
                "--succeeded",
                "--result",
                &result,
                "--resume",
            ],
            0,
        ),
    ] {
        let out = run(desk
            .chassis()
            .args(["--log", "debug"])
            .args(&args)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
            .env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
            .env("OTEL_BSP_SCHEDULE_DELAY", "50"));
        out.expect_code(code);
        artifacts.push((format!("{args:?} stdout"), out.stdout.into_bytes()));
        artifacts.push((format!("{args:?} stderr"), out.stderr.into_bytes()));
    }
    let shown = run(desk.chassis().args(["show", &human_run, "--json"]));
    shown.expect_code(0);
    for kind in ["approval_decided", "outcome_resolved"] {
        assert!(
            shown.stdout.contains(kind),
            "{kind} journaled: {}",
            shown.stdout
        );
    }
    assert!(
        shown.stdout.contains("Settled: done with [REDACTED]"),
        "the model saw the settled result redacted: {}",
        shown.stdout
    );
    artifacts.push(("human run show".into(), shown.stdout.into_bytes()));

    // What the irreversible tool got and saw: the edited arguments as journaled (redacted),
    // and an environment without the variables no entry names.
    let sent = std::fs::read_to_string(&desk.sent).expect("the send tool ran");
    let seen: Vec<Value> = sent
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(seen.len(), 1, "approved once, rejected once: {sent}");
    let env = seen[0]["env"].as_object().expect("the tool's environment");
    assert!(env.contains_key("PATH"), "{env:?}");
    for name in ["OBS_SECRET", "OBS_API_KEY", "OPENAI_API_KEY"] {
        assert!(
            !env.contains_key(name),
            "the tool inherited {name}: {env:?}"
        );
    }
    assert_eq!(seen[0]["args"]["text"], "edited [REDACTED]");

    let alert_bodies = desk.alerts.bodies();
    assert!(
        alert_bodies
            .iter()
            .any(|b| contains(b, "approval_requested")),
        "the approval was announced to the webhook"
    );
    for (i, body) in alert_bodies.into_iter().enumerate() {
        artifacts.push((format!("alert {i}"), body));
    }

    let bodies = receiver.bodies();
    assert!(!bodies.is_empty(), "spans were exported");
    let spans = receiver.spans();
    assert!(
        spans.iter().any(|(name, attrs)| name == "execute_tool leak"
            && attrs
                .iter()
                .any(|a| a.starts_with("gen_ai.tool.call.result="))),
        "tool results were exported (content capture on): {spans:#?}"
    );
    for (i, body) in bodies.into_iter().enumerate() {
        artifacts.push((format!("exported span batch {i}"), body));
    }
    // The database file and its WAL, the spec, the prompt, the notes.
    for (path, bytes) in files(desk.dir.path()) {
        artifacts.push((path.display().to_string(), bytes));
    }
    for file in ["j.db", "recorded.json", "exported.json", "sent.jsonl"] {
        assert!(
            artifacts.iter().any(|(name, _)| name.ends_with(file)),
            "{file} is among the artifacts"
        );
    }

    let journal = artifacts
        .iter()
        .find(|(name, _)| name.contains("\"show\"") && name.ends_with("stdout"))
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default();
    assert!(
        journal.contains("[REDACTED]"),
        "the tool's output was journaled, redacted"
    );

    // Each secret as written, as JSON escapes it (`-` as `\u002d`, `_` as `\u005f`), and as
    // that escaped text looks inside a JSON string (in a JSON journal or cassette).
    let escaped = |s: &str, slash: &str| {
        s.replace('-', &format!("{slash}u002d"))
            .replace('_', &format!("{slash}u005f"))
    };
    let mut hits = Vec::new();
    for (name, bytes) in &artifacts {
        for secret in [ENV_SECRET, API_KEY, TOKEN, UNNAMED_KEY] {
            let needles = [
                secret.to_string(),
                escaped(secret, "\\"),
                escaped(secret, "\\\\"),
            ];
            for needle in needles {
                if contains(bytes, &needle) {
                    let text = String::from_utf8_lossy(bytes);
                    let line = text
                        .lines()
                        .find(|l| l.contains(&needle))
                        .unwrap_or_default();
                    hits.push(format!("{needle} in {name}: {line}"));
                }
            }
        }
    }
    assert!(hits.is_empty(), "secrets leaked: {hits:#?}");
}

#[test]
fn json_logs_carry_run_id_and_step() {
    let desk = Desk::new(Duration::ZERO, "max_steps = 6");
    let out = run(&mut desk.run("read the note", &["--log", "debug", "--log-format", "json"]));
    out.expect_code(0);
    let run_id = only_run(&desk.db);
    let lines: Vec<Value> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "{out:#?}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "{key} missing: {line}");
        }
    }
    // From the run's start to its stop, every line chassis logs names the run, and once a step
    // began, the step. (Libraries' background tasks, such as the HTTP connection pool shared by
    // every run, log outside any run.)
    let lines: Vec<Value> = lines
        .into_iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("chassis"))
        })
        .collect();
    let start = lines
        .iter()
        .position(|l| l["message"] == "run started")
        .expect("a run started line");
    let stop = lines
        .iter()
        .position(|l| l["message"] == "run stopped")
        .expect("a run stopped line");
    let first_step = lines
        .iter()
        .position(|l| l.get("step").is_some())
        .expect("lines with a step");
    assert!(start < first_step && first_step < stop);
    for line in &lines[start..=stop] {
        assert_eq!(line["run_id"], run_id.as_str(), "{line}");
    }
    for line in &lines[first_step..=stop] {
        assert!(line["step"].as_u64().is_some_and(|s| s >= 1), "{line}");
    }
    assert_eq!(lines[stop]["step"], 2);

    // The default is one readable line per event, with the run id and step.
    let out = run(&mut desk.run("read the note", &["--log", "debug"]));
    out.expect_code(0);
    let stopped = out
        .stderr
        .lines()
        .find(|l| l.contains("run stopped"))
        .expect("a run stopped line");
    assert!(
        stopped.contains(" DEBUG ") || stopped.contains(" INFO "),
        "{stopped}"
    );
    assert!(
        stopped.contains(" run_") && stopped.contains(" step=2 "),
        "{stopped}"
    );

    let out = run(desk.chassis().args(["--log-format", "yaml", "runs"]));
    out.expect_code(2);
    assert!(out.stderr.contains("yaml"), "{out:#?}");
}

/// Runs `command` with stderr piped; returns the child and a receiver of its stderr lines.
fn spawn_reading_stderr(
    command: &mut Command,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chassis");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    (child, receive)
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to /metrics");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read response");
    text
}

#[test]
fn metrics_are_served_while_a_run_runs() {
    // Each model reply takes a while, so the run is still going when /metrics is read.
    let desk = Desk::new(Duration::from_millis(1500), "max_steps = 6");
    let (mut child, lines) = spawn_reading_stderr(
        desk.run("read the note", &["--metrics-addr", "127.0.0.1:0"])
            .arg("--quiet"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("chassis announces where metrics are served");
        if let Some(url) = line.strip_prefix("metrics: http://") {
            break url.trim_end_matches("/metrics").to_string();
        }
    };
    // The address is announced before the run starts; poll until it has.
    let response = loop {
        let response = http_get(&addr, "/metrics");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        if response.contains("chassis_runs_started_total{") || Instant::now() > deadline {
            break response;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(response.contains("text/plain; version=0.0.4"), "{response}");
    assert!(
        response.contains("chassis_runs_started_total{agent=\"obs-desk\",version=\""),
        "{response}"
    );
    assert!(
        response.contains("chassis_runs_active{agent=\"obs-desk\",version=\""),
        "{response}"
    );
    assert!(response.contains("# TYPE chassis_step_duration_seconds histogram"));
    let status = child.wait().expect("chassis exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_binary_exports_the_run_and_its_resume_to_one_trace() {
    let desk = Desk::new(Duration::ZERO, "max_steps = 1\non_limit = \"pause\"");
    let receiver = Receiver::start();
    let otel = |command: &mut Command| {
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
            .env("OTEL_SERVICE_NAME", "obs");
    };
    let mut command = desk.run("read the note", &[]);
    otel(&mut command);
    run(&mut command).expect_code(3);
    let run_id = only_run(&desk.db);
    let first = receiver.spans();
    assert!(
        first
            .iter()
            .any(|(name, _)| name == "invoke_agent obs-desk"),
        "the run's span is exported when the command ends: {first:#?}"
    );

    let mut command = desk.chassis();
    command.args(["resume", &run_id, "--raise", "max_steps=5"]);
    otel(&mut command);
    run(&mut command).expect_code(0);

    let trace_id = chassis_telemetry::ids::trace_id(&run_id);
    let mut traces = Vec::new();
    let mut segments = 0;
    for body in receiver.bodies() {
        let request = chassis_telemetry::proto::ExportTraceServiceRequest::decode(&body[..])
            .expect("an OTLP protobuf request");
        for span in request
            .resource_spans
            .into_iter()
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
        {
            traces.push(span.trace_id.clone());
            if span.name == "invoke_agent obs-desk" {
                segments += 1;
            }
        }
    }
    assert_eq!(segments, 2, "the start and the resume");
    assert!(traces.iter().all(|t| t[..] == trace_id[..]), "one trace");

    // `chassis trace` names the same trace id and shows the pause and the resume.
    let out = run(desk.chassis().args(["trace", &run_id]));
    out.expect_code(0);
    assert!(
        out.stdout.contains(&chassis_telemetry::ids::hex(&trace_id)),
        "{}",
        out.stdout
    );
}

#[test]
fn trace_draws_the_run_and_stats_sum_up_runs() {
    let desk = Desk::new(Duration::ZERO, "max_steps = 1\non_limit = \"pause\"");
    run(&mut desk.run("read the note", &[])).expect_code(3);
    let paused = only_run(&desk.db);
    run(desk
        .chassis()
        .args(["resume", &paused, "--raise", "max_steps=5"]))
    .expect_code(0);
    run(&mut desk.run("read the note again", &[])).expect_code(3);

    let out: Output = run(desk.chassis().args(["trace", &paused]));
    out.expect_code(0);
    let text = &out.stdout;
    assert!(
        text.starts_with(&format!("{paused}  obs-desk  completed\n")),
        "{text}"
    );
    // Not a terminal: ASCII marks (`output.rs` checks the symbols a terminal gets).
    for needle in [
        "2 step(s), 1 tool call(s)",
        "> started  mock:obs-model",
        "* step 1  mock:obs-model -> calls read_file  [",
        "`- + read_file",
        "max_steps",
        "|| paused: limit max_steps reached",
        "> resumed",
        "* step 2  mock:obs-model -> answer",
        "# completed",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let json: Value =
        serde_json::from_str(&run(desk.chassis().args(["trace", &paused, "--json"])).stdout)
            .expect("trace --json is JSON");
    assert_eq!(json["run_id"], paused.as_str());
    assert_eq!(json["status"], "completed");
    let kinds: Vec<&str> = json["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "started", "step", "note", "wait", "note", "resumed", "step", "end"
        ],
        "{json:#}"
    );
    let step = &json["nodes"][1];
    assert!(step["duration_ms"].as_u64().is_some(), "{step}");
    assert!(
        step["attrs"]["input_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    assert_eq!(step["children"][0]["kind"], "tool");
    assert_eq!(step["children"][0]["ok"], true);

    let out = run(desk.chassis().args(["stats", "--json"]));
    out.expect_code(0);
    let stats: Value = out.json();
    let all = stats["stats"]
        .as_array()
        .and_then(|s| s.last())
        .expect("an overall entry");
    assert_eq!(all["agent"], Value::Null);
    assert_eq!(all["runs"], 2);
    assert_eq!(all["by_status"]["completed"], 1);
    assert_eq!(all["by_status"]["paused"], 1);
    assert_eq!(all["completion_rate"], 1.0);
    assert_eq!(all["error_rate"], 0.0);
    assert_eq!(all["escalation_rate"], 0.0);
    assert!(all["avg_time_to_completion_ms"].as_f64().is_some());
    assert_eq!(stats["stats"][0]["agent"], "obs-desk");

    let out = run(desk.chassis().args(["stats"]));
    out.expect_code(0);
    assert!(out.stdout.starts_with("AGENT "), "{}", out.stdout);
    assert!(out.stdout.contains("obs-desk"), "{}", out.stdout);
    assert!(out.stdout.contains("100.0%"), "{}", out.stdout);

    let out = run(desk
        .chassis()
        .args(["stats", "--json", "--agent", "nobody"]));
    assert_eq!(out.json()["stats"][0]["runs"], 0);
    let out = run(desk
        .chassis()
        .args(["stats", "--json", "--since", "2999-01-01"]));
    assert_eq!(out.json()["stats"][0]["runs"], 0);
    let out = run(desk.chassis().args(["stats", "--json", "--since", "1h"]));
    assert_eq!(
        out.json()["stats"]
            .as_array()
            .and_then(|s| s.last())
            .expect("all")["runs"],
        2
    );
    let out = run(desk.chassis().args(["stats", "--since", "last tuesday"]));
    out.expect_code(2);
    assert!(out.stderr.contains("--since last tuesday"), "{out:#?}");
}
