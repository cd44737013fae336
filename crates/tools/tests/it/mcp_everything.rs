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

/// The reference server's program, or `None` (after saying so) when it is not installed.
fn everything() -> Option<PathBuf> {
    installed("mcp-server-everything")
}

/// An npm server's program under `target/mcp-servers`, or `None` (after saying so).
fn installed(program: &str) -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/mcp-servers/node_modules/.bin")
        .join(program);
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
        "\n*** SKIPPED: {program} is not installed; run .ci/mcp-servers.sh to test against \
         it ***\n"
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

    // Two seconds in four steps: alive only through its progress notifications, each of
    // which reaches the call's progress sink (the engine's observers: progress lines, spans).
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = heard.clone();
    let context = CallContext {
        progress: chassis_tools::ProgressSink::new(move |p| sink.lock().unwrap().push(p)),
        ..ctx()
    };
    let (args, tool) = toolbox
        .prepare(
            "trigger-long-running-operation",
            &json!({"duration": 2, "steps": 4}).to_string(),
        )
        .unwrap();
    let done = tool.call(args, &context).await.unwrap();
    assert!(done.contains("completed"), "{done}");
    let heard = heard.lock().unwrap().clone();
    let steps: Vec<(f64, Option<f64>)> = heard.iter().map(|p| (p.progress, p.total)).collect();
    // The server reports each step after it, the last one just before its result: that one
    // may arrive after the call is answered, when nobody listens for it any more.
    let all = [
        (1.0, Some(4.0)),
        (2.0, Some(4.0)),
        (3.0, Some(4.0)),
        (4.0, Some(4.0)),
    ];
    assert!(steps.len() >= 3, "{heard:?}");
    assert_eq!(steps, all[..steps.len()], "{heard:?}");
    assert!(
        heard
            .iter()
            .all(|p| p.tool == "trigger-long-running-operation")
    );

    // The tool it lists with `execution.taskSupport` "required" (callable only as an MCP
    // task) is left out at load, the others kept.
    assert!(toolbox.get("simulate-research-query").is_none());
    assert!(toolbox.get("get-sum").is_some());
}

