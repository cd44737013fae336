//! The webhook outbox across a kill -9: a worker completes a run (its notification queued in
//! the same write), cannot deliver it (the receiver is down), is SIGKILLed; a second worker
//! delivers it, exactly once acknowledged, signed, with one delivery id. On SQLite and on
//! PostgreSQL.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Mock, Spawned, chassis, run, toml_str, write};

const SCRIPT: &str = r#"
[[scenario]]
name = "answer"
[[scenario.turn]]
text = "Done: {input}"
"#;

const SECRET: &str = "whsec-this-is-a-test-secret-0123";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Request {
    delivery: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    /// Whether it was answered 200 (acknowledged) rather than 503.
    acknowledged: bool,
}

/// A webhook receiver on 127.0.0.1: answers 503 while down, 200 once up; keeps every request.
struct Receiver {
    port: u16,
    up: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let up = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (is_up, seen) = (up.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                    }
                }
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let length: usize = header("content-length").parse().unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let acknowledged = is_up.load(Ordering::SeqCst);
                seen.lock().expect("receiver lock").push(Request {
                    delivery: header("chassis-delivery"),
                    timestamp: header("chassis-timestamp"),
                    signature: header("chassis-signature"),
                    body,
                    acknowledged,
                });
                let status = if acknowledged {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, up, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("receiver lock").clone()
    }
}

/// An agent that answers at once, with a webhook for its completion.
struct Notifier {
    _dir: tempfile::TempDir,
    spec: PathBuf,
    _mock: Mock,
}

impl Notifier {
    fn new(hook: &str) -> Notifier {
        let mock = Mock::start(SCRIPT, Duration::ZERO);
        let dir = tempfile::tempdir().expect("temporary directory");
        write(dir.path(), "prompt.md.j2", "Answer: {{ input }}\n");
        let spec = write(
            dir.path(),
            "agent.toml",
            &format!(
                r#"[agent]
name = "notifier"
prompt = "prompt.md.j2"

[model]
primary = "mock:gpt-4o-mini"

[providers.mock]
kind = "openai"
base_url = {base_url}

[alerts]
webhook = {hook}
secret_env = "HOOK_SECRET"
events = ["run_completed", "run_failed"]
"#,
                base_url = toml_str(&mock.base_url()),
                hook = toml_str(hook),
            ),
        );
        Notifier {
            _dir: dir,
            spec,
            _mock: mock,
        }
    }
}

fn with_secret(db: &Path) -> std::process::Command {
    let mut command = chassis(db);
    command.env("HOOK_SECRET", SECRET);
    command
}

/// Polls `check` until it holds (a bounded wait for another process; nothing is asserted
/// about how long it takes).
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn outbox(db: &Path, status: &str) -> Vec<Value> {
    let out = run(with_secret(db).args(["outbox", "--status", status, "--json"]));
    out.expect_code(0);
    out.json().as_array().cloned().unwrap_or_default()
}

