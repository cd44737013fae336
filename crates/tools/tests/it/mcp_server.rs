//! A small MCP server built with rmcp's server side, for the MCP tool tests.
//!
//! The server is this test binary itself: [`command`] runs it with [`MODE`] set and a filter
//! that selects only [`serve`], which then speaks MCP on stdin and stdout. libtest's own
//! "running 1 test" line on stdout is not JSON, and MCP clients skip such lines. This needs no
//! other build target and works the same under `cargo test` and nextest, which run `serve` as
//! an ordinary (empty) test.

use std::collections::BTreeMap;

use chassis_core::spec::ToolEnv;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::json;

/// Set to `serve` to run the server, `slow` to run it after 3 seconds, or `fail` to exit at
/// once with a message on stderr.
pub(crate) const MODE: &str = "CHASSIS_MCP_TEST_SERVER";

/// The `[mcp.NAME]` command and env that start this server.
pub(crate) fn command(mode: &str) -> (Vec<String>, ToolEnv) {
    let exe = std::env::current_exe().unwrap();
    let command = vec![
        exe.to_str().unwrap().to_string(),
        "--exact".into(),
        "mcp_server::serve".into(),
        "--nocapture".into(),
    ];
    let env = ToolEnv {
        pass: Vec::new(),
        set: BTreeMap::from([(MODE.to_string(), mode.to_string())]),
    };
    (command, env)
}

/// The MCP service over streamable HTTP, for a test to mount behind routes of its own.
pub(crate) fn service() -> rmcp::transport::StreamableHttpService<
    TestServer,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    rmcp::transport::StreamableHttpService::new(
        || Ok(TestServer),
        Default::default(),
        Default::default(),
    )
}

/// Serves `app` on 127.0.0.1, in this process; gives its base URL (`http://127.0.0.1:PORT`).
pub(crate) async fn serve_app(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Serves MCP over streamable HTTP at `/mcp` on 127.0.0.1, in this process; gives the URL.
pub(crate) async fn http() -> String {
    let base = serve_app(axum::Router::new().nest_service("/mcp", service())).await;
    format!("{base}/mcp")
}

/// Runs the server when this process was started as one; passes at once otherwise.
#[test]
fn serve() {
    match std::env::var(MODE).as_deref() {
        Ok("serve") => {}
        // Starts slowly, every time: for deadlines that must cover a restart.
        Ok("slow") => std::thread::sleep(std::time::Duration::from_secs(3)),
        Ok("fail") => {
            eprintln!("test server: BILLING_TOKEN is not set");
            std::process::exit(2);
        }
        _ => return,
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        eprintln!("test server: started");
        let running = TestServer.serve(rmcp::transport::stdio()).await.unwrap();
        let _ = running.waiting().await;
    });
    // Exit before libtest prints its summary, and without waiting for the blocking stdin reader.
    std::process::exit(0);
}

fn hints(read_only: Option<bool>, destructive: Option<bool>) -> ToolAnnotations {
    let mut hints = ToolAnnotations::new();
    hints.read_only_hint = read_only;
    hints.destructive_hint = destructive;
    hints
}

/// The tools, with the annotations they claim.
fn tools() -> Vec<Tool> {
    let schema = |value: serde_json::Value| value.as_object().unwrap().clone();
    let object = || schema(json!({"type": "object"}));
    let tool = |name: &'static str, description: &'static str, annotations| {
        let mut tool = Tool::new(name, description, object());
        tool.annotations = annotations;
        tool
    };
    vec![
        Tool::new(
            "echo",
            "Echo the text back.",
            schema(json!({
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            })),
        )
        .annotate(hints(Some(true), None)),
        tool(
            "lookup",
            "Claims to be read-only.",
            Some(hints(Some(true), None)),
        ),
        tool(
            "update",
            "Claims to be reversible.",
            Some(hints(None, Some(false))),
        ),
        tool(
            "delete",
            "Claims to be destructive.",
            Some(hints(None, Some(true))),
        ),
        tool("plain", "Claims nothing.", None),
        tool("fail", "Reports an error.", None),
        tool("hang", "Never answers.", None),
        tool("crash", "Exits in the middle of the call.", None),
        tool("pid", "Its process id.", None),
        tool("meta", "The request's _meta.", None),
        tool("env", "Its environment, as a JSON object.", None),
        tool(
            "roots",
            "The roots the client offers, as a JSON array.",
            None,
        ),
        tool("task", "Answers with a task, unasked.", None),
        tool(
            "progress",
            "Reports progress five times, then answers.",
            None,
        ),
        tool(
            "whoami",
            "The Authorization header it was sent over HTTP.",
            None,
        ),
    ]
}

/// The server's handler; over HTTP it runs inside the test process, so never call `crash`.
#[derive(Clone)]
pub(crate) struct TestServer;

impl rmcp::ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let text = |t: String| Ok(CallToolResult::success(vec![ContentBlock::text(t)]).into());
        match request.name.as_ref() {
            "echo" => {
                let args = request.arguments.unwrap_or_default();
                text(args["text"].as_str().unwrap_or_default().to_string())
            }
            "fail" => Ok(CallToolResult::error(vec![ContentBlock::text("card declined")]).into()),
            "hang" => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            "crash" => {
                eprintln!("test server: crashing on purpose");
                std::process::exit(3)
            }
            "pid" => text(std::process::id().to_string()),
            "task" => {
                let task = rmcp::model::Task::new(
                    "task-1",
                    rmcp::model::TaskStatus::Working,
                    "2026-12-07T06:40:00Z",
                    "2026-12-07T06:40:00Z",
                );
                Ok(CallToolResponse::Task(rmcp::model::CreateTaskResult::new(
                    task,
                )))
            }
            "roots" => {
                #[expect(deprecated)]
                let roots = context.peer.list_roots().await;
                let listed = roots.map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                #[expect(deprecated)]
                let roots = listed.roots;
                text(serde_json::to_string(&roots).unwrap())
            }
            "progress" => {
                let token = context
                    .meta
                    .get_progress_token()
                    .or_else(|| request.meta.as_ref().and_then(|m| m.get_progress_token()));
                let token = token.expect("chassis sends a progress token");
                for step in 1..=5 {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    let note = ProgressNotificationParam::new(token.clone(), f64::from(step))
                        .with_total(5.0)
                        .with_message(format!("step {step}"));
                    context.peer.notify_progress(note).await.unwrap();
                }
                text("done in 5 steps".into())
            }
            "meta" => {
                // The service may move the request's `_meta` into the context.
                let meta = request.meta.unwrap_or(context.meta);
                text(serde_json::to_string(&meta).unwrap())
            }
            "whoami" => {
                let parts = context.extensions.get::<axum::http::request::Parts>();
                let header = parts
                    .and_then(|p| p.headers.get("authorization"))
                    .and_then(|v| v.to_str().ok());
                text(format!("you sent: {}", header.unwrap_or("nothing")))
            }
            "env" => {
                let env: BTreeMap<String, String> = std::env::vars().collect();
                text(serde_json::to_string(&env).unwrap())
            }
            name => text(format!("{name} done")),
        }
    }
}
