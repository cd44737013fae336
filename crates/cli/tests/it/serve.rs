//! `chassis serve` as a process: a client follows a run's stream while the server is
//! SIGKILLed mid-run and started again on the same journal; the client resumes from its
//! `Last-Event-ID`, sees every event exactly once, and the run completes with nothing that was
//! journaled done twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Mock, Spawned, chassis, python, toml_str, write};

/// Three steps, each a tool call, then the answer; the last tool is irreversible.
const SCRIPT: &str = r#"
[[scenario]]
[[scenario.turn]]
tool_calls = [{ name = "look", arguments = { what = "a" } }]
[[scenario.turn]]
tool_calls = [{ name = "look", arguments = { what = "b" } }]
[[scenario.turn]]
tool_calls = [{ name = "record", arguments = { line = "{input}" } }]
[[scenario.turn]]
text = "done: {last_tool_result}"
"#;

const LOOK: &str = "import json,sys; a=json.load(sys.stdin); print('saw ' + a['what'])";

const RECORD: &str = r#"
import json, os, sys
args = json.load(sys.stdin)
with open(sys.argv[1], "a") as ledger:
    ledger.write(args["line"] + " " + os.environ["CHASSIS_IDEMPOTENCY_KEY"] + "\n")
print("recorded")
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `chassis serve` on `port`; returns the process (its URL line is on stdout).
fn serve(db: &Path, agents: &Path, port: u16) -> Spawned {
    Spawned::start(chassis(db).args([
        "serve",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--agents",
        &agents.display().to_string(),
        "--lease-ttl",
        "2s",
        "--poll-interval",
        "100ms",
    ]))
}

