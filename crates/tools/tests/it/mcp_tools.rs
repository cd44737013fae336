use chassis_core::spec::{McpServerSpec, McpTransport};

use super::*;
use crate::mcp_server;

fn server(mode: &str, trusted: bool, timeout: Duration) -> McpServerSpec {
    let (command, env) = mcp_server::command(mode);
    McpServerSpec {
        transport: McpTransport::Stdio { command, env },
        trusted,
        timeout,
        idle_timeout: None,
    }
}

fn entry(only: Option<&[&str]>, risk: &[(&str, RiskClass)]) -> ToolSpec {
    ToolSpec::Mcp {
        server: "billing".into(),
        only: only.map(|o| o.iter().map(|s| s.to_string()).collect()),
        risk: risk.iter().map(|(n, r)| (n.to_string(), *r)).collect(),
    }
}

async fn load(specs: &[ToolSpec], billing: McpServerSpec) -> Result<Toolbox, chassis_tools::Error> {
    let dir = std::env::temp_dir();
    let servers = BTreeMap::from([("billing".to_string(), billing)]);
    Toolbox::from_specs(specs, &servers, &dir).await
}

async fn toolbox(trusted: bool, only: Option<&[&str]>) -> Toolbox {
    let billing = server("serve", trusted, Duration::from_secs(20));
    load(&[entry(only, &[])], billing).await.unwrap()
}

fn risks(toolbox: &Toolbox) -> Vec<(String, RiskClass)> {
    toolbox
        .defs()
        .into_iter()
        .map(|d| (d.name, d.risk))
        .collect()
}

#[tokio::test]
async fn tools_are_listed_and_called_over_stdio() {
    let toolbox = toolbox(false, None).await;
    assert_eq!(
        names(&toolbox),
        [
            "echo", "lookup", "update", "delete", "plain", "fail", "hang", "crash", "pid", "meta",
            "env", "roots", "task", "progress", "whoami"
        ]
    );
    let echo = toolbox.get("echo").unwrap().def().clone();
    assert_eq!(echo.description, "Echo the text back.");
    assert_eq!(echo.parameters["required"], json!(["text"]));
    assert_eq!(
        refusal(&toolbox, "echo", r#"{"text": 5}"#),
        r#"arguments for `echo` do not match its schema: /text: 5 is not of type "string""#
    );
    assert_eq!(
        call(&toolbox, "echo", json!({"text": "héllo"}))
            .await
            .unwrap(),
        "héllo"
    );
    // Calls share the connection, also when made at the same time.
    let (a, b) = tokio::join!(
        call(&toolbox, "echo", json!({"text": "a"})),
        call(&toolbox, "plain", json!({}))
    );
    assert_eq!(
        (a.unwrap().as_str(), b.unwrap().as_str()),
        ("a", "plain done")
    );
}

#[tokio::test]
async fn annotations_are_ignored_unless_the_server_is_trusted() {
    let only = ["echo", "lookup", "update", "delete", "plain"];
    let untrusted = toolbox(false, Some(&only)).await;
    assert!(
        risks(&untrusted)
            .iter()
            .all(|(_, r)| *r == RiskClass::Irreversible),
        "{:?}",
        risks(&untrusted)
    );
    let trusted = toolbox(true, Some(&only)).await;
    let expected = [
        ("echo", RiskClass::ReadOnly),
        ("lookup", RiskClass::ReadOnly),
        ("update", RiskClass::Reversible),
        ("delete", RiskClass::Irreversible),
        // MCP's destructiveHint defaults to true.
        ("plain", RiskClass::Irreversible),
    ];
    let expected: Vec<(String, RiskClass)> =
        expected.iter().map(|(n, r)| (n.to_string(), *r)).collect();
    assert_eq!(risks(&trusted), expected);
}

#[tokio::test]
async fn risk_overrides_and_only_pick_and_classify_tools() {
    let spec = entry(
        Some(&["delete", "lookup"]),
        &[
            ("lookup", RiskClass::ReadOnly),
            ("plain", RiskClass::Reversible),
        ],
    );
    let billing = server("serve", false, Duration::from_secs(20));
    let toolbox = load(&[spec], billing.clone()).await.unwrap();
    assert_eq!(
        risks(&toolbox),
        [
            ("delete".to_string(), RiskClass::Irreversible),
            ("lookup".to_string(), RiskClass::ReadOnly)
        ]
    );
    // An override beats the annotations of a trusted server too.
    let spec = entry(Some(&["lookup"]), &[("lookup", RiskClass::Irreversible)]);
    let trusted = McpServerSpec {
        trusted: true,
        ..billing
    };
    let toolbox = load(&[spec], trusted).await.unwrap();
    assert_eq!(
        risks(&toolbox),
        [("lookup".to_string(), RiskClass::Irreversible)]
    );
}

#[tokio::test]
async fn names_the_server_does_not_list_are_refused_at_load() {
    let billing = server("serve", false, Duration::from_secs(20));
    let e = load(
        &[entry(Some(&["lookup", "refund", "void"]), &[])],
        billing.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.key, "tools[0].only");
    assert_eq!(
        e.message,
        "MCP server `billing` has no tool `refund`, `void`; it lists: echo, lookup, update, \
         delete, plain, fail, hang, crash, pid, meta, env, roots, task, progress, whoami"
    );
    let e = load(&[entry(None, &[("refund", RiskClass::ReadOnly)])], billing)
        .await
        .unwrap_err();
    assert_eq!(e.key, "tools[0].risk");
    assert!(
        e.message
            .starts_with("MCP server `billing` has no tool `refund`;"),
        "{e}"
    );
}

#[tokio::test]
async fn entries_share_a_server_but_not_tool_names() {
    let billing = server("serve", false, Duration::from_secs(20));
    let specs = [entry(Some(&["echo"]), &[]), entry(Some(&["pid"]), &[])];
    let toolbox = load(&specs, billing.clone()).await.unwrap();
    assert_eq!(names(&toolbox), ["echo", "pid"]);

    let specs = [
        entry(Some(&["echo", "pid"]), &[]),
        entry(Some(&["pid"]), &[]),
    ];
    let e = load(&specs, billing).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "tools[1]: tool name `pid` is already defined by tools[0]"
    );
}

