//! MCP results as servers really send them, through the real binary and an in-process
//! streamable-HTTP server: an `isError` result is the tool's answer and goes to the model at
//! once, and a call's `timeout` covers all its attempts, so neither is retried although the
//! tools are read-only (which the engine otherwise retries).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};

use crate::util::{Mock, chassis, events, kinds, run, show_json, toml_str, write};

const SCRIPT: &str = r#"
[[scenario]]
when_input_contains = "lookup"
[[scenario.turn]]
tool_calls = [{ name = "lookup", arguments = {} }]
[[scenario.turn]]
text = "The server said: {last_tool_result}"

[[scenario]]
when_input_contains = "stall"
[[scenario.turn]]
tool_calls = [{ name = "stall", arguments = {} }]
[[scenario.turn]]
text = "The server said: {last_tool_result}"
"#;

/// Two read-only tools: `lookup` answers `isError`, `stall` never answers. Counts the calls.
#[derive(Clone)]
struct Flaky {
    calls: Arc<AtomicUsize>,
}

impl rmcp::ServerHandler for Flaky {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = serde_json::json!({"type": "object"});
        let schema = Arc::new(schema.as_object().cloned().unwrap_or_default());
        let mut hints = ToolAnnotations::new();
        hints.read_only_hint = Some(true);
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new("lookup", "Looks a key up.", schema.clone()).annotate(hints.clone()),
            Tool::new("stall", "Never answers.", schema).annotate(hints),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if request.name == "stall" {
            std::future::pending::<()>().await;
        }
        Ok(CallToolResult::error(vec![ContentBlock::text("no such key: 42")]).into())
    }
}

/// The server on a runtime of the test's own; gives its URL and its count of calls.
fn serve() -> (String, Arc<AtomicUsize>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime for the MCP server");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let url = runtime.block_on(async move {
        let service = rmcp::transport::StreamableHttpService::new(
            move || {
                Ok(Flaky {
                    calls: Arc::clone(&counted),
                })
            },
            rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default()
                .into(),
            Default::default(),
        );
        let app = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/mcp")
    });
    (url, calls, runtime)
}

/// Runs the scenario `input` of an agent using the server; gives the run's answer and the
/// kinds of its events.
fn run_once(url: &str, input: &str) -> (String, Vec<String>) {
    let mock = Mock::start(SCRIPT, Duration::ZERO);
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    write(root, "prompt.md.j2", "Look it up. {{ input }}\n");
    let agent = write(
        root,
        "agent.toml",
        &format!(
            r#"[agent]
name = "desk"
prompt = "prompt.md.j2"

[model]
primary = "mock:m"

[providers.mock]
kind = "openai"
base_url = {base_url}

[[tools]]
use = "mcp:billing"

[mcp.billing]
trusted = true
url = {url}
timeout = "1s"
"#,
            base_url = toml_str(&mock.base_url()),
            url = toml_str(url),
        ),
    );
    let db = root.join("j.db");
    let out = run(chassis(&db).arg("run").arg(&agent).args(["--input", input]));
    out.expect_code(0);
    let runs = crate::util::runs_json(&db, &[]);
    let run_id = runs[0]["run_id"].as_str().expect("a run id").to_string();
    let show = show_json(&db, &run_id);
    let kinds = kinds(events(&show)).into_iter().map(String::from).collect();
    (out.stdout.trim().to_string(), kinds)
}

#[test]
fn an_is_error_result_goes_to_the_model_once_and_is_never_retried() {
    let (url, calls, _runtime) = serve();
    let (answer, kinds) = run_once(&url, "lookup");
    assert_eq!(answer, "The server said: error: no such key: 42");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the server was called again"
    );
    assert!(
        !kinds.iter().any(|k| k == "tool_attempt_failed"),
        "{kinds:?}"
    );
}

#[test]
fn a_call_timeout_covers_all_its_attempts() {
    let (url, calls, _runtime) = serve();
    let (answer, kinds) = run_once(&url, "stall");
    assert!(
        answer.starts_with(
            "The server said: error: `stall` (MCP server `billing`) timed out after 1s"
        ),
        "{answer}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a timed-out call was sent again"
    );
    assert!(
        !kinds.iter().any(|k| k == "tool_attempt_failed"),
        "{kinds:?}"
    );
}