/// Waits until the server at `base` answers.
async fn until_up(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "the server never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A token of `role` made with `chassis tokens create`, as an operator would.
fn make_token(db: &Path, name: &str, role: &str) -> String {
    let out =
        crate::util::run(chassis(db).args(["tokens", "create", "--name", name, "--role", role]));
    out.expect_code(0);
    out.stdout.trim().to_string()
}

/// Starts a run of `clerk` on `input` through the API; returns its id.
async fn start_clerk(http: &reqwest::Client, base: &str, token: &str, input: &str) -> String {
    let response = http
        .post(format!("{base}/v1/runs"))
        .bearer_auth(token)
        .json(&json!({ "agent": "clerk", "input": input }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["run_id"].as_str().unwrap().to_string()
}

/// Follows the run's stream, reconnecting with `Last-Event-ID` whenever the connection drops,
/// until the run's terminal event; returns every event's (id, kind) in the order received.
async fn follow(http: reqwest::Client, url: String, token: String) -> Vec<(u64, String)> {
    let mut got: Vec<(u64, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    'reconnect: loop {
        assert!(Instant::now() < deadline, "the run never ended: {got:?}");
        let mut request = http.get(&url).bearer_auth(&token);
        if let Some((last, _)) = got.last() {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let Ok(mut response) = request.send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !response.status().is_success() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut buffer = String::new();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                // The server went away: reconnect from the last id.
                Ok(None) | Err(_) => continue 'reconnect,
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let id = block
                    .lines()
                    .find_map(|l| l.strip_prefix("id: "))
                    .and_then(|v| v.parse::<u64>().ok());
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .and_then(|d| serde_json::from_str::<Value>(d).ok());
                if let (Some(id), Some(data)) = (id, data) {
                    let kind = data["kind"].as_str().unwrap_or_default().to_string();
                    let terminal = kind == "run_completed" || kind == "run_failed";
                    got.push((id, kind));
                    if terminal {
                        return got;
                    }
                }
            }
        }
    }
}

#[test]
fn a_stream_survives_a_killed_server_and_sees_every_event_once() {
    crate::util::become_subreaper();
    let mock = Mock::start(SCRIPT, Duration::from_millis(400));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (agents, ledger) = write_clerk(root, &mock.base_url());
    let db = root.join("j.db");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = chassis_http::client().unwrap();

    let first = serve(&db, &agents, port);
    runtime.block_on(until_up(&http, &base));
    let token = make_token(&db, "follower", "operator");
    let run_id = runtime.block_on(start_clerk(&http, &base, &token, "entry-1"));
    let follower = runtime.spawn(follow(
        http.clone(),
        format!("{base}/v1/runs/{run_id}/stream"),
        token.clone(),
    ));
    // Kill the server in the middle of the run: after the second model call was asked.
    let deadline = Instant::now() + Duration::from_secs(120);
    while mock.stats().requests < 2 {
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.crash(None);
    // Started again on the same journal and port: it takes the run over once the dead
    // server's lease runs out.
    let second = serve(&db, &agents, port);
    let got = runtime.block_on(follower).unwrap();
    second.terminate();

    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    let expected: Vec<u64> = (1..=ids.len() as u64).collect();
    assert_eq!(ids, expected, "every event exactly once, in order: {got:?}");
    assert_eq!(got.last().unwrap().1, "run_completed");
    // Nothing journaled was done twice: one answer per step, one outcome per call, one entry.
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for (_, kind) in &got {
        *answers.entry(kind.clone()).or_default() += 1;
    }
    assert_eq!(answers["model_responded"], 4, "{answers:?}");
    assert_eq!(answers["tool_finished"], 3, "{answers:?}");
    let lines = std::fs::read_to_string(&ledger).unwrap();
    assert_eq!(lines.lines().count(), 1, "recorded once: {lines}");
    assert!(
        answers.get("run_resumed").copied().unwrap_or(0) >= 2,
        "the run was taken over: {answers:?}"
    );
}

/// The `clerk` agent under `root/agents`: `look` (read-only) and `record` (irreversible, which
/// appends to the returned ledger), on the mock at `base_url`.
fn write_clerk(root: &Path, base_url: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let agents = root.join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    write(&agents, "look.py", LOOK);
    write(&agents, "record.py", RECORD);
    write(&agents, "prompt.md.j2", "Handle {{ input }}.\n");
    let ledger = root.join("ledger.txt");
    write(
        &agents,
        "agent.toml",
        &format!(
            r#"[agent]
name = "clerk"
prompt = "prompt.md.j2"

[model]
primary = "mock:m"
timeout = "60s"

[providers.mock]
kind = "openai"
base_url = {url}

[[tools]]
name = "look"
description = "Looks"
command = [{python}, "-I", "look.py"]
risk = "read_only"
args_schema = {{ type = "object", properties = {{ what = {{ type = "string" }} }} }}

[[tools]]
name = "record"
description = "Records"
command = [{python}, "-I", "record.py", {ledger}]
risk = "irreversible"
args_schema = {{ type = "object", properties = {{ line = {{ type = "string" }} }} }}

[approvals]
irreversible = "auto"
"#,
            url = toml_str(base_url),
            python = toml_str(python()),
            ledger = toml_str(&ledger.display().to_string()),
        ),
    );
    (agents, ledger)
}

/// An agent that only answers.
fn plain_agent(dir: &Path, name: &str, base_url: &str) {
    std::fs::create_dir_all(dir).unwrap();
    write(dir, "prompt.md.j2", "Answer {{ input }}.\n");
    write(
        dir,
        "agent.toml",
        &format!(
            "[agent]\nname = \"{name}\"\nprompt = \"prompt.md.j2\"\n\n[model]\nprimary = \"mock:m\"\n\n[providers.mock]\nkind = \"openai\"\nbase_url = {}\n",
            toml_str(base_url)
        ),
    );
}

#[allow(
    unsafe_code,
    reason = "std cannot send SIGHUP; the process is one this test started"
)]
fn hang_up(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes no pointers.
    unsafe {
        libc::kill(pid, libc::SIGHUP);
    }
}

/// SIGHUP reloads the agents directory (a new agent is offered without a restart), and a bad
/// spec stops the server at start naming its file and key.
#[test]
fn sighup_reloads_the_agents_and_a_bad_spec_stops_the_start() {
    crate::util::become_subreaper();
    let mock = Mock::start(SCRIPT, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents");
    plain_agent(&agents.join("first"), "first", &mock.base_url());
    let db = dir.path().join("j.db");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = chassis_http::client().unwrap();
    let server = serve(&db, &agents, port);
    runtime.block_on(until_up(&http, &base));
    let token = make_token(&db, "watcher", "viewer");
    let names = || -> Vec<String> {
        runtime.block_on(async {
            let listed: Value = http
                .get(format!("{base}/v1/agents"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let items = listed.get("agents").unwrap_or(&listed);
            let mut names: Vec<String> = items
                .as_array()
                .unwrap_or_else(|| panic!("agents: {listed}"))
                .iter()
                .filter_map(|a| a["name"].as_str().map(str::to_string))
                .collect();
            names.sort();
            names
        })
    };
    assert_eq!(names(), ["first"]);
    plain_agent(&agents.join("second"), "second", &mock.base_url());
    assert_eq!(names(), ["first"], "nothing changes before the signal");
    hang_up(server.pid());
    let deadline = Instant::now() + Duration::from_secs(60);
    while names() != ["first", "second"] {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload: {:?}",
            names()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.terminate();

    write(
        &agents.join("second"),
        "agent.toml",
        "[agent]\nname = \"second\"\nprompt = \"prompt.md.j2\"\n\n[model]\nprimary = \"mock:m\"\ntemprature = 0.2\n",
    );
    let out = crate::util::run(chassis(&db).args([
        "serve",
        "--addr",
        &format!("127.0.0.1:{}", free_port()),
        "--agents",
        &agents.display().to_string(),
    ]));
    out.expect_code(2);
    assert!(
        out.stderr.contains("second")
            && out.stderr.contains("agent.toml")
            && out.stderr.contains("temprature"),
        "the error names the file and the key: {out:#?}"
    );
}

/// `--tls-cert/--tls-key` serve HTTPS (a client that trusts the certificate gets in, one that
/// speaks plain HTTP does not), and a non-loopback address without them is refused at start.
#[test]
fn serve_speaks_https_with_a_certificate_and_refuses_open_plain_http() {
    crate::util::become_subreaper();
    let mock = Mock::start(SCRIPT, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let agents = root.join("agents");
    plain_agent(&agents.join("first"), "first", &mock.base_url());
    let made = std::process::Command::new("openssl")
        .current_dir(root)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let db = root.join("j.db");

    let open = crate::util::run(chassis(&db).args([
        "serve",
        "--addr",
        "0.0.0.0:0",
        "--agents",
        &agents.display().to_string(),
    ]));
    open.expect_code(2);
    assert!(open.stderr.contains("--tls-cert"), "{open:#?}");

    let port = free_port();
    let server = Spawned::start(chassis(&db).args([
        "serve",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--agents",
        &agents.display().to_string(),
        "--tls-cert",
        &root.join("cert.pem").display().to_string(),
        "--tls-key",
        &root.join("key.pem").display().to_string(),
    ]));
    let curl = |scheme: &str| {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg("--cacert")
            .arg(root.join("cert.pem"))
            .arg(format!("{scheme}://127.0.0.1:{port}/healthz"))
            .output()
            .expect("curl runs")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = curl("https");
        if String::from_utf8_lossy(&out.stdout) == "200" {
            break;
        }
        assert!(Instant::now() < deadline, "HTTPS never answered: {out:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let version = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "--http2",
            "--max-time",
            "5",
        ])
        .arg("--cacert")
        .arg(root.join("cert.pem"))
        .arg(format!("https://127.0.0.1:{port}/healthz"))
        .output()
        .expect("curl runs");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        "2",
        "HTTP/2 is offered over TLS: {version:?}"
    );
    let plain = curl("http");
    assert_ne!(
        String::from_utf8_lossy(&plain.stdout),
        "200",
        "plain HTTP is not served on the TLS port: {plain:?}"
    );
    server.terminate();
}

/// SIGTERM mid-run with next to no grace: the server stops, exits 0, and gives the run back (no driver
/// holds it); a server started again on the journal drives it to the end at once, with the
/// irreversible call done once.
#[test]
fn sigterm_gives_runs_back_and_the_next_server_finishes_them() {
    crate::util::become_subreaper();
    let mock = Mock::start(SCRIPT, Duration::from_millis(400));
    let dir = tempfile::tempdir().unwrap();
    let (agents, ledger) = write_clerk(dir.path(), &mock.base_url());
    let db = dir.path().join("j.db");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = chassis_http::client().unwrap();

    // Next to no grace: what is in flight at SIGTERM is given back at once.
    let first = Spawned::start(chassis(&db).args([
        "serve",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--agents",
        &agents.display().to_string(),
        "--shutdown-grace",
        "1ms",
    ]));
    runtime.block_on(until_up(&http, &base));
    let token = make_token(&db, "ops", "operator");
    let run_id = runtime.block_on(start_clerk(&http, &base, &token, "entry-2"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while mock.stats().requests < 2 {
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = first.terminate();
    stopped.expect_code(0);

    let listed = crate::util::runs_json(&db, &[]);
    let run = listed
        .iter()
        .find(|r| r["run_id"] == run_id.as_str())
        .unwrap_or_else(|| panic!("{listed:#?}"));
    assert_ne!(run["status"], "completed", "stopped mid-run: {run:#}");
    assert!(run["driver"].is_null(), "the run was given back: {run:#}");

    let second = serve(&db, &agents, port);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let show = crate::util::show_json(&db, &run_id);
        if show["status"] == "completed" {
            let events = crate::util::events(&show);
            crate::util::assert_well_formed(events);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run never completed: {show:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    second.terminate();
    let lines = std::fs::read_to_string(&ledger).unwrap();
    assert_eq!(lines.lines().count(), 1, "recorded once: {lines}");
}