#[tokio::test]
async fn an_error_result_is_a_tool_error() {
    let toolbox = toolbox(false, None).await;
    let e = call(&toolbox, "fail", json!({})).await.unwrap_err();
    assert_eq!(e.message(), "card declined");
}

#[tokio::test]
async fn the_idempotency_key_goes_in_meta() {
    let toolbox = toolbox(false, None).await;
    let meta = call(&toolbox, "meta", json!({})).await.unwrap();
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["chassis/idempotency_key"], "run-1/call-1");
    assert_eq!(meta["chassis/run_id"], "run-1");
    assert_eq!(meta["chassis/call_id"], "call-1");
}

#[tokio::test]
async fn a_hung_call_times_out_and_the_server_is_restarted() {
    let billing = server("serve", false, Duration::from_secs(1));
    let toolbox = load(&[entry(None, &[])], billing).await.unwrap();
    let first = call(&toolbox, "pid", json!({})).await.unwrap();
    let e = call(&toolbox, "hang", json!({})).await.unwrap_err();
    assert_eq!(
        e.message(),
        "`hang` (MCP server `billing`) timed out after 1s; the server will be restarted on the \
         next call"
    );
    let second = call(&toolbox, "pid", json!({})).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(
        call(&toolbox, "echo", json!({"text": "back"}))
            .await
            .unwrap(),
        "back"
    );
}

#[tokio::test]
async fn an_error_result_is_the_tools_answer_and_not_retried() {
    let toolbox = toolbox(false, None).await;
    let e = call(&toolbox, "fail", json!({})).await.unwrap_err();
    assert!(!e.may_retry() && !e.is_indeterminate(), "{e:?}");
}

