//! The official MCP reference server, `@modelcontextprotocol/server-everything` from npm, over
//! stdio: what a server nobody here wrote sends for an error, for progress, and for a tool
//! that needs MCP tasks.
//!
//! `.ci/mcp-servers.sh` installs it under `target/mcp-servers`; without it the test says so
//! loudly and passes, except under `CI=true`, where `.ci/run` has installed it and its absence
//! is a failure.

use std::path::PathBuf;

use chassis_core::spec::{McpServerSpec, McpTransport, ToolEnv};

use super::*;

/// The server's program, or `None` (after saying so) when it is not installed.
fn everything() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/mcp-servers/node_modules/.bin/mcp-server-everything");
    if bin.exists() {
        return Some(bin);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{} is missing: .ci/run installs it with .ci/mcp-servers.sh",
        bin.display()
    );
    eprintln!(
        "\n*** SKIPPED: @modelcontextprotocol/server-everything is not installed; run \
         .ci/mcp-servers.sh to test against it ***\n"
    );
    None
}

#[tokio::test]
async fn the_reference_server_over_stdio() {
    let Some(bin) = everything() else { return };
    let mut spec = McpServerSpec {
        transport: McpTransport::Stdio {
            command: vec![bin.display().to_string(), "stdio".into()],
            env: ToolEnv::default(),
        },
        trusted: true,
        timeout: Duration::from_secs(30),
        idle_timeout: None,
    };
    // A silent second ends a call; the long operation below lasts longer, reporting progress.
    spec.idle_timeout = Some(Duration::from_secs(1));
    let entry = ToolSpec::Mcp {
        server: "everything".into(),
        only: None,
        risk: Default::default(),
    };
    let servers = BTreeMap::from([("everything".to_string(), spec)]);
    let toolbox = Toolbox::from_specs(&[entry], &servers, &std::env::temp_dir())
        .await
        .unwrap();
    assert_eq!(toolbox.get("echo").unwrap().def().risk, RiskClass::ReadOnly);
    assert_eq!(
        call(&toolbox, "echo", json!({"message": "hello"}))
            .await
            .unwrap(),
        "Echo: hello"
    );

    // Arguments the server's own validation refuses (sent past chassis's check on purpose):
    // its isError result is the answer, never retried.
    let sum = toolbox.get("get-sum").unwrap();
    let e = sum.call(json!({"a": "x"}), &ctx()).await.unwrap_err();
    assert!(e.message().contains("Input validation error"), "{e}");
    assert!(!e.may_retry() && !e.is_indeterminate(), "{e:?}");
    assert_eq!(
        refusal(&toolbox, "get-sum", r#"{"a": "x", "b": 2}"#),
        r#"arguments for `get-sum` do not match its schema: /a: "x" is not of type "number""#
    );

    // Two seconds in four steps: alive only through its progress notifications.
    let done = call(
        &toolbox,
        "trigger-long-running-operation",
        json!({"duration": 2, "steps": 4}),
    )
    .await
    .unwrap();
    assert!(done.contains("completed"), "{done}");

    // A tool that needs MCP tasks answers that it does, once.
    let e = call(&toolbox, "simulate-research-query", json!({"topic": "x"}))
        .await
        .unwrap_err();
    assert!(e.message().contains("requires task augmentation"), "{e}");
    assert!(!e.may_retry(), "{e:?}");
}
