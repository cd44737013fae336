//! MCP servers that need credentials, through the real binary: a streamable-HTTP server that
//! wants a bearer token from `${env:BILLING_TOKEN}`, and one that wants an OAuth token from a
//! client-credentials endpoint. Every secret (the bearer token, the client secret, the token
//! the endpoint issues, and wrong ones given by mistake) is planted and searched for in every
//! artifact: stdout and stderr (logs at trace level, as JSON), `show`, `trace`, `export`, and
//! the journal's files. The servers echo the credentials they receive back into the run, as a
//! careless server would.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleServer};
use tempfile::TempDir;

use crate::util::{Mock, Output, chassis, run, runs_json, toml_str, write};

/// The bearer token of the `billing` server, from `BILLING_TOKEN`.
const BEARER: &str = "mcp-bearer-7f3e9a2c1b0d4e5f";
/// A wrong one, given by mistake.
const WRONG_BEARER: &str = "mcp-wrong-bearer-0a9b8c7d6e5f";
/// The client secret of the `crm` server's OAuth client, from `CRM_SECRET`.
const CLIENT_SECRET: &str = "crm-client-secret-5d4c3b2a1f0e";
/// A wrong one.
const WRONG_SECRET: &str = "crm-wrong-secret-1a2b3c4d5e6f";
const CLIENT_ID: &str = "chassis-crm-client";
/// What the token endpoint issues.
const ISSUED: &str = "issued-access-token-9e8d7c6b5a4f";

const SCRIPT: &str = r#"
[[scenario]]
name = "who"
[[scenario.turn]]
tool_calls = [{ name = "whoami", arguments = {} }]
[[scenario.turn]]
text = "The server said: {last_tool_result}"
"#;

/// The MCP server's one tool: the `Authorization` header it was sent.
#[derive(Clone)]
struct Echo;

impl rmcp::ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = serde_json::json!({"type": "object"});
        let mut hints = ToolAnnotations::new();
        hints.read_only_hint = Some(true);
        let tool = Tool::new(
            "whoami",
            "The credentials it was sent.",
            Arc::new(schema.as_object().cloned().unwrap_or_default()),
        )
        .annotate(hints);
        Ok(ListToolsResult::with_all_items(vec![tool]))
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let sent = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nothing")
            .to_string();
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("you sent {sent}"))]).into())
    }
}

/// Both servers and the token endpoint, on a runtime of the test's own.
struct Servers {
    base: String,
    /// Every request to the token endpoint, as received.
    token_requests: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

/// Accepts exactly `Authorization: Bearer TOKEN` (the state), else 401.
async fn guard(State(token): State<&'static str>, request: Request, next: Next) -> Response {
    let ok = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {token}").as_str());
    if ok {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer")],
            "unauthorized",
        )
            .into_response()
    }
}

async fn token(
    State(seen): State<Arc<Mutex<Vec<String>>>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    seen.lock()
        .expect("token requests")
        .push(format!("{authorization} {body}"));
    let expected = format!("Basic {}", base64(&format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    if authorization == expected {
        axum::Json(serde_json::json!({
            "access_token": ISSUED, "token_type": "Bearer", "expires_in": 3600,
        }))
        .into_response()
    } else {
        // A careless server that quotes what it got.
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "error": "invalid_client",
                "error_description": format!("no client matches {authorization}"),
            })),
        )
            .into_response()
    }
}

impl Servers {
    fn start() -> Servers {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime for the MCP servers");
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&token_requests);
        let base = runtime.block_on(async move {
            let service = || {
                rmcp::transport::StreamableHttpService::new(
                    || Ok(Echo),
                    rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default().into(),
                    Default::default(),
                )
            };
            let billing = axum::Router::new()
                .nest_service("/billing", service())
                .layer(axum::middleware::from_fn_with_state(BEARER, guard));
            let crm = axum::Router::new()
                .nest_service("/crm", service())
                .layer(axum::middleware::from_fn_with_state(ISSUED, guard));
            let app = axum::Router::new()
                .route("/token", axum::routing::post(token))
                .with_state(seen)
                .merge(billing)
                .merge(crm);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1");
            let addr = listener.local_addr().expect("local address");
            tokio::spawn(async move { axum::serve(listener, app).await });
            format!("http://{addr}")
        });
        Servers {
            base,
            token_requests,
            _runtime: runtime,
        }
    }
}

/// An agent using one MCP server, `[mcp.NAME]` written by the test.
fn agent(dir: &Path, file: &str, mock: &Mock, server: &str, table: &str) -> std::path::PathBuf {
    write(
        dir,
        "prompt.md.j2",
        "Ask the server who you are. {{ input }}\n",
    );
    write(
        dir,
        file,
        &format!(
            r#"[agent]
name = "{server}-desk"
prompt = "prompt.md.j2"

[model]
primary = "mock:m"

[providers.mock]
kind = "openai"
base_url = {base_url}

[[tools]]
use = "mcp:{server}"

[mcp.{server}]
trusted = true
{table}
"#,
            base_url = toml_str(&mock.base_url()),
        ),
    )
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("read test directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else {
            let bytes = std::fs::read(&path).expect("read artifact");
            out.push((path.display().to_string(), bytes));
        }
    }
}