#[tokio::test]
async fn progress_keeps_a_call_alive_past_its_idle_timeout() {
    // Five notifications 300 ms apart: 1.5 s in all, longer than the 1 s a silent call gets.
    let mut billing = server("serve", false, Duration::from_secs(20));
    billing.idle_timeout = Some(Duration::from_secs(1));
    let toolbox = load(&[entry(None, &[])], billing).await.unwrap();
    assert_eq!(
        call(&toolbox, "progress", json!({})).await.unwrap(),
        "done in 5 steps"
    );
    let e = call(&toolbox, "hang", json!({})).await.unwrap_err();
    assert_eq!(
        e.message(),
        "`hang` (MCP server `billing`) went 1s without an answer or a progress notification; \
         the server will be restarted on the next call"
    );
    assert!(e.is_indeterminate() && e.may_retry(), "{e:?}");
}

#[tokio::test]
async fn servers_are_offered_the_fs_roots_as_their_roots() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shared data");
    std::fs::create_dir(&data).unwrap();
    let fs = fs_spec("shared data", Some(&["read_file"]));
    let servers = BTreeMap::from([(
        "billing".to_string(),
        server("serve", false, Duration::from_secs(20)),
    )]);
    let granted = Toolbox::from_specs(&[fs, entry(None, &[])], &servers, dir.path())
        .await
        .unwrap();
    let roots: Value =
        serde_json::from_str(&call(&granted, "roots", json!({})).await.unwrap()).unwrap();
    let path = std::fs::canonicalize(&data).unwrap();
    let uri = format!("file://{}", path.display()).replace(' ', "%20");
    assert_eq!(roots, json!([{"uri": uri, "name": "shared data"}]));

    // Without fs tools there is nothing to offer (and the capability is not claimed).
    let toolbox = toolbox(false, None).await;
    assert_eq!(call(&toolbox, "roots", json!({})).await.unwrap(), "[]");
}

#[tokio::test]
async fn a_server_cannot_answer_with_a_task_since_chassis_offers_no_tasks() {
    // chassis does not offer the MCP tasks extension, so the server's SDK refuses to send the
    // task; the refusal is the server's answer, given to the model and not retried. (A server
    // that sent one anyway would get an unknown outcome: the work may be going on there.)
    let toolbox = toolbox(false, None).await;
    let e = call(&toolbox, "task", json!({})).await.unwrap_err();
    assert_eq!(
        e.message(),
        "`task` (MCP server `billing`) failed: Missing required client capability"
    );
    assert!(!e.is_indeterminate() && !e.may_retry(), "{e:?}");
}

#[tokio::test]
async fn a_call_timeout_counts_from_the_first_attempt() {
    let billing = server("serve", false, Duration::from_secs(1));
    let toolbox = load(&[entry(None, &[])], billing).await.unwrap();
    let (args, tool) = toolbox.prepare("hang", "{}").unwrap();
    let context = ctx();
    let e = tool.call(args.clone(), &context).await.unwrap_err();
    assert!(e.is_indeterminate() && !e.may_retry(), "{e:?}");
    // A second attempt of the same call finds its time used up and sends nothing.
    let e = tool.call(args, &context).await.unwrap_err();
    assert_eq!(
        e.message(),
        "`hang` (MCP server `billing`) timed out: its 1s were used up by earlier attempts"
    );
    assert!(!e.is_indeterminate() && !e.may_retry(), "{e:?}");
}

#[tokio::test]
async fn a_crash_during_a_call_is_a_tool_error_and_the_next_call_restarts() {
    let toolbox = toolbox(false, None).await;
    let first = call(&toolbox, "pid", json!({})).await.unwrap();
    let e = call(&toolbox, "crash", json!({})).await.unwrap_err();
    assert_eq!(
        e.message(),
        "MCP server `billing` closed the connection during the call to `crash`; it will be \
         restarted on the next call; its stderr ends with: test server: started\n\
         test server: crashing on purpose"
    );
    let second = call(&toolbox, "pid", json!({})).await.unwrap();
    assert_ne!(first, second);
}

#[tokio::test]
async fn a_call_timeout_covers_restarting_the_server() {
    // Loading waits for the slow start (up to 10 s); a call has only its own 1 s, restart
    // included: before, a restart had 10 s of its own and the call then 1 s more.
    let slow = server("slow", false, Duration::from_secs(1));
    let toolbox = load(&[entry(None, &[])], slow).await.unwrap();
    call(&toolbox, "crash", json!({})).await.unwrap_err();
    let e = call(&toolbox, "pid", json!({})).await.unwrap_err();
    assert_eq!(
        e.message(),
        "`pid` (MCP server `billing`) timed out after 1s before the call could be sent (the \
         server was being started)"
    );
    assert!(
        !e.is_indeterminate(),
        "nothing was sent, so nothing was done"
    );
}

