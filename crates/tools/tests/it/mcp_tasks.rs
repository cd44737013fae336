//! Task-augmented tools (MCP 2025-11-25 `execution.taskSupport`), which chassis cannot call.
//!
//! rmcp's server side cannot list a tool with `execution`, so the server here speaks JSON-RPC
//! by hand, as a server of that revision does: over stdio (this test binary started with
//! [`MODE`] set and filtered to [`serve`], as in `mcp_server.rs`) and over streamable HTTP,
//! answering in JSON or in SSE.

use std::io::{BufRead, Write};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chassis_core::spec::{McpServerSpec, McpTransport, ToolEnv};

use super::*;

const MODE: &str = "CHASSIS_MCP_TASKS_SERVER";

/// The answer to one JSON-RPC request; `None` for a notification.
fn answer(message: &Value) -> Option<Value> {
    let id = message.get("id")?.clone();
    let method = message["method"].as_str().unwrap_or_default();
    let tool = |name: &str, support: Option<&str>| {
        let mut tool =
            json!({"name": name, "description": name, "inputSchema": {"type": "object"}});
        if let Some(support) = support {
            tool["execution"] = json!({"taskSupport": support});
        }
        tool
    };
    let result = match method {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}, "tasks": {"requests": {"tools": {"call": {}}}}},
            "serverInfo": {"name": "tasks", "version": "1.0.0"},
        }),
        "tools/list" => json!({"tools": [
            tool("research", Some("required")),
            tool("summarize", Some("optional")),
            tool("lookup", Some("forbidden")),
            tool("echo", None),
        ]}),
        "tools/call" => {
            let name = message["params"]["name"].as_str().unwrap_or_default();
            if name == "research" {
                // What a server of that revision answers a plain call of such a tool.
                return Some(json!({"jsonrpc": "2.0", "id": id, "error": {
                    "code": -32601, "message": "tool `research` must be called as a task"}}));
            }
            json!({"content": [{"type": "text", "text": format!("{name} done")}]})
        }
        _ => json!({}),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// Serves over stdin and stdout when this process was started as the server.
#[test]
fn serve() {
    if std::env::var(MODE).as_deref() != Ok("serve") {
        return;
    }
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(answer) = answer(&message) {
            writeln!(out, "{answer}").unwrap();
            out.flush().unwrap();
        }
    }
    std::process::exit(0);
}

fn stdio() -> McpServerSpec {
    let exe = std::env::current_exe().unwrap();
    let command = vec![
        exe.to_str().unwrap().to_string(),
        "--exact".into(),
        "mcp_tasks::serve".into(),
        "--nocapture".into(),
    ];
    let env = ToolEnv {
        pass: Vec::new(),
        set: BTreeMap::from([(MODE.to_string(), "serve".to_string())]),
    };
    McpServerSpec {
        transport: McpTransport::Stdio { command, env },
        trusted: false,
        timeout: Duration::from_secs(20),
        idle_timeout: None,
    }
}

/// One POST of streamable HTTP, answered in SSE when `sse`, else in JSON; no session.
async fn post(sse: bool, body: String) -> Response {
    let Ok(message) = serde_json::from_str::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(answer) = answer(&message) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let mut headers = HeaderMap::new();
    let body = if sse {
        headers.insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        format!("event: message\ndata: {answer}\n\n")
    } else {
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        answer.to_string()
    };
    (headers, body).into_response()
}

async fn http(sse: bool) -> McpServerSpec {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |body: String| post(sse, body)),
    );
    let url = format!("{}/mcp", crate::mcp_server::serve_app(app).await);
    McpServerSpec {
        transport: McpTransport::Http {
            url,
            headers: Default::default(),
            oauth: None,
        },
        trusted: false,
        timeout: Duration::from_secs(20),
        idle_timeout: None,
    }
}

async fn load(
    server: McpServerSpec,
    only: Option<&[&str]>,
) -> Result<Toolbox, chassis_tools::Error> {
    let spec = ToolSpec::Mcp {
        server: "research".into(),
        only: only.map(|o| o.iter().map(|s| s.to_string()).collect()),
        risk: BTreeMap::new(),
    };
    let servers = BTreeMap::from([("research".to_string(), server)]);
    Toolbox::from_specs(&[spec], &servers, &std::env::temp_dir()).await
}

const REFUSED: &str = "MCP server `research` lists tool `research` as callable only as an MCP \
    task (`execution.taskSupport` is \"required\"), which chassis does not support; leave it \
    out of `only`";

/// The log lines written while `load` runs.
async fn logged<T>(load: impl Future<Output = T>) -> (T, String) {
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .finish();
    // The test's runtime runs on this thread only, so the whole load logs here.
    let _guard = tracing::subscriber::set_default(subscriber);
    let out = load.await;
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

/// A tool that must be called as a task is never offered: named in `only`, it is refused at
/// load; among all the tools, it is left out with a warning naming it. The others, "optional"
/// ones included, load and are called plainly.
async fn never_offered(server: McpServerSpec) {
    let e = load(server.clone(), Some(&["echo", "research"]))
        .await
        .unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.message.as_str()),
        ("tools[0].only", REFUSED)
    );
    let (toolbox, log) = logged(load(server, None)).await;
    let toolbox = toolbox.unwrap();
    assert_eq!(names(&toolbox), ["summarize", "lookup", "echo"]);
    assert_eq!(
        log.trim(),
        "WARN MCP server `research` lists tool `research` as callable only as an MCP task \
         (`execution.taskSupport` is \"required\"), which chassis does not support; it is left out"
    );
    for name in ["summarize", "lookup", "echo"] {
        assert_eq!(
            call(&toolbox, name, json!({})).await.unwrap(),
            format!("{name} done")
        );
    }
}

#[tokio::test]
async fn a_tool_that_requires_a_task_is_never_offered_over_stdio() {
    never_offered(stdio()).await;
}

#[tokio::test]
async fn a_tool_that_requires_a_task_is_never_offered_over_http_json() {
    never_offered(http(false).await).await;
}

#[tokio::test]
async fn a_tool_that_requires_a_task_is_never_offered_over_http_sse() {
    never_offered(http(true).await).await;
}