fn run_status(db: &Path, run_id: &str) -> String {
    let out = run(chassis(db).args(["runs", "--json"]));
    out.expect_code(0);
    out.json()
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["run_id"] == run_id)
        .and_then(|r| r["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The proof, on the journal `db` (an SQLite path or a PostgreSQL URL).
fn a_delivery_survives_a_kill_and_arrives_once_signed(db: &Path) {
    let receiver = Receiver::start();
    let agent = Notifier::new(&receiver.url());
    let out = run(with_secret(db)
        .arg("submit")
        .arg(&agent.spec)
        .args(["--input", "ship it"]));
    out.expect_code(0);
    let run_id = out.stdout.trim().to_string();
    assert!(run_id.starts_with("run_"), "{out:#?}");

    // The first worker completes the run and tries to deliver; the receiver is down.
    let first = Spawned::start(with_secret(db).args(["worker", "--name", "first"]));
    wait_until("the run completed and a delivery was attempted", || {
        !receiver.requests().is_empty() && run_status(db, &run_id) == "completed"
    });
    first.crash(None);

    // The notification outlived its process: pending, with the failed attempt booked (or
    // still claimed by the dead worker, whose claim lapses).
    let pending = outbox(db, "pending");
    assert_eq!(pending.len(), 1, "{pending:#?}");
    let delivery_id = format!("{run_id}.{}", pending[0]["seq"]);
    assert_eq!(pending[0]["delivery_id"], delivery_id.as_str());
    assert_eq!(pending[0]["kind"], "run_completed");
    assert!(
        receiver.requests().iter().all(|r| !r.acknowledged),
        "nothing was acknowledged while the receiver was down"
    );

    receiver.up.store(true, Ordering::SeqCst);
    let second = Spawned::start(with_secret(db).args(["worker", "--name", "second"]));
    wait_until("the delivery was acknowledged and booked", || {
        receiver.requests().iter().any(|r| r.acknowledged) && outbox(db, "delivered").len() == 1
    });
    let stopped = second.terminate();
    stopped.expect_code(0);

    let requests = receiver.requests();
    let acknowledged: Vec<&Request> = requests.iter().filter(|r| r.acknowledged).collect();
    assert_eq!(
        acknowledged.len(),
        1,
        "one acknowledged delivery: {requests:#?}"
    );
    for request in &requests {
        // Every attempt, the refused ones too, is the same delivery, signed.
        assert_eq!(request.delivery, delivery_id, "{request:?}");
        let timestamp: u64 = request.timestamp.parse().expect("a timestamp in seconds");
        assert!(
            chassis_engine::verify(
                SECRET.as_bytes(),
                timestamp,
                &request.body,
                &request.signature
            ),
            "a valid signature: {request:?}"
        );
        assert!(!chassis_engine::verify(
            b"not the secret at all",
            timestamp,
            &request.body,
            &request.signature
        ));
    }
    let body: Value = serde_json::from_slice(&acknowledged[0].body).expect("a JSON body");
    assert_eq!(body["alert"], "run_completed");
    assert_eq!(body["run_id"], run_id.as_str());
    assert_eq!(body["delivery_id"], delivery_id.as_str());
    assert_eq!(body["details"]["output"], "Done: ship it");
    assert!(
        !String::from_utf8_lossy(&acknowledged[0].body).contains(SECRET),
        "the secret is never in the body"
    );
    let delivered = outbox(db, "delivered");
    assert!(delivered[0]["attempts"].as_u64().is_some_and(|n| n >= 2));
    assert!(outbox(db, "pending").is_empty());
    let table = run(with_secret(db).arg("outbox"));
    table.expect_code(0);
    assert!(
        table.stdout.contains(&delivery_id) && table.stdout.contains("delivered"),
        "{table:#?}"
    );
}

#[test]
fn on_sqlite_a_webhook_survives_kill_9_and_is_delivered_once_signed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    a_delivery_survives_a_kill_and_arrives_once_signed(&dir.path().join("j.db"));
}

#[test]
fn on_postgres_a_webhook_survives_kill_9_and_is_delivered_once_signed() {
    let rt = crate::workers::runtime();
    let Some(schema) = crate::workers::new_schema(&rt) else {
        return;
    };
    a_delivery_survives_a_kill_and_arrives_once_signed(Path::new(schema.url()));
}

/// An agent with a webhook does not load without its signing secret, and says which variable.
#[test]
fn a_webhook_without_its_secret_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let agent = Notifier::new("http://127.0.0.1:9/hook");
    let out = run(chassis(&dir.path().join("j.db"))
        .arg("run")
        .arg(&agent.spec)
        .args(["--input", "x"]));
    out.expect_code(2);
    assert!(
        out.stderr.contains("alerts.secret_env") && out.stderr.contains("HOOK_SECRET"),
        "{out:#?}"
    );
    let short = run(chassis(&dir.path().join("j.db"))
        .env("HOOK_SECRET", "short")
        .arg("run")
        .arg(&agent.spec)
        .args(["--input", "x"]));
    short.expect_code(2);
    assert!(
        short.stderr.contains("alerts.secret_env") && short.stderr.contains("at least"),
        "{short:#?}"
    );
    assert!(!short.stderr.contains("short\n"), "{short:#?}");
}
