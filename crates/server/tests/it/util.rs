//! A server for a test: agents, mock model, journal, tokens of every role.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chassis_engine::{Engine, WorkerConfig};
use chassis_mock::{MockConfig, MockHandle, Script};
use chassis_server::{Config, Server};
use chassis_store::{Journal, SqliteJournal, Sync};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The approval flow: the model says why, asks to pay, then answers with what the tool (or
/// the rejection) said. Inputs with `slow` make the model take its time.
pub(crate) const SCRIPT: &str = r#"
[[scenario]]
name = "talk"
when_input_contains = "talk"
[[scenario.turn]]
text = "Hello there, {input}! This answer streams in pieces."

[[scenario]]
name = "chat"
when_input_contains = "chat"
[[scenario.turn]]
text = "hi, {input}"
[[scenario.turn]]
text = "turn {turn}: you said {last_user}"

[[scenario]]
name = "pay"
[[scenario.turn]]
text = "The invoice is due, so I will pay it."
tool_calls = [{ name = "pay", arguments = { amount = 150, to = "acme" } }]
[[scenario.turn]]
text = "result: {last_tool_result}"
"#;

const PAY: &str = r#"
import json, os, sys
args = json.load(sys.stdin)
with open(sys.argv[1], "a") as ledger:
    ledger.write("%s %s %s\n" % (args["to"], args["amount"], os.environ["CHASSIS_IDEMPOTENCY_KEY"]))
print("paid %s to %s" % (args["amount"], args["to"]))
"#;

/// Tokens of each role, by role name.
pub(crate) struct Tokens {
    pub viewer: String,
    pub operator: String,
    pub approver: String,
    pub admin: String,
}

/// A running server and what it needs.
pub(crate) struct TestServer {
    pub base: String,
    pub tokens: Tokens,
    pub journal: Arc<dyn Journal>,
    pub http: reqwest::Client,
    _mock: MockHandle,
    pub root: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with one agent (`payer`), `workers` runs at once, the mock answering after
    /// `latency`.
    pub(crate) async fn start(workers: usize, latency: Duration) -> TestServer {
        TestServer::start_with_cors(workers, latency, None).await
    }

    /// [`TestServer::start`], answering cross-origin requests from `cors`.
    pub(crate) async fn start_with_cors(
        workers: usize,
        latency: Duration,
        cors: Option<String>,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let mock = chassis_mock::start(
            MockConfig {
                latency,
                ..MockConfig::default()
            },
            Script::from_toml_str(SCRIPT).unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .unwrap();
        write_agent(
            &root.join("agents/payer"),
            &mock.base_url(),
            &root.join("ledger.txt"),
        );
        let journal: Arc<dyn Journal> =
            Arc::new(SqliteJournal::open(&root.join("j.db"), Sync::Normal).unwrap());
        let mut worker = WorkerConfig::new("test-server");
        worker.poll_interval = Duration::from_millis(50);
        let config = Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            agents: Some(root.join("agents")),
            workers,
            worker,
            tls: None,
            cors,
        };
        let server = Server::new(Engine::new(Arc::clone(&journal)), config)
            .await
            .unwrap();
        let admin = server.first_token().await.unwrap().expect("a first token");
        let make = |role: &str| {
            let journal = Arc::clone(&journal);
            let role = role.to_string();
            async move {
                chassis_server::auth::create(journal.as_ref(), &format!("{role}-1"), &role)
                    .await
                    .unwrap()
            }
        };
        let tokens = Tokens {
            viewer: make("viewer").await,
            operator: make("operator").await,
            approver: make("approver").await,
            admin,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let served = tokio::spawn(async move {
            server
                .serve(
                    async move {
                        let _ = stopped.await;
                    },
                    move |addr| {
                        let _ = addr_tx.send(addr);
                    },
                )
                .await
                .unwrap();
        });
        let addr = addr_rx.await.unwrap();
        TestServer {
            base: format!("http://{addr}"),
            tokens,
            journal,
            http: chassis_http::client().unwrap(),
            _mock: mock,
            root,
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        }
    }

    /// A request with `token` (none: no Authorization header).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// GET with the admin token, expecting 200.
    pub(crate) async fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .call(Method::GET, path, Some(&self.tokens.admin), None)
            .await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Starts a run of `payer` on `input` with the operator token; returns its id.
    pub(crate) async fn start_run(&self, input: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/runs",
                Some(&self.tokens.operator),
                Some(json!({ "agent": "payer", "input": input })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["run_id"].as_str().unwrap().to_string()
    }

    /// Waits until the run's status is one of `statuses`; returns the run.
    pub(crate) async fn until_status(&self, run_id: &str, statuses: &[&str]) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.get(&format!("/v1/runs/{run_id}")).await;
            if statuses.iter().any(|s| run["status"] == *s) {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run_id} never reached {statuses:?}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The payments made, one line each.
    pub(crate) fn ledger(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("ledger.txt"))
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

impl TestServer {
    /// Stops the server as SIGTERM does, and waits until `serve` has returned.
    pub(crate) async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.expect("serve returns without panicking");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

use chassis_testkit::fixture::python;

/// The `payer` agent: an irreversible `pay` tool that waits for approval, approvals time out
/// after an hour.
pub(crate) fn write_agent(dir: &Path, base_url: &str, ledger: &Path) {
    std::fs::create_dir_all(dir.join("tools")).unwrap();
    std::fs::write(dir.join("prompt.j2"), "Pay what is due.").unwrap();
    std::fs::write(dir.join("tools/pay.py"), PAY).unwrap();
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            r#"
[agent]
name = "payer"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "{base_url}"
[[tools]]
name = "pay"
description = "Pay an invoice"
command = ["{python}", "tools/pay.py", "{ledger}"]
args_schema = {{ type = "object", properties = {{ amount = {{ type = "number", minimum = 0 }}, to = {{ type = "string" }} }}, required = ["amount", "to"], additionalProperties = false }}
risk = "irreversible"
[approvals]
timeout = "1h"
[limits]
max_steps = 5
"#,
            python = python(),
            ledger = ledger.display(),
        ),
    )
    .unwrap();
}
