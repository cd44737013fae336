//! Least privilege: a command tool and a stdio MCP server see nothing of chassis's environment
//! but the default set and what their spec names; an API key in chassis's environment never
//! reaches them unless named.
//!
//! The environment of this test process cannot be changed safely, so [`secrets_stay_with_chassis`]
//! runs this test binary again with secrets in its environment and only
//! [`inside_a_process_with_secrets`] selected, which builds the tools and checks what they see.

use std::collections::BTreeMap;
use std::process::Command;

use chassis_core::spec::{McpServerSpec, McpTransport, ToolEnv};

use super::*;
use crate::mcp_server;

/// Set in the child process that does the checking.
const INSIDE: &str = "CHASSIS_TOOL_ENV_TEST";
const API_KEY: &str = "sk-parent-api-key-0123456789";
const RANDOM_SECRET: &str = "hostile-random-secret-9f8e7d";
const PASSED: &str = "passed-through-value";

#[test]
fn secrets_stay_with_chassis() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "tool_env::inside_a_process_with_secrets",
            "--nocapture",
        ])
        .env(INSIDE, "1")
        .env("OPENAI_API_KEY", API_KEY)
        .env("HOSTILE_RANDOM_SECRET", RANDOM_SECRET)
        .env("HOSTILE_PASSED", PASSED)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("tool environments checked"),
        "the checks ran: {stdout}\n{stderr}"
    );
}

/// Whether a tool process may hold `name` when its spec names nothing: one of the default
/// set, the call's variables for command tools, or one this process does not have, which the
/// tool set itself (Python's locale coercion, a version manager's shim).
fn unnamed(name: &str) -> bool {
    ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"].contains(&name)
        || name.starts_with("CHASSIS_")
        || std::env::var_os(name).is_none()
}

fn env_of(json: &str) -> BTreeMap<String, String> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not an environment ({e}): {json}"))
}

#[tokio::test]
async fn inside_a_process_with_secrets() {
    if std::env::var_os(INSIDE).is_none() {
        return;
    }
    // The system interpreter when there is one: a version manager's shim adds variables of
    // its own, some of which this process has too.
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let print_env = [
        python,
        "-c",
        "import os, json; print(json.dumps(dict(os.environ)))",
    ];
    let ToolSpec::Command(mut named) =
        command_spec("env_named", &print_env, Duration::from_secs(20))
    else {
        unreachable!()
    };
    named.env = ToolEnv {
        pass: vec!["HOSTILE_PASSED".into(), "OPENAI_API_KEY".into()],
        set: BTreeMap::from([("FIXED".to_string(), "set-by-spec".to_string())]),
    };
    let (command, mut mcp_env) = mcp_server::command("serve");
    let plain_server = McpServerSpec {
        transport: McpTransport::Stdio {
            command: command.clone(),
            env: mcp_env.clone(),
        },
        trusted: false,
        timeout: Duration::from_secs(20),
        idle_timeout: None,
    };
    mcp_env.pass.push("HOSTILE_PASSED".into());
    let named_server = McpServerSpec {
        transport: McpTransport::Stdio {
            command,
            env: mcp_env,
        },
        trusted: false,
        timeout: Duration::from_secs(20),
        idle_timeout: None,
    };
    let servers = BTreeMap::from([
        ("plain".to_string(), plain_server),
        ("named".to_string(), named_server),
    ]);
    let mcp = |server: &str| ToolSpec::Mcp {
        server: server.into(),
        only: Some(vec!["env".into()]),
        risk: BTreeMap::new(),
    };
    let plain = Toolbox::from_specs(
        &[
            command_spec("env_plain", &print_env, Duration::from_secs(20)),
            ToolSpec::Command(named),
            mcp("plain"),
        ],
        &servers,
        &std::env::temp_dir(),
    )
    .await
    .unwrap();
    let named_mcp = Toolbox::from_specs(&[mcp("named")], &servers, &std::env::temp_dir())
        .await
        .unwrap();

    let leaked = |env: &BTreeMap<String, String>| {
        env.values()
            .any(|v| v.contains(API_KEY) || v.contains(RANDOM_SECRET))
    };

    let command_plain = env_of(&call(&plain, "env_plain", json!({})).await.unwrap());
    assert!(!leaked(&command_plain), "{command_plain:#?}");
    assert!(
        command_plain.keys().all(|k| unnamed(k)),
        "{command_plain:#?}"
    );
    assert_eq!(command_plain["CHASSIS_RUN_ID"], "run-1");
    assert!(command_plain.contains_key("PATH"));

    let command_named = env_of(&call(&plain, "env_named", json!({})).await.unwrap());
    assert_eq!(command_named["HOSTILE_PASSED"], PASSED);
    assert_eq!(command_named["OPENAI_API_KEY"], API_KEY, "named, so passed");
    assert_eq!(command_named["FIXED"], "set-by-spec");
    assert!(!command_named.contains_key("HOSTILE_RANDOM_SECRET"));

    let mcp_plain = env_of(&call(&plain, "env", json!({})).await.unwrap());
    assert!(!leaked(&mcp_plain), "{mcp_plain:#?}");
    assert!(
        mcp_plain
            .keys()
            .all(|k| unnamed(k) || k == mcp_server::MODE),
        "{mcp_plain:#?}"
    );

    let mcp_named = env_of(&call(&named_mcp, "env", json!({})).await.unwrap());
    assert_eq!(mcp_named["HOSTILE_PASSED"], PASSED);
    assert!(!leaked(&mcp_named), "{mcp_named:#?}");

    println!("tool environments checked");
}