#[tokio::test]
async fn a_killed_server_is_restarted() {
    let toolbox = toolbox(false, None).await;
    let first = call(&toolbox, "pid", json!({})).await.unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &first])
        .status()
        .unwrap();
    assert!(killed.success());
    // The call right after may find the connection closed before it is sent (and restart at
    // once) or while it is in flight (an error); the one after that reaches a new server.
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let outcome = call(&toolbox, "pid", json!({})).await;
        let done = outcome.is_ok();
        outcomes.push(outcome);
        if done {
            break;
        }
    }
    match outcomes.as_slice() {
        [Ok(pid)] | [Err(_), Ok(pid)] => assert_ne!(pid, &first),
        other => panic!("the server was not restarted: {other:?}"),
    }
    if let [Err(e), _] = outcomes.as_slice() {
        assert!(
            e.message()
                .starts_with("MCP server `billing` closed the connection"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_server_that_fails_to_start_is_reported_at_load() {
    let e = load(
        &[entry(None, &[])],
        server("fail", false, Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.key, "mcp.billing.command");
    assert_eq!(
        e.message,
        "server `billing` failed to initialize: the connection closed before it answered; \
         its stderr ends with: test server: BILLING_TOKEN is not set"
    );

    let missing = McpServerSpec {
        transport: McpTransport::Stdio {
            command: vec!["no-such-mcp-server-xyz".into()],
            env: Default::default(),
        },
        trusted: false,
        timeout: Duration::from_secs(5),
        idle_timeout: None,
    };
    let e = load(&[entry(None, &[])], missing).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "mcp.billing.command: server `billing`: program `no-such-mcp-server-xyz` not found on PATH"
    );
}

#[tokio::test]
async fn tools_are_listed_and_called_over_streamable_http() {
    let url = mcp_server::http().await;
    let billing = McpServerSpec {
        transport: McpTransport::Http {
            url,
            headers: Default::default(),
            oauth: None,
        },
        trusted: true,
        timeout: Duration::from_secs(1),
        idle_timeout: None,
    };
    let spec = entry(Some(&["echo", "delete", "meta", "hang"]), &[]);
    let toolbox = load(&[spec], billing).await.unwrap();
    assert_eq!(
        risks(&toolbox),
        [
            ("echo".to_string(), RiskClass::ReadOnly),
            ("delete".to_string(), RiskClass::Irreversible),
            ("meta".to_string(), RiskClass::Irreversible),
            ("hang".to_string(), RiskClass::Irreversible),
        ]
    );
    assert_eq!(
        call(&toolbox, "echo", json!({"text": "over http"}))
            .await
            .unwrap(),
        "over http"
    );
    let meta: Value =
        serde_json::from_str(&call(&toolbox, "meta", json!({})).await.unwrap()).unwrap();
    assert_eq!(meta["chassis/idempotency_key"], "run-1/call-1");
    // A hung call drops the session; the next call opens a new one.
    let e = call(&toolbox, "hang", json!({})).await.unwrap_err();
    assert!(e.message().contains("timed out after 1s"), "{e}");
    assert_eq!(
        call(&toolbox, "echo", json!({"text": "again"}))
            .await
            .unwrap(),
        "again"
    );
}

#[tokio::test]
async fn an_unreachable_http_server_is_reported_at_load() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let billing = McpServerSpec {
        transport: McpTransport::Http {
            url: format!("http://127.0.0.1:{port}/mcp"),
            headers: Default::default(),
            oauth: None,
        },
        trusted: false,
        timeout: Duration::from_secs(5),
        idle_timeout: None,
    };
    let e = load(&[entry(None, &[])], billing).await.unwrap_err();
    assert_eq!(e.key, "mcp.billing.url");
    assert!(
        e.message
            .starts_with("server `billing` failed to initialize: send initialize request: "),
        "{e}"
    );
}
