//! Streamable-HTTP MCP servers when they go away: a session the server no longer knows, and a
//! server that is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chassis_core::spec::{McpServerSpec, McpTransport};

use super::*;
use crate::mcp_server;

fn http(url: String, timeout: Duration) -> McpServerSpec {
    McpServerSpec {
        transport: McpTransport::Http {
            url,
            headers: Default::default(),
            oauth: None,
        },
        trusted: true,
        timeout,
        idle_timeout: None,
    }
}

async fn load(url: String, timeout: Duration) -> Toolbox {
    let entry = ToolSpec::Mcp {
        server: "billing".into(),
        only: None,
        risk: Default::default(),
    };
    let servers = BTreeMap::from([("billing".to_string(), http(url, timeout))]);
    Toolbox::from_specs(&[entry], &servers, &std::env::temp_dir())
        .await
        .unwrap()
}

/// What the server in front of the MCP service does to the next request that carries a
/// session: answers it with this status (0: nothing), as a server that restarted and lost
/// its sessions does.
#[derive(Clone, Default)]
struct Forget {
    status: Arc<AtomicU16>,
    /// `initialize` requests seen.
    initializes: Arc<AtomicUsize>,
}

async fn forget(State(forget): State<Forget>, request: Request, next: Next) -> Response {
    let has_session = request.headers().contains_key("mcp-session-id");
    if has_session && request.method() == axum::http::Method::POST {
        let status = forget.status.swap(0, Ordering::SeqCst);
        if status != 0 {
            let status = axum::http::StatusCode::from_u16(status).unwrap();
            return (status, "session not found").into_response();
        }
    }
    if !has_session && request.method() == axum::http::Method::POST {
        forget.initializes.fetch_add(1, Ordering::SeqCst);
    }
    next.run(request).await
}

#[tokio::test]
async fn an_unknown_session_is_initialized_again_and_the_call_goes_through() {
    for status in [404, 400] {
        let forget_next = Forget::default();
        let app = axum::Router::new()
            .nest_service("/mcp", mcp_server::service())
            .layer(axum::middleware::from_fn_with_state(
                forget_next.clone(),
                forget,
            ));
        let url = format!("{}/mcp", mcp_server::serve_app(app).await);
        let toolbox = load(url, Duration::from_secs(20)).await;
        assert_eq!(forget_next.initializes.load(Ordering::SeqCst), 1);
        // An irreversible tool, too: a request refused for its session was never carried out.
        forget_next.status.store(status, Ordering::SeqCst);
        assert_eq!(
            call(&toolbox, "delete", json!({})).await.unwrap(),
            "delete done",
            "after {status}"
        );
        assert_eq!(
            forget_next.initializes.load(Ordering::SeqCst),
            2,
            "after {status}"
        );
        assert_eq!(
            call(&toolbox, "echo", json!({"text": "same session"}))
                .await
                .unwrap(),
            "same session"
        );
        assert_eq!(forget_next.initializes.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn a_server_gone_between_calls_is_noticed_by_its_transport_error() {
    // The server runs on a runtime of its own, so that shutting it down closes every socket.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = server.spawn(mcp_server::http()).await.unwrap();
    // A timeout no test waits for: the failure must come from the transport.
    let toolbox = load(url.clone(), Duration::from_secs(600)).await;
    assert_eq!(
        call(&toolbox, "echo", json!({"text": "up"})).await.unwrap(),
        "up"
    );
    server.shutdown_background();
    // Shutting down goes on in the background: wait until the port refuses connections.
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let mut tries = 0;
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        tries += 1;
        assert!(tries < 1000, "the server's port still accepts connections");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = call(&toolbox, "echo", json!({"text": "down"}))
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("MCP server `billing`"),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("timed out"), "{}", e.message());
    assert!(
        e.message()
            .starts_with("MCP server `billing` could not be reached for the call to `echo` ("),
        "{}",
        e.message()
    );
    // Nothing was sent, so nothing was done, whatever the tool.
    assert!(!e.is_indeterminate(), "{e:?}");
    // The next attempt finds it gone at once too.
    let e = call(&toolbox, "echo", json!({"text": "still down"}))
        .await
        .unwrap_err();
    assert!(
        e.message()
            .starts_with("MCP server `billing` could not be restarted"),
        "{}",
        e.message()
    );
}