/// The reference server over streamable HTTP on `port`, started as a process of its own.
async fn start_http(bin: &Path, port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new(bin)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut tries = 0;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        tries += 1;
        assert!(tries < 1000, "the server did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child
}

#[tokio::test]
async fn the_reference_server_over_http_restarted_and_killed_between_calls() {
    let Some(bin) = everything() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = start_http(&bin, port).await;
    let spec = McpServerSpec {
        transport: McpTransport::Http {
            url: format!("http://127.0.0.1:{port}/mcp"),
            headers: Default::default(),
            oauth: None,
        },
        trusted: true,
        // No test waits this long: failures must come from the transport.
        timeout: Duration::from_secs(15),
        idle_timeout: None,
    };
    let entry = ToolSpec::Mcp {
        server: "everything".into(),
        only: Some(vec!["echo".into()]),
        risk: Default::default(),
    };
    let servers = BTreeMap::from([("everything".to_string(), spec)]);
    let toolbox = Toolbox::from_specs(&[entry], &servers, &std::env::temp_dir())
        .await
        .unwrap();
    let echo = |text: &'static str| call(&toolbox, "echo", json!({ "message": text }));
    assert_eq!(echo("one").await.unwrap(), "Echo: one");

    // Restarted between calls, it no longer knows the session (it answers 400): a new one
    // is initialized and the call goes through.
    server.kill().await.unwrap();
    let mut server = start_http(&bin, port).await;
    assert_eq!(echo("two").await.unwrap(), "Echo: two");

    // Killed: the refused connection says so at once, and nothing was sent.
    server.kill().await.unwrap();
    let e = echo("three").await.unwrap_err();
    assert!(
        e.message()
            .starts_with("MCP server `everything` could not be reached for the call to `echo`"),
        "{e}"
    );
    assert!(!e.is_indeterminate(), "{e:?}");

    // Back: the next call connects again.
    let _server = start_http(&bin, port).await;
    assert_eq!(echo("four").await.unwrap(), "Echo: four");
}

#[tokio::test]
async fn the_filesystem_server_works_within_the_roots_it_is_offered() {
    // Started without directories, it works only within the roots its client offers.
    let Some(bin) = installed("mcp-server-filesystem") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/note.txt"), "from the root").unwrap();
    let spec = McpServerSpec {
        transport: McpTransport::Stdio {
            command: vec![bin.display().to_string()],
            env: ToolEnv::default(),
        },
        trusted: true,
        timeout: Duration::from_secs(30),
        idle_timeout: None,
    };
    let fs = ToolSpec::Fs {
        root: "data".into(),
        only: Some(vec!["read_file".into()]),
        timeout: Duration::from_secs(20),
    };
    let entry = ToolSpec::Mcp {
        server: "files".into(),
        only: Some(vec![
            "list_allowed_directories".into(),
            "read_text_file".into(),
        ]),
        risk: Default::default(),
    };
    let servers = BTreeMap::from([("files".to_string(), spec)]);
    let toolbox = Toolbox::from_specs(&[fs, entry], &servers, dir.path())
        .await
        .unwrap();
    let root = std::fs::canonicalize(dir.path().join("data")).unwrap();
    // It asks for the roots once initialized, in the background: wait until it has them.
    let mut tries = 0;
    loop {
        let allowed = call(&toolbox, "list_allowed_directories", json!({}))
            .await
            .unwrap();
        if allowed.contains(&root.display().to_string()) {
            break;
        }
        tries += 1;
        assert!(tries < 200, "the roots never arrived: {allowed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let note = root.join("note.txt").display().to_string();
    assert_eq!(
        call(&toolbox, "read_text_file", json!({ "path": note }))
            .await
            .unwrap(),
        "from the root"
    );
}

/// A Python server from PyPI, `mcp-server-time` (the official SDK's other half), over stdio:
/// its tools, a call in a zone it knows, and its error answer for one it does not.
/// `.ci/python-tools.sh` installs it under `target/py-tools`.
#[tokio::test]
async fn the_time_server_from_pypi_over_stdio() {
    let bin =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/py-tools/bin/mcp-server-time");
    if !bin.exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{} is missing: .ci/run installs it with .ci/python-tools.sh",
            bin.display()
        );
        eprintln!("\n*** SKIPPED: mcp-server-time is not installed; run .ci/python-tools.sh ***\n");
        return;
    }
    let spec = McpServerSpec {
        transport: McpTransport::Stdio {
            command: vec![
                bin.display().to_string(),
                "--local-timezone".into(),
                "UTC".into(),
            ],
            env: ToolEnv::default(),
        },
        trusted: false,
        timeout: Duration::from_secs(30),
        idle_timeout: None,
    };
    let entry = ToolSpec::Mcp {
        server: "time".into(),
        only: None,
        risk: Default::default(),
    };
    let servers = BTreeMap::from([("time".to_string(), spec)]);
    let toolbox = Toolbox::from_specs(&[entry], &servers, &std::env::temp_dir())
        .await
        .unwrap();
    let mut tools = names(&toolbox);
    tools.sort();
    assert_eq!(tools, ["convert_time", "get_current_time"]);

    let now = call(
        &toolbox,
        "get_current_time",
        json!({"timezone": "Europe/Berlin"}),
    )
    .await
    .unwrap();
    let now: Value = serde_json::from_str(&now).unwrap_or_else(|e| panic!("{e}: {now}"));
    assert_eq!(now["timezone"], "Europe/Berlin", "{now}");
    let converted = call(
        &toolbox,
        "convert_time",
        json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}),
    )
    .await
    .unwrap();
    assert!(converted.contains("21:00"), "{converted}");

    // A zone it does not know: the server's error is the tool's answer, named, not retried.
    let e = call(
        &toolbox,
        "get_current_time",
        json!({"timezone": "Mars/Olympus"}),
    )
    .await
    .unwrap_err();
    assert!(e.message().contains("Mars/Olympus"), "{e}");
    assert!(!e.may_retry() && !e.is_indeterminate(), "{e:?}");
}