#[test]
fn mcp_credentials_appear_in_no_artifact() {
    let servers = Servers::start();
    let mock = Mock::start(SCRIPT, Duration::ZERO);
    let dir: TempDir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    let db = root.join("j.db");
    let billing = agent(
        root,
        "billing.toml",
        &mock,
        "billing",
        &format!(
            "url = {}\nheaders = {{ Authorization = \"Bearer ${{env:BILLING_TOKEN}}\" }}",
            toml_str(&format!("{}/billing", servers.base))
        ),
    );
    let crm = agent(
        root,
        "crm.toml",
        &mock,
        "crm",
        &format!(
            "url = {}\noauth = {{ client_id_env = \"CRM_ID\", client_secret_env = \"CRM_SECRET\", \
             token_url = {} }}",
            toml_str(&format!("{}/crm", servers.base)),
            toml_str(&format!("{}/token", servers.base)),
        ),
    );
    let chassis = || {
        let mut command = chassis(&db);
        command
            .env("BILLING_TOKEN", BEARER)
            .env("CRM_ID", CLIENT_ID)
            .env("CRM_SECRET", CLIENT_SECRET)
            .args(["--log", "trace", "--log-format", "json"]);
        command
    };
    let mut artifacts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut keep = |name: &str, out: Output| {
        artifacts.push((format!("{name} stdout"), out.stdout.into_bytes()));
        artifacts.push((format!("{name} stderr"), out.stderr.into_bytes()));
    };

    // The bearer token reaches the server, and what the server echoes is redacted.
    let out = run(chassis()
        .arg("run")
        .arg(&billing)
        .args(["--input", "billing"]));
    out.expect_code(0);
    assert_eq!(
        out.stdout.trim(),
        "The server said: you sent Bearer [REDACTED]"
    );
    keep("billing run", out);

    // The client secret gets a token; the token reaches the server and is scrubbed too.
    // Fewer than 8 bytes of client id are fine: it is no secret.
    let out = run(chassis().arg("run").arg(&crm).args(["--input", "crm"]));
    out.expect_code(0);
    assert_eq!(
        out.stdout.trim(),
        "The server said: you sent Bearer [REDACTED]"
    );
    keep("crm run", out);
    let token_requests = servers
        .token_requests
        .lock()
        .expect("token requests")
        .clone();
    assert_eq!(token_requests.len(), 1, "{token_requests:?}");

    // Wrong credentials: refused at load, exit 2, naming what to check.
    let out = run(chassis()
        .env("BILLING_TOKEN", WRONG_BEARER)
        .arg("run")
        .arg(&billing)
        .args(["--input", "wrong"]));
    out.expect_code(2);
    assert!(
        out.stderr.contains(
            "mcp.billing.url: MCP server `billing`: 401 Unauthorized — check the Authorization \
             header's variable BILLING_TOKEN"
        ),
        "{out:#?}"
    );
    keep("billing, wrong token", out);
    let out = run(chassis()
        .env("CRM_SECRET", WRONG_SECRET)
        .arg("run")
        .arg(&crm)
        .args(["--input", "wrong"]));
    out.expect_code(2);
    assert!(
        out.stderr.contains("refused the client credentials")
            && out.stderr.contains("check CRM_ID and CRM_SECRET"),
        "{out:#?}"
    );
    keep("crm, wrong secret", out);

    // A credential set too short to be redacted is refused, by its key.
    let out = run(chassis()
        .env("BILLING_TOKEN", "short")
        .arg("run")
        .arg(&billing)
        .args(["--input", "short"]));
    out.expect_code(2);
    assert!(
        out.stderr.contains(
            "mcp.billing.headers.Authorization: the value of BILLING_TOKEN is 5 bytes long"
        ),
        "{out:#?}"
    );

    // Every way of reading the runs back.
    let runs = runs_json(&db, &[]);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    for run_id in runs.iter().filter_map(|r| r["run_id"].as_str()) {
        let cassette = root.join(format!("{run_id}.json"));
        let cassette = cassette.display().to_string();
        for args in [
            vec!["show", run_id, "--json"],
            vec!["show", run_id],
            vec!["trace", run_id, "--json"],
            vec!["export", run_id, "--cassette", &cassette],
        ] {
            let out = run(chassis().args(&args));
            out.expect_code(0);
            keep(&format!("{args:?}"), out);
        }
    }
    files(root, &mut artifacts);
    assert!(artifacts.iter().any(|(name, _)| name.ends_with("j.db")));

    let basic = base64(&format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let wrong_basic = base64(&format!("{CLIENT_ID}:{WRONG_SECRET}"));
    let mut hits = Vec::new();
    for (name, bytes) in &artifacts {
        for secret in [
            BEARER,
            WRONG_BEARER,
            CLIENT_SECRET,
            WRONG_SECRET,
            ISSUED,
            &basic,
            &wrong_basic,
        ] {
            if contains(bytes, secret) {
                let text = String::from_utf8_lossy(bytes);
                let line = text
                    .lines()
                    .find(|l| l.contains(secret))
                    .unwrap_or_default();
                let line: String = line.chars().take(400).collect();
                hits.push(format!("{secret} in {name}: {line}"));
            }
        }
    }
    assert!(hits.is_empty(), "secrets leaked: {hits:#?}");
}
